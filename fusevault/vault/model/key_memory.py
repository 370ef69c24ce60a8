"""This device's memory of the newest key fields of each user: a replayed older body never decides
which passphrase (or recovery key) opens her vault.

Her master key is wrapped under her passphrase (and her recovery key) in clear fields of her
UserDetails document.  ``passwd``, ``passwd --recovery`` and ``recovery-key create``/``revoke``
write those fields again, signed; but anyone holding the store or the database (the CouchDB
server, a writer of the vault folder) keeps her body from before and can serve it again as the
newest revision.  Its signature holds (she made it), so without a memory the passphrase she
changed because it leaked opened her vault again (attack round 18, hole 5).

So every body that changes key fields carries ``keys_seq`` (one above the newest this device
knows; covered by her signature, as every field is), and each device remembers the newest key
fields it saw, signed by her (``paths.state_dir()/confirmed/<hash>.keys``, temp + fsync +
rename, beside the settings it confirmed: outside the vault, which is what the attacker writes).
At every unlock a store body with older key fields than remembered is not used: the remembered
fields are, and the replay is said (alarm ``rollback``).  The record is not sealed: it is read
before any key is open, it holds what the store's row holds in clear anyway, and the state
directory is this user's own (paths._own_place).  A device that never saw the newer body (a new
one, a lost state directory) cannot tell; a server can always withhold (docs/SECURITY.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from fusevault import paths
from fusevault.encoding import SAFE_INTEGER, loads_untrusted
from fusevault.errors import VaultError
from fusevault.vault.format.atomic import atomic_write

SEQ = "keys_seq"
# The fields that decide what opens her master key (crypto/keys.py wrap_master, crypto/recovery.py).
WRAPPING = ("salt", "kdf", "iv", "en_master_kek", "en_validation_string", "checksum")
RECOVERY = "recovery_key"  # crypto/recovery.py FIELD, named here: `settings` (and so the CLI's parser)
# reads this module, and must not load `cryptography` (tests/unit/test_cli_startup.py)
KEY_FIELDS = (*WRAPPING, RECOVERY, SEQ)
REVOKED_FIELD = "revoked_recovery"  # the digests of the recovery wrappings she revoked (signed)
KEEP = 64  # digests remembered (key bodies seen, revocations)
log = logging.getLogger(__name__)


def seq(doc: dict) -> int:
    """The body's key sequence (0: from before it existed; a malformed one counts as 0)."""
    value = doc.get(SEQ, 0)
    whole = isinstance(value, int) and not isinstance(value, bool)
    return value if whole and 0 <= value <= SAFE_INTEGER else 0


def _place(root: Path | str, user_id: str) -> Path:
    """Beside what this device confirmed for her in this vault (vault/model/confirmed.py ``_file``)."""
    name = hashlib.sha256(f"{os.path.realpath(root)}\0{user_id}".encode()).hexdigest()[:32]
    return paths.state_dir() / "confirmed" / f"{name}.keys"


def remembered(root: Path | str, user_id: str) -> dict | None:
    """The newest key fields this device saw for ``user_id``, or None (none, or not readable)."""
    try:
        kept = loads_untrusted(_place(root, user_id).read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, VaultError, ValueError) as err:
        log.error("this device's record of the newest keys of %s is unreadable (%s): not used", user_id, err)
        return None
    if not (isinstance(kept, dict) and kept.get("_id") == user_id and isinstance(kept.get("public_sign"), str)
            and all(isinstance(kept.get(k), str) for k in WRAPPING if k != "kdf")):
        log.error("this device's record of the newest keys of %s is damaged: not used", user_id)
        return None
    for name in ("seen", "revoked"):  # lists of digests (a record from before them has none)
        kept[name] = [d for d in kept.get(name) or [] if isinstance(d, str)] if isinstance(
            kept.get(name) or [], list) else []
    return kept


CURRENT, REPLAY, FORK, REVOKED = "current", "replay", "fork", "revoked"


