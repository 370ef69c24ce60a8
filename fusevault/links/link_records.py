"""The links a vault user made: one sealed document per link, holding its keys.

Only the owner's vault knows which vault path a link publishes and holds the
keys that append to, delete, or open what is dropped into it.  The document
id is a keyed hash of the item id; the body is sealed under the user's
private-document key (like the importer's ImportRecords, imports/import_records.py).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

from fusevault.crypto.keys import MasterKey
from fusevault.errors import CorruptData
from fusevault.links.capability import OwnerKeys
from fusevault.store import Store
from fusevault.store.sealed import sealed_bodies, sealed_doc
from fusevault.vault.model import names

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


def load_records(store: Store, key: MasterKey) -> dict[str, tuple[LinkRecord, str]]:
    """Every link of this user: item id -> (record, document revision)."""
    found = {}
    for fields, doc_id, rev in sealed_bodies(store, key, RECORD):
        try:
            record = LinkRecord(**{**fields, "keys": OwnerKeys.from_dict(fields["keys"])})
        except (KeyError, TypeError, ValueError):
            raise CorruptData(f"link record {doc_id} is malformed") from None
        why = names.path_problem(record.path)
        if why is not None:
            log.warning("link record %s refused: %s", doc_id, why)
            continue
        # A pending name is a dropped item's, chosen by whoever dropped it (before round 22 one
        # that was no file name refused the whole record: her box forgotten, never revoked).
        for vid, name in list(record.pending.items()):
            if (why := names.problem(name)) is not None:
                log.warning("link record %s: pending name of %s dropped: %s", doc_id, vid, why)
                del record.pending[vid]
        found[record.item] = (record, rev)
    return found
