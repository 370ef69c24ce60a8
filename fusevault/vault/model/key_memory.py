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
from pathlib import Path

from fusevault import paths
from fusevault.encoding import SAFE_INTEGER, loads_untrusted
from fusevault.errors import Forged, VaultError
from fusevault.vault.format.atomic import atomic_write
from fusevault.vault.model import device_file, lineage
from fusevault.vault.model.setting_names import KEYS, STAMP

SEQ = "keys_seq"
# The fields that decide what opens her master key (crypto/keys.py wrap_master, crypto/recovery.py).
WRAPPING = ("salt", "kdf", "iv", "en_master_kek", "en_validation_string", "checksum")
RECOVERY = "recovery_key"  # crypto/recovery.py FIELD, named here: `settings` (and so the CLI's parser)
# reads this module, and must not load `cryptography` (tests/unit/test_cli_startup.py)
KEY_FIELDS = (*WRAPPING, RECOVERY, SEQ)
REVOKED_FIELD = "revoked_recovery"  # the digests of the recovery wrappings she revoked (signed)
RETIRED_FIELD = "retired_wrappings"  # the digests of the passphrase wrappings `passwd` replaced (signed)
KEEP = 64  # digests remembered (key bodies seen, revocations)
# The record's bound: her key fields, 3 x KEEP digests and her whole signed body (a few KiB; the store
# bounds no body, hence the room).  A larger file is none this device wrote: not read.
LIMIT = 16 << 20
log = logging.getLogger(__name__)


def seq(doc: dict) -> int:
    """The body's key sequence (0: from before it existed; a malformed one counts as 0)."""
    value = doc.get(SEQ, 0)
    whole = isinstance(value, int) and not isinstance(value, bool)
    return value if whole and 0 <= value <= SAFE_INTEGER else 0


def _place(root: Path | str, user_id: str) -> Path:
    """Beside what this device confirmed for her in this vault (vault/model/confirmed.py ``_file``)."""
    return paths.confirmed_file(root, user_id, ".keys")


def remembered(root: Path | str, user_id: str) -> dict | None:
    """The newest key fields this device saw for ``user_id``, or None (none, or not readable)."""
    try:
        kept = loads_untrusted(device_file.read_own(_place(root, user_id), LIMIT))
    except FileNotFoundError:
        return None
    except (OSError, device_file.Damaged, VaultError, ValueError) as err:  # a link, a FIFO, ...: damaged
        log.error("this device's record of the newest keys of %s is unreadable (%s): not used", user_id, err)
        return None
    if not (isinstance(kept, dict) and kept.get("_id") == user_id and isinstance(kept.get("public_sign"), str)
            and all(isinstance(kept.get(k), str) for k in WRAPPING if k != "kdf")):
        log.error("this device's record of the newest keys of %s is damaged: not used", user_id)
        return None
    for name in ("seen", "revoked", "retired"):  # lists of digests (a record from before them has none)
        kept[name] = _digests(kept.get(name))
    if not isinstance(kept.get(BODY), dict):  # none (a record from before it), or not a body
        kept.pop(BODY, None)
    return kept


CURRENT, REPLAY, FORK, MERGED, REVOKED = "current", "replay", "fork", "merged", "revoked"


def newest(root: Path | str, doc: dict) -> tuple[dict, str]:
    """``doc`` with the newest key fields this device knows, and what the store's body was:

    - ``CURRENT``: hers, and not older than the one remembered (or the same keys): used as it is;
    - ``REPLAY``: older than remembered and seen here before, or not signed by her (a ``keys_seq``
      raised on her older body by anyone else, attack round 19): the remembered fields are used;
    - ``FORK``: hers, never seen here, and made apart from the one remembered (two devices changed
      her keys without seeing each other's: round 19 (5)): the higher (``keys_seq``, digest of the
      key fields) wins, on every device alike;
    - ``MERGED``: a body taken (newer, or a fork's winner) whose passphrase wrapping she retired with
      ``passwd`` on a device apart: the other side's wrapping is kept, the rest of the winner's key
      fields taken, under a sequence above both (the same on every device that sees the pair).  A
      ``keys_seq`` is a counter, not a history: two recovery-key changes on a device that never saw
      her ``passwd`` numbered above it and brought the leaked passphrase back (attack round 20 (1));
    - ``REVOKED``: hers and taken, but it still carries a recovery key she revoked (on this device or
      on the other side of a fork, round 19 (2)): the wrapping is left out.

    Everything but the key fields is the store's (the settings have their own order:
    vault/model/confirmed.py)."""
    kept = remembered(root, doc["_id"])
    if kept is None:
        return doc, CURRENT
    if not _signed_by_her(kept, doc):
        # Nothing of a body she did not sign counts, its lists of revocations included (round 20 (2)).
        same = all(doc.get(k) == kept.get(k) for k in KEY_FIELDS)
        return _without_revoked(doc if same else _kept_fields(doc, kept), kept, None,
                                CURRENT if same else REPLAY)
    if all(doc.get(k) == kept.get(k) for k in KEY_FIELDS):
        return _without_revoked(doc, kept, doc, CURRENT)
    newer = seq(doc) > seq(kept)
    if not newer and key_digest(doc) in kept["seen"]:
        return _kept_fields(doc, kept), REPLAY
    taken = newer or (seq(doc), key_digest(doc)) > (seq(kept), key_digest(kept))
    body, other = (doc, _kept_fields(doc, kept)) if taken else (_kept_fields(doc, kept), doc)
    verdict = CURRENT if taken else FORK
    gone = retired(kept, doc)
    if wrapping_digest(body) in gone and wrapping_digest(other) not in gone:
        body = {**body, **{k: other[k] for k in WRAPPING if k in other},
                SEQ: min(SAFE_INTEGER, max(seq(doc), seq(kept)) + 1)}
        verdict = MERGED
    return _without_revoked(body, kept, doc, verdict)


