"""The seed 000 Peers document: another node this vault replicates with.

Peer sync itself (``fusevault peer add``) builds on this shape; the fields
are the seed's.  Nothing in a Peers document is secret: credentials for a
peer never go into documents (docs/SECURITY.md).
"""

from __future__ import annotations

from fusevault.vault.nodes import new_id

PEER = "Peers"


def peer_doc(name: str, host: str, port: int, path_to_dump_chunks: str | None = None) -> dict:
    return {"_id": new_id(), "type": PEER, "name": name, "host": host, "port": port,
            "path_to_dump_chunks": path_to_dump_chunks}
