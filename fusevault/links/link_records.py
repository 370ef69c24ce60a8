"""The links a vault user made: one sealed document per link, holding its keys.

Only the owner's vault knows which vault path a link publishes and holds the
keys that append to, delete, or open what is dropped into it.  The document
id is a keyed hash of the item id; the body is sealed under the user's
private-document key (like the importer's ImportRecords, imports/import_records.py).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fusevault import paths
from fusevault.crypto.keys import MasterKey
from fusevault.encoding import JSON_LIMIT, b64d, loads_untrusted
from fusevault.errors import CorruptData, VaultError
from fusevault.links.capability import OwnerKeys
from fusevault.store import Store
from fusevault.store.sealed import sealed_bodies, sealed_doc
from fusevault.store.unreadable import Unreadable
from fusevault.vault.format.atomic import atomic_write
from fusevault.vault.model import alarms, device_file, names

log = logging.getLogger(__name__)

RECORD = "LinkRecord"


@dataclass
class LinkRecord:
    item: str
    server: str
    kind: str  # "share" or "drop"
    path: str  # in the vault: what a share publishes, where drops go
    keys: OwnerKeys = field(repr=False)
    created_at: int  # ns
    expires_at: float | None  # s since the epoch
    seq: int = 0  # the newest published version (shares)
    collected: int = 0  # files taken in (drops)
    # drops: version id -> the name it is being given in the vault (see owner.py)
    pending: dict[str, str] = field(default_factory=dict)

    @property
    def link(self) -> str:
        made = self.keys.share_link if self.kind == "share" else self.keys.drop_link
        return made(self.server, self.item).text()


def record_id(key: MasterKey, item: str) -> str:
    return "link-" + key.name_id(RECORD, item)


def record_doc(key: MasterKey, record: LinkRecord, rev: str | None = None) -> dict:
    fields = {**asdict(record), "keys": record.keys.as_dict()}
    return sealed_doc(key, RECORD, record_id(key, record.item), fields, rev)


def stored_rev(store: Store, key: MasterKey, item: str) -> str | None:
    """The store's revision at the id of this link's record, whatever it holds there: a record
    refused (altered, not sealed by this user), a row that does not read, or nothing (None).  What
    this device's own copy of the record is saved over: the store's is not to be trusted then, and
    a save with no revision over a live document is a Conflict, every time (attack round 55d (4))."""
    try:
        doc = store.get(record_id(key, item))
    except Unreadable as err:
        return err.rev
    rev = None if doc is None else doc.get("_rev")
    return rev if isinstance(rev, str) else None


def load_records(store: Store, key: MasterKey) -> dict[str, tuple[LinkRecord, str]]:
    """Every link of this user: item id -> (record, document revision)."""
    found = {}

    def refused(doc_id: str, why: str) -> None:
        alarms.for_user(key.user_id).warn("link-record", doc_id, f"link record {doc_id} refused: {why}; "
                                          "the others stand")

    for fields, doc_id, rev in sealed_bodies(store, key, RECORD, refused):
        try:
            record = _record_of(fields, doc_id)
        except CorruptData as err:
            refused(doc_id, str(err))
            continue
        if record is not None:
            found[record.item] = (record, rev)
    return found


def _record_of(fields: dict, doc_id: str) -> LinkRecord | None:
    try:
        record = LinkRecord(**{**fields, "keys": OwnerKeys.from_dict(fields["keys"])})
    except (KeyError, TypeError, ValueError):
        raise CorruptData(f"link record {doc_id} is malformed") from None
    why = names.path_problem(record.path)
    if why is not None:
        log.warning("link record %s refused: %s", doc_id, why)
        return None
    # A pending name is a dropped item's, chosen by whoever dropped it (before round 22 one
    # that was no file name refused the whole record: her box forgotten, never revoked).
    for vid, name in list(record.pending.items()):
        if (why := names.problem(name)) is not None:
            log.warning("link record %s: pending name of %s dropped: %s", doc_id, vid, why)
            del record.pending[vid]
    return record


# --- this device's copy of the records it made (attack round 40c (6))
#
# The store is its writer's: a record deleted there left her link irrevocable (``revoke`` found no
# keys), and nothing said it went.  Each device keeps the sealed records it saved, outside the vault,
# until it revokes them; ``revoke`` falls back on them, and one missing from the store is said.


# The copy's bound: one sealed record per link she made and has not revoked (their number is not
# bounded): what loads_untrusted parses at most.
KEPT_LIMIT = JSON_LIMIT


def _kept_file(root: Path | str, user_id: str) -> Path:
    return paths.confirmed_file(root, user_id, ".links")


def _kept_docs(root: Path | str, user_id: str) -> dict[str, dict]:
    try:
        kept = loads_untrusted(device_file.read_own(_kept_file(root, user_id), KEPT_LIMIT))
    except FileNotFoundError:
        return {}
    except (OSError, device_file.Damaged, ValueError) as err:  # a link, a FIFO, ...: damaged
        log.error("this device's copy of the link records is unreadable (%s): not used", err)
        return {}
    return {k: v for k, v in kept.items() if isinstance(v, dict)} if isinstance(kept, dict) else {}


def keep(root: Path | str, key: MasterKey, record: LinkRecord) -> None:
    """Keep this record here as saved (``forget`` once it is revoked)."""
    docs = _kept_docs(root, key.user_id)
    docs[record.item] = record_doc(key, record)
    _write(root, key.user_id, docs)


def forget(root: Path | str, key: MasterKey, item: str) -> None:
    docs = _kept_docs(root, key.user_id)
    if docs.pop(item, None) is not None:
        _write(root, key.user_id, docs)


def _write(root: Path | str, user_id: str, docs: dict[str, dict]) -> None:
    path = _kept_file(root, user_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, json.dumps(docs, sort_keys=True).encode())
    except OSError as err:
        log.error("could not keep this device's copy of the link records: %s", err)


def kept_records(root: Path | str, key: MasterKey) -> dict[str, LinkRecord]:
    """The records this device saved and has not revoked: item id -> record (sealed under her key
    and bound to its id, so a copy put here by anyone else does not open)."""
    found = {}
    for item, doc in _kept_docs(root, key.user_id).items():
        try:
            fields = loads_untrusted(key.unseal_private(RECORD, doc["_id"], b64d(doc["enc"])))
            record = _record_of(fields, doc["_id"]) if isinstance(fields, dict) else None
        except (KeyError, TypeError, ValueError, VaultError):
            record = None
        if record is not None and record.item == item and doc["_id"] == record_id(key, item):
            found[item] = record
    return found
