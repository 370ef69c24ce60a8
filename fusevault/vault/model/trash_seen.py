"""When a file went to the trash, as this device can vouch for it.

A deleted node's sealed ``trashed: [path, time]`` is written by whoever
deleted it; a WRITE recipient may delete a shared file (it goes to the trash)
and so chooses that time.  Dated 1970, the owner's next ``gc`` would purge the
file with every version at once (the trash promises ``trash_days``); dated in
the future, it would never leave the trash and would win restore's pick of
"the latest deletion at that path" (tests/mount/test_trust_attack_round9a.py).

So the time used (``deleted_at``) is:

- for a deletion the owner signed (any of her devices): its own time, but
  never later than this device first saw it (no deletion is in the future);
- for one another user signed: when this device first saw it.  A device that
  saw it late (offline, or a new device) keeps it longer, never shorter.

What this device first saw is kept per deleted document, with a digest of its
sealed ``enc`` (a new deletion of the same file, or a re-signed one, is a new
sight), outside the vault (``paths.state_dir()/trash-seen/<hash of vault dir
and user>``), sealed with the user's device-state key and bound to its file
name, written temp + fsync + rename (as vault/model/verified.py).  A file
someone else wrote or damaged does not open: every deletion counts from now.
Entries of documents no longer deleted are dropped when the whole trash is
looked at (``save(keep=...)``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from fusevault import paths
from fusevault.crypto.keys import MasterKey
from fusevault.crypto.signing import signer_of
from fusevault.errors import VaultError
from fusevault.vault.model import device_file

log = logging.getLogger(__name__)

KIND = "trash-seen"
FORMAT = 1


def state_path(vault_root: Path | str, user_id: str) -> tuple[Path, str]:
    name = hashlib.sha256(f"{os.path.realpath(vault_root)}\0{user_id}".encode()).hexdigest()[:32]
    return paths.state_dir() / KIND / name, name


def _marker(doc: dict) -> str:
    return hashlib.sha256(str(doc.get("enc")).encode()).hexdigest()[:32]


class TrashSeen:
    """Deleted document id -> (digest of its ``enc``, ns when this device first saw it)."""

    def __init__(self, key: MasterKey, path: Path, name: str) -> None:
        self.key = key
        self.path = path
        self.name = name
        self.seen: dict[str, tuple[str, int]] = {}
        self._dirty = False
        self._lock = threading.Lock()

    @classmethod
    def open(cls, key: MasterKey, vault_root: Path | str) -> TrashSeen:
        path, name = state_path(vault_root, key.user_id)
        seen = cls(key, path, name)
        try:
            data = device_file.read_json(path, key, KIND)
            if data is None:
                return seen
            if data.get("format") != FORMAT:
                raise device_file.Damaged("its format is unknown")
            seen.seen = {str(i): (str(m), int(t)) for i, (m, t) in data["seen"].items()}
        except (device_file.Damaged, KeyError, ValueError, TypeError, AttributeError):
            # Safe: a deletion first seen now stays in the trash longest.
            log.warning("this device's record of deletions seen (%s) was damaged or not this user's: "
                        "every deletion counts from now", path)
            seen._dirty = True
        return seen

    def first_seen(self, doc: dict, now_ns: int, remember: bool = True) -> int:
        """When this device first saw this deletion (``now_ns`` if never before)."""
        doc_id, marker = str(doc.get("_id")), _marker(doc)
        entry = self.seen.get(doc_id)
        if entry is not None and entry[0] == marker:
            return entry[1]
        if remember:
            with self._lock:
                self.seen[doc_id] = (marker, now_ns)
                self._dirty = True
        return now_ns

    def save(self, keep: Iterable[str] | None = None) -> None:
        """Write it if changed (off the trio loop); ``keep``: the ids of every
        deleted document now, the others' entries are dropped."""
        with self._lock:
            if keep is not None:
                wanted = set(keep)
                if set(self.seen) - wanted:
                    self.seen = {i: v for i, v in self.seen.items() if i in wanted}
                    self._dirty = True
            if not self._dirty:
                return
            self._dirty = False
            plain = json.dumps({"format": FORMAT, "seen": {i: list(v) for i, v in self.seen.items()}},
                               separators=(",", ":")).encode()
            try:
                device_file.write(self.path, self.key, KIND, plain)
            except (OSError, VaultError) as err:  # next time they count from then: later, never sooner
                self._dirty = True
                log.error("could not save when deletions were first seen (%s): %s", self.path, err)


def deleted_at(doc: dict, stamped: int, owner: str, first_seen: int) -> int:
    """The time a deletion counts from (see above): ``stamped`` is its sealed
    ``trashed`` time; ``doc`` is accepted (its signer verified) by the caller."""
    try:
        by_owner = signer_of(doc) == owner
    except VaultError:
        by_owner = False
    return min(stamped, first_seen) if by_owner else first_seen
