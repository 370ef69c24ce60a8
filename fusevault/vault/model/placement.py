"""The owner's placement stamp: her signature over where she put one of her files.

A device of the owner's that commits one of her files in folders other than
its stamp names signs a new stamp (sealed in the node document's ``enc``,
docs/FORMAT.md): ``placed: {"parents": [parent fids, sorted], "seq": [device,
n], "sig": <b64>}``, ``seq`` being the commit's own (vault/model/ledger.py).
A WRITE grantee's client, which cannot sign one, carries the stamp of the
document it read over unchanged.  So a device of hers that never saw a move
she made on another device (a grantee's later document replaced hers in the
store) still learns where she put the file, from the grantee's document,
and judges his change against that place rather than against where it last
saw the file itself (vault/tree/authorship.py).

The signature binds the vault, the owner, the file id, the seq and the
parents (``crypto/signing.py`` ``sign_parts``, label ``node-placed``): a
stamp lifted into another file's document, or from another vault, does not
hold.  Whether a stamp that holds is newer than what a device saw is the
ledger's to say (``Ledger.newer``, with the stamp's seq).
"""

from __future__ import annotations

import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fusevault.crypto.signing import parts_hold, sign_parts

LABEL = "node-placed"
Seq = tuple[str, int]
_EXACT = 1 << 53  # an n a CouchDB server keeps exactly
# What a stamp of hers holds at most: a folder id per hard link of the file (parents), a device id as
# ledger.py names one (fusevault's are 16 characters), an Ed25519 signature in base64 (88).
PARENTS_MAX = 1024
ID_MAX = 32  # characters of a folder's id (fusevault's are 32 hex digits)
DEVICE_MAX = 32
SIG_MAX = 128


def stamp(key: Ed25519PrivateKey, vault_id: str, owner: str, fid: str, parents: list[str], seq: Seq) -> dict:
    """The owner's stamp of ``fid`` in ``parents`` (sorted fids) at her commit ``seq``."""
    return {"parents": parents, "seq": [seq[0], seq[1]],
            "sig": sign_parts(key, LABEL, vault_id, owner, fid, seq[0], seq[1], *parents)}


def shaped(value: object) -> dict | None:
    """``value`` if it has a stamp's shape and sizes, else None: a document's stamp is
    anyone's to write, and one that is not a stamp is none (never a refusal
    of the document: older documents have none either)."""
    if not isinstance(value, dict):
        return None
    parents, seq = value.get("parents"), value.get("seq")
    sig = value.get("sig")
    if not (isinstance(parents, list) and len(parents) <= PARENTS_MAX
            and all(isinstance(p, str) and len(p) <= ID_MAX for p in parents)
            and isinstance(seq, list) and len(seq) == 2 and isinstance(seq[0], str)
            and len(seq[0]) <= DEVICE_MAX and type(seq[1]) is int and 0 <= seq[1] < _EXACT
            and isinstance(sig, str) and len(sig) <= SIG_MAX):
        # Sizes too: a WRITE member's commit carries the stamp over unchanged, so one of 8 MB he
        # sealed was sealed again at each of her commits of the file, as 52c (4)'s texts were.
        return None
    # Rebuilt, not kept: only the stamp's three fields (nothing else a writer put there lives on in
    # memory or in the next document), and the names shared (every node of a folder names the same
    # parent, every node of a device the same device): ~340 bytes less per node in a mount's memory.
    return {"parents": [sys.intern(p) for p in parents], "seq": [sys.intern(seq[0]), seq[1]],
            "sig": value["sig"]}


def holds(public: Ed25519PublicKey, vault_id: str, owner: str, fid: str,
          placed: dict | None) -> tuple[list[str], Seq] | None:
    """(the parents, the seq) of a stamp of ``owner``'s file ``fid`` in this vault that
    holds under ``public`` (her pinned key), else None."""
    if shaped(placed) is None:
        return None
    assert placed is not None
    parents, (device, n) = placed["parents"], placed["seq"]
    if not parts_hold(public, placed["sig"], LABEL, vault_id, owner, fid, device, n, *parents):
        return None
    return sorted(parents), (sys.intern(device), n)