def _kept_fields(doc: dict, kept: dict) -> dict:
    rest = {k: v for k, v in doc.items() if k not in KEY_FIELDS}
    return {**rest, **{k: kept[k] for k in KEY_FIELDS if k in kept}}


def _without_revoked(body: dict, kept: dict, signed: dict | None, verdict: str) -> tuple[dict, str]:
    """``body`` without a recovery wrapping she revoked (``signed``: her body, whose list counts)."""
    if RECOVERY in body and recovery_digest(body) in revoked(kept, signed):
        return {k: v for k, v in body.items() if k != RECOVERY}, REVOKED if verdict == CURRENT else verdict
    return body, verdict


def key_digest(doc: dict) -> str:
    """The digest of a body's key fields (what ``seen`` remembers, and a fork's tie-break)."""
    fields = {k: doc.get(k) for k in KEY_FIELDS}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def recovery_digest(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc.get(RECOVERY), sort_keys=True, default=str).encode()).hexdigest()


def wrapping_digest(doc: dict) -> str:
    """The digest of a body's passphrase wrapping (what a ``passwd`` retires)."""
    fields = {k: doc.get(k) for k in WRAPPING}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def _digests(value: object) -> list[str]:
    """A list of digests from a store field or a record: anything else (5, true, a string) is none."""
    return [d for d in value if isinstance(d, str)] if isinstance(value, list) else []


def revoked(kept: dict | None, doc: dict | None = None) -> list[str]:
    """The recovery wrappings she revoked: those this device saw, and those ``doc`` (a body she
    signed: the caller checked) names."""
    names = [*_digests((kept or {}).get("revoked")), *_digests((doc or {}).get(REVOKED_FIELD))]
    return sorted(set(names))[-KEEP:]


def retired(kept: dict | None, doc: dict | None = None) -> list[str]:
    """The passphrase wrappings she replaced with ``passwd``: those this device saw, and those
    ``doc`` (a body she signed: the caller checked) names."""
    names = [*_digests((kept or {}).get("retired")), *_digests((doc or {}).get(RETIRED_FIELD))]
    return sorted(set(names))[-KEEP:]


REST = "settings"  # in the record: the settings of the newest body of hers this device knows
BODY = "body"  # in the record: that body whole, as she signed it (what a body she signs rebuilds from)


def settings_of(doc: dict) -> dict:
    """A body's settings fields (seed 000's, their signing time and version vector)."""
    return {k: doc[k] for k in (*KEYS, STAMP, lineage.FIELD) if k in doc}


def _settings_after(one: dict, other: dict) -> bool:
    """Whether ``one``'s settings were signed after ``other``'s: by their version vectors (one
    above the other), else by ``settings_at_us``."""
    try:
        mine, theirs = lineage.of(one), lineage.of(other)
    except lineage.Malformed:
        return False
    if mine is not None and theirs is not None:
        order = lineage.compare(mine, theirs)
        if order in (lineage.Order.NEWER, lineage.Order.OLDER):
            return order is lineage.Order.NEWER

    def stamp(body: dict) -> int:
        made = body.get(STAMP)
        return made if isinstance(made, int) and not isinstance(made, bool) else -1
    return stamp(one) > stamp(other)


def newest_settings(doc: dict, kept: dict | None) -> dict:
    """The settings to write back with the keys that won (users.py ``judged``): ``doc``'s, unless
    this device knows a body of hers whose settings were signed after them.  An old body of hers
    served to a device that never saw it looks like the losing side of a fork; its settings, written
    back, undid her current ones on every device (attack round 21 (3))."""
    known = (kept or {}).get(REST)
    if isinstance(known, dict) and _settings_after(known, doc):
        return known
    return settings_of(doc)