def newest(root: Path | str, doc: dict) -> tuple[dict, str]:
    """``doc`` with the newest key fields this device knows, and what the store's body was:

    - ``CURRENT``: hers, and not older than the one remembered (or the same keys): used as it is;
    - ``REPLAY``: older than remembered and seen here before, or not signed by her (a ``keys_seq``
      raised on her older body by anyone else, attack round 19): the remembered fields are used;
    - ``FORK``: hers, never seen here, and made apart from the one remembered (two devices changed
      her keys without seeing each other's: round 19 (5)): the higher (``keys_seq``, digest of the
      key fields) wins, on every device alike;
    - ``REVOKED``: hers and taken, but it still carries a recovery key this device saw her revoke
      (made on a device that never saw the revocation, round 19 (2)): the wrapping is left out.

    Everything but the key fields is the store's (the settings have their own order:
    vault/model/confirmed.py)."""
    kept = remembered(root, doc["_id"])
    if kept is None:
        return doc, CURRENT
    hers = _signed_by_her(kept, doc)
    same = all(doc.get(k) == kept.get(k) for k in KEY_FIELDS)
    if same or (hers and seq(doc) > seq(kept)):
        return _without_revoked(doc, kept, CURRENT)
    if hers and key_digest(doc) not in kept.get("seen", []):
        if (seq(doc), key_digest(doc)) > (seq(kept), key_digest(kept)):
            return _without_revoked(doc, kept, CURRENT)  # the fork's winner: taken as a newer body
        return _kept_fields(doc, kept), FORK
    return _kept_fields(doc, kept), REPLAY


def _kept_fields(doc: dict, kept: dict) -> dict:
    rest = {k: v for k, v in doc.items() if k not in KEY_FIELDS}
    return {**rest, **{k: kept[k] for k in KEY_FIELDS if k in kept}}


def _without_revoked(doc: dict, kept: dict, verdict: str) -> tuple[dict, str]:
    if RECOVERY in doc and recovery_digest(doc) in revoked(kept, doc):
        return {k: v for k, v in doc.items() if k != RECOVERY}, REVOKED
    return doc, verdict


def key_digest(doc: dict) -> str:
    """The digest of a body's key fields (what ``seen`` remembers, and a fork's tie-break)."""
    fields = {k: doc.get(k) for k in KEY_FIELDS}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def recovery_digest(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc.get(RECOVERY), sort_keys=True, default=str).encode()).hexdigest()


def revoked(kept: dict | None, doc: dict | None = None) -> list[str]:
    """The recovery wrappings she revoked: those this device saw, and those her body names."""
    names = [*(kept or {}).get("revoked", []), *((doc or {}).get(REVOKED_FIELD) or [])]
    return sorted({n for n in names if isinstance(n, str)})[-KEEP:]


def _signed_by_her(kept: dict, doc: dict) -> bool:
    """Whether ``doc`` is signed by the signing key this device remembered of her."""
    from fusevault.crypto.identity import public_sign  # `cryptography`: only once a vault is opened
    from fusevault.crypto.signing import verify_doc
    from fusevault.errors import Forged

    try:
        return verify_doc(public_sign(kept), doc) == doc["_id"]
    except (Forged, VaultError, KeyError, TypeError, ValueError):
        return False


def remember(root: Path | str, doc: dict, revoking: str | None = None) -> None:
    """Keep ``doc``'s key fields as the newest this device saw (the caller checked her signature, or
    made the body), and its digest among those seen; ``revoking``: a recovery wrapping she revoked
    here.  Never below one kept: a body of an equal sequence replaces it only if it wins the fork."""
    kept = remembered(root, doc["_id"])
    gone = revoked(kept, doc) + ([revoking] if revoking else [])
    newer = kept is None or (seq(doc), key_digest(doc)) >= (seq(kept), key_digest(kept))
    base = doc if newer else kept
    assert base is not None
    record = {"_id": doc["_id"], **{k: base[k] for k in (*KEY_FIELDS, "public_sign") if k in base},
              "seen": [*[d for d in (kept or {}).get("seen", []) if d != key_digest(doc)],
                       key_digest(doc)][-KEEP:],
              "revoked": sorted(set(gone))[-KEEP:]}
    if record.get(RECOVERY) is not None and recovery_digest(record) in record["revoked"]:
        del record[RECOVERY]
    if kept == record:
        return
    path = _place(root, doc["_id"])
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, json.dumps(record, sort_keys=True).encode())
    except OSError as err:
        log.error("could not record the newest keys of %s on this device: %s", doc["_id"], err)


def next_seq(root: Path | str, doc: dict, hers: bool = True) -> int:
    """The sequence of a body that changes ``doc``'s key fields: above this device's and, if ``hers``
    (her signature on ``doc`` holds), the store's.  A number someone else wrote never counts: one of
    2**53-1 would cap every later change of hers at it, so that any could be replayed (round 19 (4))."""
    kept = remembered(root, doc["_id"])
    return min(SAFE_INTEGER, max(seq(doc) if hers else 0, seq(kept) if kept is not None else 0) + 1)
