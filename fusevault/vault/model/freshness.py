"""Replayed grants: a Share or Group body older than one this device has seen.

A signature says who made a grant, not that it is still in force: the
server, or anyone who writes the vault folder, can keep a Share its owner
signed and put it back after ``unshare`` (or a Group from before ``group
member remove``), and it still verifies.  So every Share and Group carries,
signed with it, ``made_at_us``: the time of its signing, and always above
the value of the body it replaces (``stamp``, called by ``Trust.sign``).

Each device remembers, per grant document id (per owner and id for another
user's bodies: ``record_id``), the newest
``made_at_us`` it has seen and whether the document was deleted since.  A
body older than the newest seen, or no newer than a deleted one, is a
replay: refused (an alarm, in the log and in ``fusevault status``) and
never sealed to.  A new signing (sharing again after an unshare) is newer
and counts.  A body without the field (from before it) is taken only while
this device has seen no stamped or deleted body of that id.

Which body is older is told by the version vector each carries, signed with it
(vault/model/lineage.py), not by ``made_at_us``: a wall clock lies on a device
whose clock is behind, where a body she signs after one the server withheld
gets the smaller time (attack round 10b).  Each device keeps, per id, the newest
bodies seen (``tips``: their vectors and stamps) and signs above all of them.
A body below a tip is a replay; one neither above nor below (concurrent: made
on a device that had not seen the other's) is refused too, with an alarm
(``concurrent``: for a grant, nothing is sealed by either; for a Retention
policy, gc drops nothing) until she signs it again on a device that saw both.
One exception, after a deletion seen here: her body made apart from the deleted
ones (sharing again on a device that never saw them) is a new signing if it is
stamped after the deletion was seen here (``deleted_at``) and after every body
seen; the deleted ones stay refused (``buried``; the trade is at
``_signed_after_deletion``).
Bodies without a vector (older code) are ordered by ``made_at_us`` as before.

A user's own Retention policy (``retention-<uid>``) is stamped and
remembered the same way (not swept: nothing deletes one): an older signed
policy put back is refused, and gc then drops nothing of that user's
(vault/model/retention.py); so does one this device saw that is gone from
the store (``knows``).

It also remembers which grants ``unshare`` took back here (``took_back``):
a Share seen here that is gone from the store without that mark (withheld
or deleted by the store's writer, or unshared on another device) is still
a share ``unshare`` takes the key back from (vault/services/share_ops.py).

The state lives outside the vault (``paths.state_dir()/grants/``), sealed
with the device-state sub-key of the user's master key, bound to its file
name (like vault/model/ledger.py); a device that has none yet (a new one, a wiped
state directory) cannot tell a replayed grant from a current one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fusevault import paths
from fusevault.encoding import SAFE_INTEGER
from fusevault.vault.format.atomic import fsync_dir
from fusevault.vault.model import device, device_file, lineage, renamed
from fusevault.vault.model.alarms import Alarms
from fusevault.vault.model.group_copies import KIND as GROUP_COPIES
from fusevault.vault.model.group_copies import GroupCopies

if TYPE_CHECKING:
    from fusevault.crypto.keys import MasterKey

log = logging.getLogger(__name__)

# Microseconds: a CouchDB server is JavaScript, whose numbers hold integers
# exactly only below 2**53 (nanoseconds since 1970 are above: a replicated
# signature would no longer hold).
FIELD = "made_at_us"
KINDS = ("Share", "Group")  # the grants (swept: gone from the store means deleted)
# Stamped and remembered the same way: a user's own Retention policy, whose older signed body put back
# would make gc drop versions (vault/model/retention.py).  Never swept: `retention --follow-default`
# writes a new body, nothing deletes one.
STAMPED = (*KINDS, "Retention")
FORMAT = 1
NONE = -1  # seen only without the field
# How far ahead of this device's clock a stamp it signs may follow one seen (as settings.MAX_AHEAD_US): a body
# stamped further ahead (a wrong clock, or a forgery) is still ordered by its version vector.
MAX_AHEAD_US = 366 * 86400 * 10**6


FOLDER = "grants"  # in the state folder
KIND = "grants"  # what its seal is bound to (with its file name)


def state_path(vault_root: Path, user_id: str) -> Path:
    # Named by what the device decides, never by vault.json's vault_id (vault/model/renamed.py).
    return paths.state_dir() / FOLDER / paths.record_name(vault_root, user_id)


def copies_path(record: Path) -> Path:
    """Where the copies of her groups' newest bodies (vault/model/group_copies.py) are kept beside
    the record of grants seen at ``record``."""
    return record.with_name(f"{record.name}.groups")


def _adopt(key: MasterKey, old: Path | None, new: Path) -> None:
    """An upgraded device's record (and its groups' copies), kept under its vault_id's name, moved so it
    keeps what it saw.  Moved, it signs under a new device id (vault/model/device.py: its path is new)."""
    renamed.adopt(key, KIND, old, new)
    renamed.adopt(key, GROUP_COPIES, None if old is None else copies_path(old), copies_path(new))


def made_at(doc: dict) -> int | None:
    value = doc.get(FIELD)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _made(doc: dict) -> int:
    made = made_at(doc)
    return NONE if made is None else made


def stamp(fresh: Freshness | None, doc: dict) -> dict:
    """``doc`` (a Share, Group or Retention about to be signed) with a ``made_at_us``
    above the one it replaces and any this device has seen of it, and a version vector
    above every body of it this device has seen (vault/model/lineage.py)."""
    if doc.get("type") not in STAMPED:
        return doc
    now = time.time_ns() // 1000
    floor = max(_made(doc), fresh.newest(fresh.record_id(doc)) if fresh else NONE)
    doc = {k: v for k, v in doc.items() if k != lineage.FIELD}  # never a lineage copied from another body
    doc[FIELD] = max(now, min(floor + 1, now + MAX_AHEAD_US))
    if fresh is not None:
        doc[lineage.FIELD] = fresh.next_vector(fresh.record_id(doc))
        fresh.saw(doc)
    return doc


class Freshness:
    """This device's newest ``made_at_us`` per grant document id, and deletions."""

    def __init__(self, key: MasterKey, path: Path, alarms: Alarms) -> None:
        self.key = key
        self.path = path
        self.alarms = alarms
        # id -> (kind, newest made_at_us seen (NONE: only unstamped), deleted since)
        self.seen: dict[str, tuple[str, int, bool]] = {}
        # id -> its newest made_at_us seen when this device's ``unshare`` took it back
        self.taken_back: dict[str, int] = {}
        # id -> the newest bodies seen with a version vector (vault/model/lineage.py)
        self.tips: dict[str, list[lineage.Tip]] = {}
        # id -> when this device saw it deleted (its clock, microseconds): a body of hers signed after it,
        # on a device that never saw the deleted one, is a new signing (``_signed_after_deletion``)
        self.deleted_at: dict[str, int] = {}
        # id -> the join of the deleted bodies' vectors, once a new signing replaced them as tips: a body
        # at or below it is a replay of a deleted one
        self.buried: dict[str, lineage.Vector] = {}
        # This device in the version vectors it signs (only ever compared with her other devices'), and
        # where the record was written (vault/model/device.py: a copy elsewhere signs under a new id)
        self.device = device.new_id()
        self.here = device.binding(path)
        self.bound = self.here
        # The newest body of each of her own groups admitted or signed here (vault/model/group_copies.py)
        self.copies = GroupCopies(key, copies_path(path))
        # Her groups whose copy is below a body this device saw (an older copy put back): not used
        self.stale: set[str] = set()
        self._dirty = False
        self._lock = threading.Lock()

    @classmethod
    def open(cls, key: MasterKey, vault_root: Path, vault_id: str, alarms: Alarms) -> Freshness:
        path = state_path(vault_root, key.user_id)
        _adopt(key, renamed.legacy_path(FOLDER, vault_root, vault_id, key.user_id), path)
        fresh = cls(key, path, alarms)
        fresh._read()
        fresh._take_copies(GroupCopies.open(key, fresh.copies.path))
        return fresh

    def _read(self) -> None:
        """The record kept on this device, if any (one that does not open: started afresh, an alarm)."""
        try:
            # A link, a FIFO, another user's file or one too large is damaged (device_file.read_own).
            data = device_file.read_json(self.path, self.key, KIND)
            if data is None:
                return
            if data.get("format") != FORMAT:
                raise ValueError("unknown format")
            self.seen = {i: (str(k), int(n), bool(d)) for i, (k, n, d) in data["seen"].items()}
            self.taken_back = {str(i): int(n) for i, n in data.get("taken_back", {}).items()}
            self.tips = {str(i): [(lineage.parsed(v), int(m)) for v, m in tips]
                         for i, tips in data.get("tips", {}).items()}
            self.deleted_at = {str(i): int(n) for i, n in data.get("deleted_at", {}).items()}
            self.buried = {str(i): lineage.parsed(v) for i, v in data.get("buried", {}).items()}
            self.device = str(data.get("device") or self.device)
            self.bound = str(data.get("bound") or self.bound)  # none: from before, kept where it is
        except (device_file.Damaged, KeyError, ValueError, TypeError, AttributeError):
            self.alarms.warn("grants-state", str(self.path), f"this device's record of grants seen "
                             f"{self.path} was damaged or replaced: replayed grants before now cannot be "
                             "told; started afresh")
            self._dirty = True

    def _take_copies(self, copies: GroupCopies) -> None:
        """Her groups' copies, as seen bodies: one above the record (the record's write lost to a
        kill) moves it up; one below it (an older copy put back) is never built on."""
        self.copies = copies
        for group_id, body in copies.bodies.items():
            try:
                vector = lineage.of(body)
            except lineage.Malformed:
                vector = None
            tips = self.tips.get(group_id, [])
            if vector is None or lineage.older(tips, vector, _made(body)):
                self.stale.add(group_id)
            else:
                self.saw(body)

    def copy_of(self, group_id: str) -> dict | None:
        """The copy of her group kept here, if it is the one newest body this device saw of it."""
        body = self.copies.bodies.get(group_id)
        if body is None or group_id in self.stale:
            return None
        tips = self.tips.get(group_id, [])
        return body if tips == [(lineage.of(body), _made(body))] else None

    def made_apart(self, doc_id: str, bodies: list[dict]) -> bool:
        """Whether the newest bodies of ``doc_id`` seen here are exactly ``bodies``, signed apart."""
        tips = self.tips.get(doc_id, [])
        try:
            return len(tips) == len(bodies) > 1 and all((lineage.of(b), _made(b)) in tips for b in bodies)
        except lineage.Malformed:
            return False

    def kept(self, doc: dict, at_once: bool = True) -> None:
        """``doc`` (signed) was just signed or admitted here: if it is a body of her own group and the
        one newest seen of it, it is the group's copy from now (written at once, or, ``at_once`` False: an
        admitted body, with the record at the next ``save``)."""
        if doc.get("type") != "Group" or doc.get("owner") != self.key.user_id:
            return
        try:
            vector = lineage.of(doc)
        except lineage.Malformed:
            return
        doc_id = str(doc.get("_id"))
        if vector is not None and self.tips.get(doc_id) == [(vector, _made(doc))] \
                and self.copies.bodies.get(doc_id) != {k: v for k, v in doc.items() if k != "_rev"}:
            if self.copies.damaged is not None and doc_id not in self.copies.bodies:  # said once
                self.alarms.warn("group-copies", str(self.copies.path), f"this device's copy of her groups' "
                                 f"newest bodies {self.copies.path} is not used nor written: "
                                 f"{self.copies.damaged}; `group member` refuses until it is removed")
            self.copies.keep(doc)
            self.stale.discard(doc_id)
            if not at_once:
                return
            # At once, before the body goes to the store: a kill -9 then leaves the copy above the store's
            # body (built on next time), never the store above a device that forgot (a member she removed
            # back in by a replay of the body before).
            self.copies.save()
            self.save()

    def save(self) -> None:
        """Write it if changed (temp, fsync, rename; off the trio loop)."""
        with self._lock:
            try:  # first: a record above its group copies would make them stale
                self.copies.save()
            except OSError as err:
                log.error("could not save the copies of her groups %s: %s", self.copies.path, err)
                return
            if not self._dirty:
                return
            self._dirty = False
            data = {"format": FORMAT, "seen": {i: list(v) for i, v in self.seen.items()},
                    "taken_back": dict(self.taken_back), "device": self.device, "bound": self.bound,
                    "deleted_at": dict(self.deleted_at), "buried": dict(self.buried),
                    "tips": {i: [[v, m] for v, m in tips] for i, tips in self.tips.items()}}
            plain = json.dumps(data, separators=(",", ":")).encode()
            try:
                device_file.write(self.path, self.key, KIND, plain)
                fsync_dir(self.path.parent)
            except OSError as err:
                self._dirty = True
                log.error("could not save the record of grants seen %s: %s", self.path, err)

    def record_id(self, doc: dict) -> str:
        """Where ``doc`` is remembered: its id for this user's own bodies (and those naming no owner), else
        (owner, id): a Share's id names no owner (sharing.doc_id), and another user's signed body under her
        id must not move her record (attack round 12)."""
        doc_id, owner = str(doc.get("_id")), doc.get("owner")
        if not isinstance(owner, str) or owner == self.key.user_id:
            return doc_id
        return f"{owner}/{doc_id}"

    def newest(self, doc_id: str) -> int:
        entry = self.seen.get(doc_id)
        return entry[1] if entry else NONE

    def knows(self, doc_id: str) -> bool:
        """Whether this device saw a body of ``doc_id`` (stamped or not)."""
        return doc_id in self.seen

    def next_vector(self, doc_id: str) -> lineage.Vector:
        """The version vector of a body of ``doc_id`` this device signs now: above all it saw (deleted
        bodies too).  A record copied from elsewhere signs under a new device id from now on."""
        if self.bound != self.here:
            log.info("the record of grants seen %s was written elsewhere: this device signs under a new id",
                     self.path)
            self.device, self.bound, self._dirty = device.new_id(), self.here, True
        seen = [v for v, _ in self.tips.get(doc_id, [])]
        return lineage.next_after([*seen, *([self.buried[doc_id]] if doc_id in self.buried else [])],
                                  self.device)

    def concurrent(self, doc_id: str) -> bool:
        """Whether the newest bodies of ``doc_id`` seen here are concurrent: signed on devices that
        had not seen each other's, so which came last cannot be told."""
        return len(self.tips.get(doc_id, [])) > 1

    def saw(self, doc: dict) -> None:
        """Remember ``doc`` (admitted, or just signed here) as seen."""
        doc_id, made = self.record_id(doc), made_at(doc)
        entry = self.seen.get(doc_id)
        value = NONE if made is None else made
        try:
            vector = lineage.of(doc)
        except lineage.Malformed:
            vector = None
        tips = self.tips.get(doc_id, [])
        if vector is not None and entry is not None and self._signed_after_deletion(doc_id, vector, value):
            # She shared it again on a device that never saw the deleted body: the deleted tips are kept
            # only to refuse them (``buried``), the new body is the one tip.
            self.buried[doc_id] = lineage.join([v for v, _ in tips] + (
                [self.buried[doc_id]] if doc_id in self.buried else []))
            tips = []
        # from before vectors: ordered by its stamp alone, as it was
        kept = lineage.stamped_only(tips, value) if vector is None else lineage.add(tips, vector, value)
        if kept != tips:
            self.tips[doc_id] = kept
            if not kept:
                del self.tips[doc_id]
            self._dirty = True
        if doc_id in self.buried and kept and all(
                lineage.compare(v, self.buried[doc_id]) is lineage.Order.NEWER for v, _ in kept):
            del self.buried[doc_id]  # every tip is above the deleted bodies: a replay of one is older
        if entry is None:
            newer = True
        elif vector is None or not tips:
            newer = value > entry[1]
        else:  # above each body of it seen: a newer signing (also after a deletion)
            newer = lineage.newest(tips, vector, value)
        if newer:
            self.seen[doc_id] = (str(doc.get("type")), max(value, entry[1] if entry else NONE), False)
            self.deleted_at.pop(doc_id, None)
            self._dirty = True
        elif value > entry[1]:
            self.seen[doc_id] = (entry[0], value, entry[2])
            self._dirty = True

    def was_deleted(self, doc_id: str) -> bool:
        """Whether this device saw ``doc_id`` deleted since its newest body."""
        entry = self.seen.get(doc_id)
        return entry is not None and entry[2]

    def deleted(self, doc_id: str) -> None:
        entry = self.seen.get(doc_id)
        if entry is not None and not entry[2]:
            self.seen[doc_id] = (entry[0], entry[1], True)
            self.deleted_at[doc_id] = time.time_ns() // 1000
            self._dirty = True

    def _signed_after_deletion(self, doc_id: str, vector: lineage.Vector, made: int) -> bool:
        """Whether a body (not a replay: checked first) of an id deleted as this device saw, made apart
        from the deleted bodies (its signer never saw them), is a new signing: stamped after the deletion
        was seen here and after every body of it seen (attack round 12 (3): sharing again on her desktop
        after an unshare on her laptop the desktop never saw).

        Only her devices sign her bodies (``record_id``), so the one left open is hers alone: a body she
        signed apart from the deleted one, BEFORE the unshare, on a device whose clock ran ahead past the
        time the deletion was seen here, withheld and served after it, counts again.  Without that skew,
        such a body is refused with the concurrent alarm (as before), as is one with no stamp."""
        entry, tips = self.seen[doc_id], self.tips.get(doc_id)
        if not entry[2] or not tips or doc_id not in self.deleted_at or lineage.newest(tips, vector, made):
            return False  # not deleted (or from before vectors or deletion times), or plainly newer
        return max(self.deleted_at[doc_id], entry[1]) < made <= SAFE_INTEGER

    def newest_seen(self, doc_id: str) -> int | None:
        """The stamp of the newest body of ``doc_id`` (her own grant's id) seen here; None: none seen."""
        entry = self.seen.get(doc_id)
        return None if entry is None else entry[1]

    def taken_back_stamp(self, doc_id: str) -> int | None:
        """The stamp of the body of ``doc_id`` an ``unshare`` here took back (``took_back``), else the
        newest seen; None: none seen.  For a record of the build before stamps (rekeys_owed.py
        ``taken_at_load``): that build marks the body its unshare takes back here, and its loads mark
        again the newest seen as each begins, before reading the grants; a re-share of hers it
        admitted later in a load moves ``newest_seen`` past the body taken back, not this."""
        entry = self.seen.get(doc_id)
        if entry is None:
            return None
        return min(self.taken_back.get(doc_id, entry[1]), entry[1])

    def took_back(self, doc_id: str) -> None:
        """This device's ``unshare`` took the grant back (its newest body seen so far)."""
        entry = self.seen.get(doc_id)
        if entry is not None and self.taken_back.get(doc_id) != entry[1]:
            self.taken_back[doc_id] = entry[1]
            self._dirty = True

    def remembered(self, doc_id: str) -> bool:
        """Whether a signed body of this grant was seen here and no ``unshare`` here
        took it back since (a newer signing, sharing again, counts again)."""
        entry = self.seen.get(doc_id)
        return entry is not None and self.taken_back.get(doc_id) != entry[1]

    def admit(self, doc: dict, what: str, then: str = "nothing is sealed by it") -> bool:
        """Whether this (signed) grant body is not older than one seen here, nor concurrent with the
        newest seen (its signer had not seen that one: which she meant last cannot be told);
        remembers it.

        ``then``: what follows from a refusal, for the alarm."""
        doc_id = str(doc.get("_id"))
        entry = self.seen.get(self.record_id(doc))
        grant = doc.get("type") in KINDS
        try:
            lineage.of(doc)
        except lineage.Malformed:  # her fusevault writes none such: a store writer's rewrite
            self.alarms.warn("replayed-grant" if grant else "replayed-retention", doc_id,
                             f"refused {what} {doc_id}: its version vector is not one fusevault writes; "
                             f"{then}")
            return False
        if entry is not None and self._replay(doc, entry):
            state = "was deleted" if entry[2] else "was replaced by a newer one"
            self.alarms.warn("replayed-grant" if grant else "replayed-retention", doc_id,
                             f"refused {what} {doc_id}: an older signed body of it came back (it {state}, "
                             f"as this device saw): a replay; {then}")
            return False
        self.saw(doc)
        if self.concurrent(self.record_id(doc)):
            self.alarms.warn("concurrent-grant" if grant else "concurrent-retention", doc_id,
                             f"refused {what} {doc_id}: two signed bodies of it were made on devices that "
                             f"had not seen each other's (the server may have withheld one): which is her "
                             f"last cannot be told; {then}, until she signs it again on a device that has "
                             f"seen both (this one)")
            return False
        self.kept(doc, at_once=False)  # her group's newest body, taken (her other device signed it)
        return True

    def _replay(self, doc: dict, entry: tuple[str, int, bool]) -> bool:
        """Whether ``doc`` is older than a body of its id seen here (or no newer than a deletion)."""
        doc_id, made = self.record_id(doc), made_at(doc)
        _, newest, gone = entry
        vector, tips = lineage.of(doc), self.tips.get(doc_id)
        if vector is None or not tips:  # a body or a memory from before vectors: the stamps, as it was
            if made is None:
                return newest != NONE or gone
            return made < newest or (gone and made <= newest)
        value = NONE if made is None else made
        buried = self.buried.get(doc_id)
        if buried is not None and lineage.compare(vector, buried) in (lineage.Order.OLDER,
                                                                      lineage.Order.SAME):
            return True  # at or below a body that was deleted, then replaced by a new signing
        return lineage.older(tips, vector, value) or (gone and any(
            lineage.placed(vector, value, tip) is lineage.Order.SAME for tip in tips))

    def sweep(self, present: set[str]) -> None:
        """Grants this device saw that are no longer in the store were deleted
        (here by ``unshare``, or on a peer).  ``present``: the ids of the live bodies; an id held by another
        user's body (hers replaced by the store's writer) is not a deletion of hers."""
        for key, (kind, _, gone) in list(self.seen.items()):
            owner, _, doc_id = key.rpartition("/")  # record_id: "<owner>/<id>" for another user's body
            if not gone and kind in KINDS and (doc_id if owner else key) not in present:
                if not owner and self.remembered(key):
                    # Her own grant, gone though no ``unshare`` here took it back: never silently (her
                    # grantees lose access), whenever this device learns it: while mounted, or at an
                    # unlock after it arrived while locked (attack rounds 28a (1), 29b (1)).  It is gone
                    # all the same: another device of hers, or an administrator, may have removed it.
                    what = "share" if kind == "Share" else "group"
                    self.alarms.warn(f"{what}-missing", key, f"the store no longer has your {what} {key}, "
                                     "which this device saw and did not take back: removed on another "
                                     "device of yours or by an administrator, or the store was tampered with")
                self.deleted(key)


def admitted(fresh: Freshness | None, docs: list[dict], what: str) -> list[dict]:
    """The docs (live grant bodies of one kind, signatures checked) that are no replay."""
    if fresh is None:
        return docs
    return [d for d in docs if fresh.admit(d, what)]