def own_body(root: Path | str, doc: dict, hers: bool | None = None) -> dict:
    """``doc`` if ``hers`` (her own key signed it: the caller checked; None: her key remembered here
    checks, and with none remembered ``doc`` is taken as it is), else the newest body of hers
    this device keeps (its signature checked again under her remembered key), with ``doc``'s revision
    (it replaces ``doc`` in the store).  Every field of a body she signs but the ones changed is signed
    as hers: built on a body the store's writer changed, her sealed private keys, ``public_box``,
    ``uid`` or name as he left them became hers, signed (attack round 22 (6)).  None kept (a record
    from before bodies were kept): ``Forged``, nothing is signed."""
    kept = remembered(root, doc["_id"])
    if hers is None:
        hers = kept is None or _signed_by_her(kept, doc)
    if hers:
        return doc
    body = (kept or {}).get(BODY)
    if kept is None or body is None or body.get("_id") != doc["_id"] or not _signed_by_her(kept, body):
        raise Forged(f"the document of user {doc.get('username')!r} in the store is not signed with "
                     "their key (its writer changed it?) and this device keeps no body of theirs to "
                     "sign over instead: nothing was signed (see `fusevault status` alarms)")
    return {**body, **({"_rev": doc["_rev"]} if "_rev" in doc else {})}


def signing_base(root: Path | str, doc: dict, hers: bool, body: dict | None = None) -> dict:
    """The body a new body of hers is built on, whatever signs it (``settings.save``, ``passwd``,
    ``recovery-key create``/``revoke``, ``passwd --recovery``, ``judged``'s write-back): the newest
    of hers this device knows, never the store's as served.  Its key fields are the newest this device
    saw (``newest``; ``body``: that result, when the caller has it), its settings the newest signed
    (``newest_settings``: the record's, when they were signed after the store's), its lists of
    revoked recovery keys and retired passphrases this device's merged with ``doc``'s if ``hers``
    (her signature on ``doc`` holds: the caller checked; one she did not sign is never built on:
    ``own_body`` first).
    An older body of hers, replayed, signed again made her old settings and a dropped revocation
    current on every device (attack round 22 (4), (5))."""
    kept = remembered(root, doc["_id"])
    if body is None:
        body, _ = newest(root, doc)
    settings = newest_settings(body, kept)
    replaced = {*settings_of(body), *settings}
    return {**{k: v for k, v in body.items() if k not in replaced}, **settings,
            REVOKED_FIELD: revoked(kept, doc if hers else None),
            RETIRED_FIELD: retired(kept, doc if hers else None)}


def kept_body(kept: dict | None) -> dict | None:
    """The body of hers ``kept`` holds (``remembered``), if her remembered key signed it; else None."""
    body = (kept or {}).get(BODY)
    if kept is None or not isinstance(body, dict) or body.get("_id") != kept.get("_id"):
        return None
    return body if _signed_by_her(kept, body) else None


def _signed_by_her(kept: dict, doc: dict) -> bool:
    """Whether ``doc`` is signed by the signing key this device remembered of her."""
    from fusevault.crypto.identity import public_sign  # `cryptography`: only once a vault is opened
    from fusevault.crypto.signing import verify_doc

    try:
        return verify_doc(public_sign(kept), doc) == doc["_id"]
    except (Forged, VaultError, KeyError, TypeError, ValueError):
        return False


def remember(root: Path | str, doc: dict, revoking: str | None = None, retiring: str | None = None) -> None:
    """Keep ``doc``'s key fields as the newest this device saw (the caller checked her signature, or
    made the body), and its digest among those seen; ``revoking``: a recovery wrapping she revoked
    here, ``retiring``: the passphrase wrapping a ``passwd`` here replaced.  Never below one kept: a
    body of an equal sequence replaces it only if it wins the fork."""
    kept = remembered(root, doc["_id"])
    newer = kept is None or (seq(doc), key_digest(doc)) >= (seq(kept), key_digest(kept))
    base = doc if newer else kept
    assert base is not None
    record = {"_id": doc["_id"], **{k: base[k] for k in (*KEY_FIELDS, "public_sign") if k in base},
              "seen": [*[d for d in (kept or {}).get("seen", []) if d != key_digest(doc)],
                       key_digest(doc)][-KEEP:],
              "revoked": sorted({*revoked(kept, doc), *([revoking] if revoking else [])})[-KEEP:],
              "retired": sorted({*retired(kept, doc), *([retiring] if retiring else [])})[-KEEP:]}
    record[REST] = newest_settings(doc, kept)
    whole = _whole(doc) if newer else (kept or {}).get(BODY)
    if whole is not None:
        record[BODY] = whole
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


def _whole(doc: dict) -> dict | None:
    """``doc`` as kept in the record (``BODY``): signed (the caller checked by whom), its revision not."""
    return {k: v for k, v in doc.items() if k != "_rev"} if "sig" in doc else None


def next_seq(root: Path | str, doc: dict, hers: bool = True) -> int:
    """The sequence of a body that changes ``doc``'s key fields: above this device's and, if ``hers``
    (her signature on ``doc`` holds), the store's.  A number someone else wrote never counts: one of
    2**53-1 would cap every later change of hers at it, so that any could be replayed (round 19 (4))."""
    kept = remembered(root, doc["_id"])
    return min(SAFE_INTEGER, max(seq(doc) if hers else 0, seq(kept) if kept is not None else 0) + 1)
