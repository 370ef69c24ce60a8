"""This device's copy of the newest body of each of her own groups it admitted or signed.

A member who writes the vault folder can put back an older signed body of a group (himself in it):
every reader refuses it as a replay (vault/model/freshness.py), but the owner's `group member
remove` then has nothing to sign over but that replay (attack round 13 (2): he kept himself in).
So the device that signs or admits a body of a group its user owns keeps that body, and member
changes build on the newest of it and the store's (vault/services/accounts.py ``group_base``).

The copy lives outside the vault (beside the record of grants seen: ``<its name>.groups``),
sealed with the device-state sub-key of her master key, bound to its file name; written before
the record of grants seen (``Freshness.save``), by temp + fsync + rename (vault/model/device_file.py).
A copy that does not open (damaged, truncated, a link, another local user's file, one not hers) is
never used nor overwritten: member changes refuse with one line until she removes it (``damaged``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from fusevault.vault.model import device_file

if TYPE_CHECKING:
    from fusevault.crypto.keys import MasterKey

KIND = "groups"  # the AD kind of the sealed file
FORMAT = 1
MAX_SIZE = 64 * 2**20  # far above any user's groups: a larger file is no copy fusevault wrote


class GroupCopies:
    """Group id -> the newest signed body of her group this device admitted or signed."""

    def __init__(self, key: MasterKey, path: Path) -> None:
        self.key = key
        self.path = path
        self.bodies: dict[str, dict] = {}
        # Why the file on disk is not used (None: it opened, or there is none): member changes refuse.
        self.damaged: str | None = None
        self._dirty = False

    @classmethod
    def open(cls, key: MasterKey, path: Path) -> GroupCopies:
        copies = cls(key, path)
        try:
            data = device_file.read_json(path, key, KIND, MAX_SIZE)
        except device_file.Damaged as err:
            copies.damaged = str(err)
            return copies
        if data is None:
            return copies
        bodies = data.get("bodies") if data.get("format") == FORMAT else None
        if not isinstance(bodies, dict) or not all(isinstance(i, str) and isinstance(b, dict)
                                                   and b.get("_id") == i for i, b in bodies.items()):
            copies.damaged = "it holds no copies of groups"
        else:
            copies.bodies = bodies
        return copies

    def keep(self, doc: dict) -> None:
        """``doc`` (a body of her group, the newest this device has seen) is the copy from now."""
        body = {k: v for k, v in doc.items() if k != "_rev"}
        if self.bodies.get(body["_id"]) != body:
            self.bodies[body["_id"]] = body
            self._dirty = True

    def save(self) -> None:
        """Write the copies if changed; never over a file that did not open (raises OSError)."""
        if not self._dirty or self.damaged is not None:
            return
        plain = json.dumps({"format": FORMAT, "bodies": self.bodies}, separators=(",", ":")).encode()
        device_file.write(self.path, self.key, KIND, plain)
        self._dirty = False

