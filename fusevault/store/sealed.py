"""A user's private documents: the body sealed under their private-document key.

The id is chosen by the caller (a keyed hash of what the document is about,
so the store cannot tell it); the body is sealed with that id and the
document kind in the associated data, so a body cannot be moved to another
document.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

from fusevault.crypto.keys import MasterKey
from fusevault.encoding import b64d, b64e, loads_untrusted
from fusevault.errors import CorruptData
from fusevault.store import Store


def sealed_doc(key: MasterKey, kind: str, doc_id: str, fields: dict, rev: str | None = None) -> dict:
    body = json.dumps(fields, separators=(",", ":")).encode()
    doc = {"_id": doc_id, "type": kind, "owner": key.user_id,
           "enc": b64e(key.seal_private(kind, doc_id, body))}
    if rev is not None:
        doc["_rev"] = rev
    return doc


def sealed_bodies(store: Store, key: MasterKey, kind: str,
                  refused: Callable[[str, str], None]) -> Iterator[tuple[dict, str, str]]:
    """(opened body, document id, revision) of every ``kind`` document this user owns.  One whose
    body does not open or read (a store writer's, under her clear owner id) is ``refused`` (its
    id, why) and skipped: raised, it stopped every use of the others (her link's revoke, every
    import: attack round 41c (2))."""
    for doc in store.iter_type(kind):
        if doc.get("owner") != key.user_id:
            continue
        try:
            fields = loads_untrusted(key.unseal_private(kind, doc["_id"], b64d(doc["enc"])))
            if not isinstance(fields, dict):
                raise ValueError("not an object")
        except (CorruptData, KeyError, TypeError, ValueError) as err:
            refused(str(doc.get("_id"))[:80], f"its sealed body does not open ({err})")
            continue
        yield fields, doc["_id"], doc["_rev"]
