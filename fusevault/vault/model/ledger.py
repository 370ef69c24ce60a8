"""Rollback detection: a sealed per-device ledger of the newest node states seen.

Every node document carries, in its sealed (and signed) attributes,
``seq: [device, n]``: the id of the replica that wrote it and a counter that
replica increases at every node commit, and never takes back.  So for one
file and one writing device, a larger ``n`` is always the later state,
whatever other devices did meanwhile: concurrent edits on two devices carry
two devices' counters, and neither is ever "older" than the other.

This device remembers, per user, for every file it has seen: the newest
``n`` seen from each writing device, and whether the file was live.  A node
document whose ``(device, n)`` is lower than one already seen from that same
device (or that carries no ``seq`` where one was seen) is a rollback: a
restored ``store.sqlite``, or a server or peer serving an older revision.
A file that was live and whose row is simply gone (no tombstone, no trashed
revision) has vanished.  Both are reported (``Alarms``) and, when they
arrive while mounted, not applied.  A file loaded in such an older state is
also kept ``behind``, with the folders that state puts it in: no share of
those folders seals its key (the owner never chose that place).

The ledger lives OUTSIDE the vault folder (``paths.state_dir()/ledger/``), so
a restored backup of the vault does not restore it; it is sealed with a
sub-key of the user's master key (AES-GCM, bound to its file name), written
temp + fsync + rename at load, every few seconds when changed, and at lock
and unmount, never per write.  Its file name holds the vault id, the user id
and a hash of the vault folder's path: two replicas of one vault on one
machine keep two ledgers.  docs/FORMAT.md describes it; docs/SECURITY.md
what it can and cannot detect.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import stat
import sys
import threading
import uuid
from collections.abc import Callable, Container
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import trio

from fusevault import paths
from fusevault.crypto.signing import signer_of
from fusevault.encoding import name_to_str, str_to_name
from fusevault.errors import CorruptData, Forged, VaultError
from fusevault.store import replica
from fusevault.vault.format.atomic import fsync_dir
from fusevault.vault.model import device_file, renamed
from fusevault.vault.model.alarms import Alarms, for_user
from fusevault.vault.model.nodes import MAX_OVER, clear_epoch, device_ok, open_node_doc, wrapping_ok
from fusevault.vault.model.placement import shaped

if TYPE_CHECKING:
    from fusevault.crypto.keys import MasterKey
    from fusevault.store import Store
    from fusevault.vault.format.layout import Layout
    from fusevault.vault.model.nodes import Node

log = logging.getLogger(__name__)

FORMAT = 1
SAVE_EVERY = 5.0  # seconds: how stale the ledger on disk may be while mounted
# Seconds between looks for a change that must reach the disk before the next commit can (a claim:
# ``claim``); a crash before the regular save lost it, her next commit then signing his key (52a (3)).
URGENT_LOOK = 0.1
# At one load, more files than this rolled back or vanished are reported as
# one alarm about the whole store (a restored store.sqlite), not one each.
MANY = 1

Seq = tuple[str, int]
# fid -> (live, {device: newest n seen}).  Entries are replaced, never
# changed in place: a snapshot is a shallow copy that a worker thread may
# serialise while the loop goes on.
Entry = tuple[bool, dict[str, int]]


class Held(Protocol):
    """The loaded tree the ledger is compared with (vault/tree/): declared
    here, as the ledger is a floor below the tree that holds it."""

    key: MasterKey
    layout: Layout

    def find(self, fid: str | None) -> Node | None: ...

    def holds(self, fid: str | None) -> bool: ...

    def nodes(self) -> list[Node]: ...

    def path_of(self, node: Node) -> bytes: ...

    def stand_on(self, node: Node, rev: str) -> None: ...


FOLDER = "ledger"  # in the state folder
KIND = "ledger"  # what its seal is bound to (with its file name)


def _wrapping_shaped(wrapping: object) -> bool:
    """A wrapping as ``nodes.key_fields`` stores one: one or both of its fields, each a wrapping's size."""
    return (isinstance(wrapping, dict) and bool(wrapping) and set(wrapping) <= {"en_file_dek", "owner_dek"}
            and wrapping_ok(wrapping))


def _wrapping_entry(entry: object) -> tuple[str, int, dict[str, str]] | None:
    """A saved ``wrappings`` entry, ``[owner, epoch, wrapping]``, or None: one of another shape is dropped
    (looked for again), never taken as anyone's, as one from before the owner was kept (``[epoch,
    wrapping]``: whose file it was found for is not known, 58b (1))."""
    if not isinstance(entry, list) or len(entry) != 3:
        return None
    owner, epoch, wrapping = entry
    if (not isinstance(owner, str) or not owner or type(epoch) is not int or epoch < 0
            or not _wrapping_shaped(wrapping)):
        return None
    return sys.intern(owner), epoch, dict(wrapping)  # type: ignore[arg-type]


def ledger_path(vault_root: Path, user_id: str) -> Path:
    # Named by what the device decides, never by vault.json's vault_id (vault/model/renamed.py).
    return paths.state_dir() / FOLDER / paths.record_name(vault_root, user_id)


def seq_of(attrs: dict) -> Seq | None:
    seq = attrs.get("seq")
    if seq is None:
        return None
    device, n = seq
    if not device_ok(device) or not isinstance(n, int):
        raise ValueError("bad seq")
    return sys.intern(device), n


def writer_seq(seq: Seq | None, doc: dict, me: str) -> Seq | None:
    """The ``seq`` of a document as the ledger of user ``me`` keeps it: a
    device's counter counts as it is only in documents of the file's owner or
    of ``me`` (the ledger's own commits).  Another signer's (a WRITE
    grantee's) is kept apart, under ``<device>/<signer>``, so a document he
    signs naming the owner's device, with any number, can never make her
    later states look older (or newer) than his."""
    if seq is None:
        return None
    try:
        signer = signer_of(doc)
    except Forged:
        signer = None
    return apart(seq, signer if signer not in (doc.get("owner"), me) else None)


def apart(seq: Seq, signer: str | None) -> Seq:
    """``seq`` under ``<device>/<signer>`` (``signer``: a writer other than the
    file's owner and the ledger's user), else as it is."""
    return seq if signer is None else (sys.intern(f"{seq[0]}/{signer}"), seq[1])


# How far the documents this device committed may run ahead of its saved
# ledger (written after them, off the loop): far more than a crash leaves.
MAX_LAG = 1 << 32
_CLOSED = 8  # closed leaves kept per file (a settling closes one or two)
DEVICES = 64  # devices (and writers' devices) whose newest state is kept per file

class Ledger:
    def __init__(self, key: MasterKey, path: Path, alarms: Alarms) -> None:
        self.key = key
        self.path = path
        self.alarms = alarms
        self.device = uuid.uuid4().hex[:16]
        self.counter = 0
        self.fids: dict[str, Entry] = {}
        self.mine: set[str] = set()  # the files seen as this user's own (not a share's)
        # The owner each other user's file was first seen under here (fid -> owner; the user's own:
        # ``mine``).  A file's key is wrapped bound to (owner, fid) and no commit gives a node another
        # owner (a move between owners copies; a new node's owner is its folder's), so a document
        # naming another owner at a known id is never a state of that file: refused, said
        # (``owner_refused``).  Every record below is keyed by the id alone: without this, a member's
        # own file once seen at an id (his epoch, his counts naming her device) judged another owner's
        # file he made at that id later, her honest states refused as replays (attack round 58b (1)).
        # A ledger saved before learns it from the next state taken at each id.
        self.owners: dict[str, str] = {}
        # The newest key epoch seen of each file (only those above 0): a file
        # loaded in an older state under an older key holds a key that may
        # have been revoked since (an unshare gives a new epoch).
        self.epochs: dict[str, int] = {}
        # Those files (this load only): the user's own get a new key, above
        # every epoch seen, before the mount serves (vault/services/rotation.py
        # resume).
        self.rolled: set[str] = set()
        # The user's own files whose node holds a key a member's state claimed (vault/model/her_keys.py
        # ``key_not_hers``), taken in at her epoch (the value) under his key, until her own re-key of
        # the file commits (or her own key at a higher epoch is taken in): his key, not hers, so his
        # later states under it are judged too, and every unlock re-keys it (``rolled``).  Kept in
        # memory only, a lock or a re-key failing on his next commit left her file under the older key
        # he kept for good, unsaid (attack round 51b (2), (3)).
        self.claimed: dict[str, int] = {}
        # Those of them whose claim was said (``claim``): a take-back (a state below her epoch, an honest
        # write during a revoke looks alike) is claimed unsaid, and the member's walk-up from it to her
        # epoch under the key he kept was then never said, taken for "said before" (attack round 53a (5)).
        self.claims_said: set[str] = set()
        # The ``version`` at which the newest claim was made: her commit of a claimed file waits for the
        # ledger on disk to hold it (``stamp``), whoever is writing it (53a (3)).
        self.claimed_at = 0
        self.urgent = False  # a change to save at once (``claim``): looked at by ``keep_saved``
        # A keyed digest of the user's own key of each of her files at the newest epoch seen, with that
        # epoch (``MasterKey.dek_digest``): at load, a member's state at exactly that epoch under another
        # key is his claim (attack round 51b (1)).  Only from keys known hers: her commits, her signed
        # states, a state judged (never while ``claimed``).
        self.keys: dict[str, tuple[int, str]] = {}
        # Files loaded in an older state than seen, with the parents (fids)
        # that older document gives them: where it puts the file is no place
        # the owner's device chose, so no key is sealed by it (the tree's
        # ``covering`` stops there).  Kept (saved) while the file still sits
        # there: a commit of this device's that leaves it in place (a new
        # key) does not make that place chosen; a newer state arriving, or
        # the owner moving the file, ends it.
        self.behind: dict[str, list[str]] = {}
        # Where each of the user's own files was last seen by this device in a
        # place the owner chose or a writer was judged to move it to (the
        # parents' fids): at unlock the tree is built from the documents, and
        # a writer's document that moves a file from a folder they may not
        # write is told from this (vault/tree/authorship.py ``settle``).
        self.where: dict[str, list[str]] = {}
        # The user's own files whose state with no name (the trash) came from
        # another device of hers: where they left from is not known here
        # (``trashed_elsewhere``), whatever ``where`` says.
        self.unplaced: set[str] = set()
        # Other users' files whose newest state this device took in is their owner's own deletion (her
        # trash): hers alone to bring back, as on her own device a file is judged from where it sat
        # (``where``, which keeps her own files only).  A writer's document putting it back in a folder
        # he writes is refused here too: she may have moved it out of his reach before deleting it,
        # out of this user's sight (attack round 24a (3)).
        self.owner_trashed: set[str] = set()
        # The type (``stat.S_IFMT(mode) >> 12``) each of the user's own nodes was
        # first seen with: no commit of fusevault's changes it (a name given to
        # another node is a new node), so at unlock a document that does is
        # refused as while mounted (vault/tree/loading.py ``_typed_as_seen``).
        self.kinds: dict[str, int] = {}
        # The permission bits and owner ids (mode & 0o7777, uid, gid) each of the
        # user's own nodes was last seen with in a state this device took: a
        # file rebuilt from a refused deletion keeps them (vault/tree/undeleting.py),
        # since the store then holds them only in the deleter's document.
        # Values are shared (``_one``): most nodes have one of a few, so 100,000
        # nodes cost their dict slots only (docs/PERFORMANCE.md).
        self.modes: dict[str, tuple[int, int, int]] = {}
        self._values: dict[tuple[int, int, int], tuple[int, int, int]] = {}
        # The name (of its first link) each of the user's own nodes was last seen
        # under in a state this device took, as ``modes``: a node rebuilt from a
        # refused deletion is put back under it (vault/tree/undeleting.py
        # ``name_of``), never under one the deleter's document gives (attack
        # round 14 (3)).  The value is the node's own ``bytes`` object (shared
        # with its link while mounted): each node costs its dict slot only.
        self.names: dict[str, bytes] = {}
        # Every link of those of her nodes that had more than one (hard links: few) in that state,
        # as ``[folder fid, name]``: a node rebuilt is put back under each, never under the first
        # alone (her hard link dropped, or her file moved from a shared folder: attack round 77c (2)).
        self.links: dict[str, list[tuple[str, bytes]]] = {}
        # The owner's stamps followed while this ledger is open (fid -> the
        # folders it names; never saved): a writer's document that leaves the
        # file there leaves it where she put it, which ends a ``behind``.
        self.stamped: dict[str, list[str]] = {}
        # The live leaves of each unsettled conflict (fid -> their seqs), noted
        # when met (vault/services/conflicts.py ``note_branches``) and only if
        # then no older than seen: a concurrent edit, never a replay, though
        # this device's own later commit on the other branch (a lazy commit at
        # unmount) numbers past its own losing edit before the conflict is
        # settled.  Kept (saved) until the conflict is settled; a state met
        # older than seen is never noted, so a replay stays one.
        self.branches: dict[str, list[Seq]] = {}
        # The leaves a settling closed (fid -> their seqs), while no newer state
        # of their device was seen: one put back under a new revision id is a
        # replay, though no older than seen (the other device's revision kept,
        # settling committed nothing: tests/services/test_sync.py, a settled
        # edit put back as a branch).  No client makes a new revision with a
        # closed leaf's seq: a settling that keeps its contents commits them
        # under a new one (conflicts.py ``_adopt``).
        self.closed: dict[str, list[Seq]] = {}
        # Per file, the newest state of each device that a state taken or committed here was made
        # over (``Node.over``, signed by the owner; and this device's own commits): such a state is
        # an ancestor of one seen, so put back it is a replay, though no older than its device's
        # newest: her laptop's state after her desktop edited on top of it (attack round 28b).
        # Only files written on two devices of the owner's have an entry.
        self.covered: dict[str, dict[str, int]] = {}
        # The user's own nodes rebuilt at this load from a refused replay of her
        # own older document (vault/tree/rebuilding.py ``replays_refused``), with the
        # replayed revision (never saved): said with the load's rollbacks, and her
        # newer state committed over that revision before the mount serves
        # (vault/services/rotation.py ``resume``; attack round 18 (7, 8)).
        self.replays: dict[str, str | None] = {}
        # Writers' versions admitted here while their grant was in force (vid -> [signer, signature]):
        # admitted again whatever became of the grant (vault/tree/authorship.py ``version_ok``).
        self.granted: dict[str, list[str]] = {}
        # Other owners' files shared with this user: the owner's wrapping of the file's key (``en_file_dek``/
        # ``owner_dek``) first found here under HER verified signature at the file's newest epoch seen
        # (her state, or her version: vault/tree/guests.py ``carried_wrapping``).  Carried by this
        # user's commits whatever the store says since: one revision of a member's over her version
        # document (her signature left, failing) hid it from the next unlock, and a member's was carried
        # (attack round 56b (3)).  Each entry names the owner whose signature it was found under (fid ->
        # (owner, epoch, wrapping)) and answers for a state of that owner's file only: keyed by the id
        # alone, a member's own file's wrapping kept at an id was carried for another owner's file he
        # made at that id later, and his entry at a higher epoch kept hers from ever being kept (58b (1)).
        self.wrappings: dict[str, tuple[str, int, dict[str, str]]] = {}
        # The versions looked at last for each file that had none of hers (never saved), with the owner
        # they were looked at for: a look is made again only when they change (``wrapping_looked``), not
        # at each arrival (56b (1)); or when the file at the id is another owner's (58b (1)).
        self.looked: dict[str, tuple[str, bytes]] = {}
        self.version = 0  # bumped at each change
        self._saved = 0
        self._lock = threading.Lock()

    # --- the file

    @classmethod
    def open(cls, key: MasterKey, vault_root: Path, vault_id: str, alarms: Alarms | None = None) -> Ledger:
        # ``is not None``: an empty list of alarms is falsy, and the caller's own must still be used.
        alarms = alarms if alarms is not None else for_user(key.user_id)
        ledger = cls(key, ledger_path(vault_root, key.user_id), alarms)
        # An upgraded device's ledger, kept under its vault_id's name, is moved, so it keeps what it saw.
        old = renamed.legacy_path(FOLDER, vault_root, vault_id, key.user_id)
        renamed.adopt(key, KIND, old, ledger.path)
        try:
            # A link, a FIFO, another user's file or one too large is damaged (device_file.read_own).
            data = device_file.read_json(ledger.path, key, KIND)
            if data is None:
                ledger.version = 1  # first sight: written at once, so the device id is kept
                return ledger
            if data.get("format") != FORMAT:
                raise ValueError("unknown ledger format")
            ledger.device = sys.intern(str(data["device"]))
            ledger.counter = int(data["counter"])
            ledger.fids = {fid: (bool(live), {sys.intern(d): int(n) for d, n in seen.items()})
                           for fid, (live, seen) in data["fids"].items()}
            ledger.mine = {str(fid) for fid in data.get("mine", ())}
            ledger.owners = {fid: sys.intern(owner) for fid, owner in data.get("owners", {}).items()
                             if isinstance(owner, str) and owner and fid not in ledger.mine}
            ledger.epochs = {str(fid): int(epoch) for fid, epoch in data.get("epochs", {}).items()}
            ledger.behind = {str(fid): sorted(sys.intern(str(p)) for p in parents)
                             for fid, parents in data.get("behind", {}).items()}
            ledger.where = {str(fid): sorted(sys.intern(str(p)) for p in parents)
                            for fid, parents in data.get("where", {}).items()}
            ledger.unplaced = {str(fid) for fid in data.get("unplaced", ())}
            ledger.owner_trashed = {str(fid) for fid in data.get("owner_trashed", ())}
            ledger.kinds = {str(fid): int(kind) for fid, kind in data.get("kinds", {}).items()}
            ledger.modes = {str(fid): ledger._one((int(perm) & 0o7777, int(uid), int(gid)))
                            for fid, (perm, uid, gid) in data.get("modes", {}).items()}
            ledger.names = {str(fid): str_to_name(name) for fid, name in data.get("names", {}).items()
                            if isinstance(name, str)}
            ledger.links = {str(fid): [(sys.intern(str(parent)), str_to_name(name)) for parent, name in links]
                            for fid, links in data.get("links", {}).items()}
            ledger.branches = {str(fid): [(sys.intern(str(d)), int(n)) for d, n in seqs]
                               for fid, seqs in data.get("branches", {}).items()}
            ledger.closed = {str(fid): [(sys.intern(str(d)), int(n)) for d, n in seqs]
                             for fid, seqs in data.get("closed", {}).items()}
            ledger.covered = {str(fid): {sys.intern(str(d)): int(n) for d, n in over.items()}
                              for fid, over in data.get("covered", {}).items()}
            ledger.granted = {str(vid): [str(signer), str(sig)]
                              for vid, (signer, sig) in data.get("granted", {}).items()}
            ledger.claimed = {str(fid): int(epoch) for fid, epoch in data.get("claimed", {}).items()}
            ledger.claims_said = {str(fid) for fid in data.get("claims_said", ()) if fid in ledger.claimed}
            ledger.keys = {str(fid): (int(epoch), str(digest))
                           for fid, (epoch, digest) in data.get("keys", {}).items()}
            ledger.wrappings = {str(fid): kept for fid, entry in data.get("wrappings", {}).items()
                                if (kept := _wrapping_entry(entry)) is not None}
        except (device_file.Damaged, KeyError, ValueError, TypeError, AttributeError):
            ledger.alarms.warn("ledger", str(ledger.path), f"this device's rollback ledger {ledger.path} "
                               "was damaged or replaced: rollbacks before now cannot be told; started afresh")
            ledger = cls(key, ledger.path, ledger.alarms)
            ledger.version = 1
        return ledger

    def snapshot(self) -> tuple[int, dict]:
        """What to write (on the loop: cheap, a shallow copy)."""
        return self.version, {"format": FORMAT, "device": self.device, "counter": self.counter,
                              "fids": dict(self.fids), "mine": list(self.mine),
                              "owners": dict(self.owners),
                              "epochs": dict(self.epochs), "behind": dict(self.behind),
                              "where": dict(self.where), "unplaced": list(self.unplaced),
                              "owner_trashed": list(self.owner_trashed),
                              "kinds": dict(self.kinds),
                              "modes": dict(self.modes),
                              "names": dict(self.names), "links": dict(self.links),
                              "branches": dict(self.branches),
                              "closed": dict(self.closed), "covered": dict(self.covered),
                              "granted": dict(self.granted), "claimed": dict(self.claimed),
                              "claims_said": list(self.claims_said), "keys": dict(self.keys),
                              "wrappings": dict(self.wrappings)}

    def write(self, snap: tuple[int, dict]) -> None:
        """Write a snapshot (off the loop); an older one never replaces a newer."""
        version, data = snap
        with self._lock:
            if version <= self._saved:
                return
            fids = {f: [live, seen] for f, (live, seen) in data["fids"].items()}
            names = {f: name_to_str(name) for f, name in data["names"].items()}
            links = {f: [[parent, name_to_str(name)] for parent, name in each]
                     for f, each in data["links"].items()}
            plain = json.dumps({**data, "fids": fids, "names": names, "links": links},
                               separators=(",", ":")).encode()
            device_file.write(self.path, self.key, KIND, plain)
            fsync_dir(self.path.parent)
            self._saved = version

    def save(self) -> None:
        self.urgent = False
        if self.version > self._saved:
            try:
                self.write(self.snapshot())
            except OSError as err:
                log.error("could not save the rollback ledger %s: %s", self.path, err)

    async def save_async(self) -> None:
        if self.version > self._saved:
            try:
                await trio.to_thread.run_sync(self.write, self.snapshot())
            except OSError as err:
                log.error("could not save the rollback ledger %s: %s", self.path, err)

    async def keep_saved(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            with trio.move_on_after(SAVE_EVERY):
                while not self.urgent:
                    await trio.sleep(URGENT_LOOK)
            self.urgent = False
            await self.save_async()

    # --- what is seen

    def older(self, fid: str, seq: Seq | None) -> bool:
        """Is this state of ``fid`` older than one this device has seen?"""
        entry = self.fids.get(fid)
        if entry is None:
            return False
        seen = entry[1]
        if seq is None:
            return bool(seen)  # written before seq existed, where a seq'd state was seen
        newest = seen.get(seq[0])
        return (newest is not None and seq[1] < newest) or self._covers(fid, seq)

    def _covers(self, fid: str, seq: Seq) -> bool:
        """Was a state taken or made here made over ``seq`` (or a later state of its device)?"""
        over = self.covered.get(fid)
        return over is not None and seq[1] <= over.get(seq[0], -1)

    def newer(self, fid: str, seq: Seq | None) -> bool:
        """Is this state of ``fid`` newer than every one seen from its device?"""
        entry = self.fids.get(fid)
        return seq is not None and (entry is None or seq[1] > entry[1].get(seq[0], -1)) and not self._covers(
            fid, seq)

    def cover(self, fid: str, over: dict[str, int] | None) -> None:
        """Remember the states a state of ``fid`` taken or made here was made over (``Node.over``)."""
        if not over:
            return
        held = self.covered.get(fid, {})
        if all(held.get(device, -1) >= n for device, n in over.items()):
            return
        covered = {**held, **{d: n for d, n in over.items() if n > held.get(d, -1)}}
        # As ``seen`` (``_fewer``): the owner of a file shared with this user names what devices she likes.
        self.covered[fid] = dict(list(covered.items())[-DEVICES:])
        self.version += 1

    def superseded(self, fid: str, taken: Seq | None) -> None:
        """``taken``, a state of ``fid`` newer than seen, is taken here as the file's only live state
        (no conflict): every revision this device's store held of it is an ancestor of it, or a dead
        leaf, so every state seen before from another device or writer is superseded: put back, it is
        a replay, though the newest seen of its device.  Without this, a WRITE grantee's edit (or
        rename, or deletion) of her file was undone silently by her own preceding state put back as the
        newest revision (attack round 33b (1)): his ``over`` is his word, never taken.  Only numbers
        this device recorded; her devices' go on in the ``over`` she signs next (``made_over``)."""
        entry = self.fids.get(fid)
        if taken is not None and entry is not None:
            self.cover(fid, {d: n for d, n in entry[1].items() if d != taken[0]})

    def record(self, fid: str, seq: Seq | None, live: bool) -> None:
        entry = self.fids.get(fid)
        seen = entry[1] if entry else {}
        if seq is not None and seq[1] > seen.get(seq[0], -1):
            seen = {**seen, seq[0]: seq[1]}
            if len(seen) > DEVICES:
                seen = self._fewer(fid, seen, seq[0])
        elif entry is not None and entry[0] == live:
            return
        self.fids[fid] = (live, seen)
        self.version += 1

    def _fewer(self, fid: str, seen: dict[str, int], new: str) -> dict[str, int]:
        """``seen`` less the devices named first, down to ``DEVICES`` (never this one's, nor ``new``):
        a writer who names a new device in each document he signs (or the owner of a file shared
        with this user, in hers) must not grow this ledger without bound (attack round 33b (2)).
        Replays of a forgotten device's states are no longer told; only one who wrote the file from
        that many devices loses that."""
        extra = len(seen) - DEVICES
        drop = [d for d in seen if d not in (self.device, new)][:extra]
        if (over := self.covered.get(fid)) is not None and any(d in over for d in drop):
            self.covered[fid] = {d: n for d, n in over.items() if d not in drop}
        return {d: n for d, n in seen.items() if d not in drop}

    def keyed(self, fid: str, epoch: int) -> None:
        """Remember the newest key epoch seen of the file."""
        if epoch > self.epochs.get(fid, 0):
            self.epochs[fid] = epoch
            self.version += 1

    def claim(self, fid: str, epoch: int, *, said: bool = True) -> bool:
        """Her node of ``fid`` holds a key a member's state claimed, taken in at her ``epoch``
        (``claimed``).  Whether to say it now: a claim (``said``) not said yet, once a claim.  A
        take-back (``said`` False: a state below her epoch, as an honest write during a revoke is) is
        remembered unsaid, and a claim after it is said still (attack round 53a (5))."""
        if self.claimed.get(fid) != epoch:
            self.claimed[fid] = epoch
            self.version += 1
            self.claimed_at = self.version  # on disk before her next commit of it (``stamp``)
            self.urgent = True  # saved at once (``keep_saved``), not within SAVE_EVERY
        if not said or fid in self.claims_said:
            return False
        self.claims_said.add(fid)
        self.version += 1
        self.claimed_at = self.version
        self.urgent = True
        return True

    def unclaim(self, fid: str) -> None:
        """Her file of ``fid`` is gone by her own removal (``committed``): nothing more to re-key.  Never
        on a member's removal: his next state brings it back under the key he claimed (53a (2))."""
        self.claims_said.discard(fid)
        if self.claimed.pop(fid, None) is not None:
            self.version += 1

    def saw_key(self, fid: str, epoch: int, dek: bytes | None) -> None:
        """``dek`` is her own key of her file at ``epoch`` (her commit, her signed state, a state
        judged no claim): remembered at the newest epoch seen (``keys``).  Above a claimed epoch it
        is her re-key (nothing else raises her node's epoch past the judging): the claim is over."""
        claimed = self.claimed.get(fid)
        if claimed is not None:
            if epoch <= claimed:
                return  # still his key, at her epoch
            del self.claimed[fid]
            self.claims_said.discard(fid)
            self.version += 1
        if not dek or epoch < 1 or epoch != self.epochs.get(fid, 0):
            return  # at epoch 0 (her first key) no older key of hers exists for a member to claim
        digest = (epoch, self.key.dek_digest(fid, epoch, dek))
        if self.keys.get(fid) != digest:
            self.keys[fid] = digest
            self.version += 1

    def key_known(self, fid: str, epoch: int, dek: bytes) -> bool | None:
        """Whether ``dek`` is the key of hers this device saw the file have at ``epoch``; None where
        none is known here at that epoch (a ledger from before ``keys``, a file only ever taken in
        from a member's state)."""
        held = self.keys.get(fid)
        if held is None or held[0] != epoch:
            return None
        return hmac.compare_digest(held[1], self.key.dek_digest(fid, epoch, dek))

    # --- an owner's wrapping of her shared file's key (vault/tree/guests.py ``carried_wrapping``)

    def wrapping_signed(self, fid: str, owner: str, epoch: int) -> dict[str, str] | None:
        """The wrapping of ``fid``'s key at ``epoch`` found here under the verified signature of its owner
        ``owner``, or None (none found yet, only at another epoch, or only another owner's: a file once
        at this id owned by someone else, 58b (1))."""
        held = self.wrappings.get(fid)
        return dict(held[2]) if held is not None and held[0] == owner and held[1] == epoch else None

    def saw_wrapping(self, fid: str, owner: str, epoch: int, wrapping: dict[str, str]) -> None:
        """``wrapping`` was found under the verified signature of ``owner``, the owner of ``fid``, at
        ``epoch`` (the caller checked it): kept unless one of hers at that epoch or a newer one is kept
        already (any of hers at an epoch opens the same key: her next commit's, wrapped afresh, is no
        news, and no write).  An entry of another owner's is replaced, whatever its epoch: it is about
        another file, once at this id (58b (1))."""
        held = self.wrappings.get(fid)
        if (not _wrapping_shaped(wrapping) or not owner
                or (held is not None and held[0] == owner and held[1] >= epoch)):
            return
        self.wrappings[fid] = (sys.intern(owner), epoch, dict(wrapping))
        self.looked.pop(fid, None)
        self.version += 1

    def wrapping_looked(self, fid: str, owner: str, seen: bytes) -> bool:
        """Whether the versions ``seen`` (a digest of their ids, revisions and signatures) were looked at
        already for ``owner``'s file ``fid`` with none of hers found; remembered as the ones looked at now
        if not (in memory: an unlock looks again)."""
        if self.looked.get(fid) == (owner, seen):
            return True
        self.looked[fid] = (owner, seen)
        return False

    # --- commits (vault/tree/inodes.py: Inodes.commit)

    def stamp(self, nodes: list[Node]) -> None:
        """Give each node to be committed its next ``seq`` (before its document is built)."""
        if self._saved < self.claimed_at and any(node.fid in self.claimed for node in nodes):
            # A claim on disk before her commit of that file (signing the key it marks) reaches the
            # store: a crash between them left her signed state and no claim (attack round 52a (3)).
            # Looked at by what is on disk, not by ``urgent``: ``keep_saved`` clears that when its write
            # starts, and her commit then went ahead of that write (53a (3)); ``save`` waits for it.
            self.save()
        for node in nodes:
            self.counter += 1
            node.over = self.made_over(node.fid, node.over, node.seq, node.placed)
            node.seq = (self.device, self.counter)
        self.version += 1

    def made_over(self, fid: str, over: dict[str, int] | None, prev: Seq | None,
                  placed: dict | None = None) -> dict[str, int] | None:
        """What a state of ``fid`` this device commits over the state ``prev`` (with its ``over``) is made
        over: both, less this device's own (its counter orders those).  ``prev`` counts only as far as
        this device took states of its device (a writer's document naming her device is kept apart
        here: ``writer_seq``, so his number never reaches her signed lineage).  And what this device
        knows superseded already (``covered``): a state held without her ``over`` (a writer's, or one
        rebuilt at load) must not drop it from the next one she signs (attack round 30a).  And the
        commit of her placement stamp that state carries (``placed``, ``_carried``)."""
        merged = {d: n for d, n in (over or {}).items() if d != self.device}
        for d, n in self.covered.get(fid, {}).items():
            # A writer's state (kept apart, ``<device>/<signer>``) stays this device's to judge: her
            # signed ``over`` names her devices only (nodes.py refuses any other name).
            if (d != self.device and "/" not in d and n > merged.get(d, -1)
                    and (d in merged or len(merged) < MAX_OVER)):
                merged[d] = n
        entry = self.fids.get(fid)
        if (prev is not None and prev[0] != self.device and "/" not in prev[0] and entry is not None
                and entry[1].get(prev[0], -1) >= prev[1] > merged.get(prev[0], -1)
                and (prev[0] in merged or len(merged) < MAX_OVER)):
            merged[prev[0]] = prev[1]
        carried = self._carried(fid, placed)
        if (carried is not None and carried[1] > merged.get(carried[0], -1)
                and (carried[0] in merged or len(merged) < MAX_OVER)):
            merged[carried[0]] = carried[1]
        return merged or None

    def _carried(self, fid: str, placed: dict | None) -> Seq | None:
        """The commit of her other device whose placement stamp ``placed`` the state committed over
        carries, if this device had the file where that stamp puts it (``where``) and saw that device
        that far (her states, or a stamp followed: ``saw_placed``), never a live branch's: the state is
        made over that placement.  Not named in ``over``, her laptop that knew the desktop's move only
        from a member's document (whose seq is kept apart) made its later move over a state the desktop's
        re-key in place then took for a move made apart, and undid it unsaid (attack round 46d (2))."""
        placed = shaped(placed)
        if placed is None:
            return None
        device, n = placed["seq"]
        entry = self.fids.get(fid)
        if device == self.device or "/" in device or entry is None or entry[1].get(device, -1) < n:
            return None
        if self.where.get(fid) != sorted(placed["parents"]) or (device, n) in self.branches.get(fid, ()):
            return None
        return device, n

    def supersedes(self, fid: str) -> bool:
        """Whether a commit of ``fid`` here would supersede a state seen of another device or writer,
        not marked superseded yet (``committed``): only then is the store asked whether the file is in
        conflict (at most once per state seen, never at each of her commits)."""
        entry = self.fids.get(fid)
        if entry is None:
            return False
        over = self.covered.get(fid, {})
        return any(d != self.device and n > over.get(d, -1) for d, n in entry[1].items())

    def committed(self, nodes: list[Node], deleted: list[bool],
                  places: list[list[str]] | None = None, alone: Container[str] = (),
                  fid_of: Callable[[int], str | None] | None = None) -> None:
        """``places``: each node's parents (fids) as committed (``fid_of``: a folder inode's fid).
        ``alone``: the files whose store document has no other live branch after this commit (no
        conflict).  A commit of one of them is made over the state this device held, and every
        state seen before is an ancestor of that or a closed leaf: each is superseded, as by a state
        taken at arrival (``superseded``), so the last state of a writer (or of her other device)
        this device took, served again over her commit, is a replay, though still the newest of its
        device.  Without it the server undid her change made over a WRITE member's state, unsaid, by
        serving his state again (attack round 76a (2)); her other devices supersede it when they
        take her commit (``admit``, ``check_loaded``).
        In conflict, nothing: the settling judges the branches."""
        for i, (node, gone) in enumerate(zip(nodes, deleted)):
            moved = places is not None and places[i] != self.behind.get(node.fid)
            if node.fid in self.behind and (gone or moved):
                self._placed(node.fid)  # moved (or deleted) by the owner on this device: her choice
            if node.fid in alone:
                self.superseded(node.fid, node.seq)
            self.record(node.fid, node.seq, not gone)
            self.cover(node.fid, node.over)
            self.keyed(node.fid, node.epoch)
            self.saw_owner(node.fid, node.owner)
            if node.owner == self.key.user_id:
                self._own(node.fid)
                self.saw_kind(node)
                if gone:
                    self.unclaim(node.fid)  # her own removal: a member's is undone by his next state
                else:
                    self.saw_key(node.fid, node.epoch, node.dek)
                    self.saw_mode(node)
                    self.saw_name(node, fid_of)
                if places is not None and not gone and node.fid not in self.behind:
                    self._at(node.fid, places[i])

    def _at(self, fid: str, parents: list[str]) -> None:
        if fid in self.unplaced:
            self.unplaced.discard(fid)  # placed again: its place is known
            self.version += 1
        if self.where.get(fid) != parents:
            self.where[fid] = parents
            self.version += 1

    def hold_back(self, fid: str, parents: list[str]) -> None:
        """Keep the file ``behind`` in ``parents``: a place nothing says the owner
        chose (``check --repair`` rebuilding it where an old version names)."""
        if self.behind.get(fid) != parents:
            self.behind[fid] = parents
            self.version += 1

    def was_at(self, fid: str) -> list[str] | None:
        """The parents (fids) this device last saw the user's own file in, if known."""
        return self.where.get(fid)

    def kind_seen(self, fid: str) -> int | None:
        """The type (``stat.S_IFMT``) the user's own node was first seen with, if known."""
        kind = self.kinds.get(fid)
        return None if kind is None else kind << 12

    def saw_kind(self, node: Node) -> None:
        """Remember the type of the user's own node, at its first sight only:
        a later document changing it is refused, never learnt."""
        if node.owner == self.key.user_id and node.fid not in self.kinds:
            self.kinds[node.fid] = stat.S_IFMT(node.mode) >> 12
            self.version += 1

    def saw_mode(self, node: Node) -> None:
        """Remember the permission bits and owner ids of the user's own node, as
        taken in (her commit, a load, an arrival judged and taken)."""
        if node.owner == self.key.user_id:
            now = (stat.S_IMODE(node.mode), node.uid, node.gid)
            if self.modes.get(node.fid) != now:
                self.modes[node.fid] = self._one(now)
                self.version += 1

    def _one(self, value: tuple[int, int, int]) -> tuple[int, int, int]:
        return self._values.setdefault(value, value)

    def saw_name(self, node: Node, fid_of: Callable[[int], str | None] | None) -> None:
        """Remember the name the user's own node is linked under (its first link),
        and every link of a node with more than one (``fid_of``: a folder inode's
        fid; none given, the links are left as they were), as taken in (as
        ``saw_mode``).  A node with no name (the root, the trash) keeps the ones it had."""
        if node.owner == self.key.user_id and node.links:
            name = node.links[0][1]
            held = self.names.get(node.fid)
            if held is not name:
                self.names[node.fid] = name  # the link's own object, even when equal: shared
                if held != name:
                    self.version += 1
            if fid_of is None:
                return
            every = ([(fid_of(parent) or "", link) for parent, link in node.links]
                     if len(node.links) > 1 else None)
            if every != self.links.get(node.fid):
                if every is None:
                    del self.links[node.fid]
                else:
                    self.links[node.fid] = every
                self.version += 1

    def name_seen(self, fid: str) -> bytes | None:
        """The name the user's own node was last seen under, if known."""
        return self.names.get(fid)

    def links_seen(self, fid: str) -> list[tuple[str, bytes]]:
        """Every (folder, name) of the user's own node last seen with more than one link; else none."""
        return self.links.get(fid, [])

    def mode_seen(self, fid: str) -> tuple[int, int, int] | None:
        """(permission bits, uid, gid) the user's own node was last seen with, if known."""
        return self.modes.get(fid)

    def saw_placed(self, fid: str, parents: list[str], seq: Seq) -> None:
        """The owner's stamp of her file in ``parents`` at ``seq``, newer than any
        state this device saw from that device (vault/tree/authorship.py
        ``was_placed``): remembered as seen, so it is news only once, and as
        where she last put the file."""
        entry = self.fids.get(fid)
        self.record(fid, seq, entry[0] if entry is not None else True)
        self._at(fid, parents)
        self.stamped[fid] = parents

    def written_while_granted(self, vid: str, signer: str, signature: str) -> bool:
        """Whether this device admitted writer ``signer``'s version ``vid``, this very document."""
        return self.granted.get(vid) == [signer, signature]

    def granted_write(self, vid: str, signer: str, signature: str) -> None:
        """Writer ``signer``'s version ``vid`` admitted here, his grant in force."""
        if self.granted.get(vid) != [signer, signature]:
            self.granted[vid] = [signer, signature]
            self.version += 1

    def _own(self, fid: str) -> None:
        if fid not in self.mine:
            self.mine.add(fid)
            self.version += 1

    # --- whose file an id is (``owners``, ``mine``)

    def owner_seen(self, fid: str) -> str | None:
        """The owner this device first saw the file ``fid`` under, if known."""
        return self.key.user_id if fid in self.mine else self.owners.get(fid)

    def saw_owner(self, fid: str, owner: str) -> None:
        """A state of ``fid`` naming ``owner`` taken here (opened and judged): the id is that owner's
        from now on, if no owner was seen at it yet; the user's own into ``mine``.  The one binding
        every way a state is taken calls: an arrival (``admit``), a new share or a group join
        (absorbing.py ``_admit_new_shares``), a load (``check_loaded``), this device's commit
        (``committed``).  Her own file taken first by an arrival (made on her other device) was bound
        to no one until an unlock: another owner's file at its id, taken after a lock, was bound and
        hers refused on her own device (attack round 59b (2)).  Her commit and her load bind hers
        over any (``_own``)."""
        if not owner or fid in self.mine or fid in self.owners:
            return
        if owner == self.key.user_id:
            self.mine.add(fid)
        else:
            self.owners[fid] = sys.intern(owner)
        self.version += 1

    def owner_refused(self, fid: str, owner: object, *, say: bool = True) -> bool:
        """Whether a document at ``fid`` names another owner than the one this device first saw the file
        under: never a state of that file (``owners``), so none of its records judge it; refused, and
        said (once: the alarm counts the rest)."""
        seen = self.owner_seen(fid)
        if seen is None or owner == seen:
            return False
        if say:
            self.alarms.warn("owner-changed", fid, f"file {fid}, which this device saw as {seen:.40}'s, now "
                             f"names another owner ({owner!s:.40}) in the store: it is not taken in")
        return True

    # --- arrivals (vault/services/absorbing.py)

    def admit(self, volume: Held, doc: dict, fresh: Node | None,
              in_conflict: Callable[[], bool] = lambda: True) -> bool:
        """May this arrived node document be taken in?  No (and said) if it is
        older than what this device has seen of the file.  ``in_conflict``: whether
        the store holds another live branch of it (then nothing is superseded: the
        settling judges the branches; unknown, True)."""
        fid = doc["_id"]
        if doc.get("_deleted"):
            self.record(fid, None, False)  # a peer's gc of expired trash arrives so
            return True
        if self.owner_refused(fid, doc.get("owner")):
            return False  # another owner's document at the id: no state of the file seen (58b (1))
        if fresh is None:
            # Judged already (signature, WRITE), but its seq cannot be read here (another owner's state
            # under a key not held here, as her deletion before her restore re-keyed the file): judged
            # by the key epoch she signed instead, before it changes anything (attack round 25a (1), (2)).
            if self.under_older_key(fid, doc):
                self._rolled_back(volume, fid, "offered by a peer or the server")
                if (held := volume.find(fid)) is not None:
                    volume.stand_on(held, doc["_rev"])  # as below: a later commit goes on top of the replay
                return False
            self._trashed_by_owner(fid, doc)
            return True
        seq = writer_seq(fresh.seq, doc, self.key.user_id)
        if self.older(fid, seq):
            self._rolled_back(volume, fid, "offered by a peer or the server")
            if (held := volume.find(fid)) is not None:
                # The tree keeps its newer state; its next commit goes on top
                # of the older revision (and puts the newer state back).  Standing on it, never
                # taking it: its names stay judged by who signed the state held, not the replay's
                # signer (``Tree.stand_on``; attack round 74b (2)).
                volume.stand_on(held, doc["_rev"])
            return False
        # Only a state taken changes her trash as seen here: a replayed older live state of hers
        # must not let a writer bring her trashed file back (attack round 25a (4)).
        self._trashed_by_owner(fid, doc)
        if self.newer(fid, seq) and not in_conflict():
            self.superseded(fid, seq)
        self.record(fid, seq, not doc.get("delete"))
        self.cover(fid, fresh.over)  # its owner's word only (nodes.py ``node_from_doc``)
        self._caught_up(seq, fresh.over)
        self.keyed(fid, fresh.epoch)
        self.saw_owner(fid, fresh.owner)
        self.saw_kind(fresh)
        if fid not in self.claimed:  # a claimed key stays to re-key, whatever arrives over it
            self.rolled.discard(fid)  # as new as seen: its key is the newest the owner gave it
        return True

    def arrived(self, fid: str, parents: list[str], by_owner: bool) -> None:
        """The user's own file, taken in from a newer document (placed where it
        puts it, after its WRITE was judged).  One the owner signed ends a
        ``behind`` (where it sits is hers); a writer's document keeps it behind,
        wherever it puts it: a place the owner never chose gives a writer's
        move from it no weight; unless it is where her stamp that document
        carried puts it (``stamped``): hers."""
        if not by_owner and fid in self.unplaced:
            return  # only she knows where it is: a writer's document placing it tells nothing (round 23a (3))
        if fid in self.behind:
            if not by_owner and self.stamped.get(fid) != parents:
                if self.behind[fid] != parents:
                    self.behind[fid] = parents
                    self.version += 1
                return
            self._placed(fid)
        self._at(fid, parents)

    def _placed(self, fid: str) -> None:
        if self.behind.pop(fid, None) is not None:
            self.version += 1

    def trashed_elsewhere(self, fid: str, seq: Seq | None) -> None:
        """The owner's own state of her file ``fid`` with no name (the trash), at
        ``seq``, from another device, taken in: where it sat when she deleted it
        is not known here (she may have moved it first, there: a move this device
        never saw).  Its place is then unknown (``left_from``), so its history is hers alone to write
        (authorship.py ``writes_where_it_left``), as on a new device: a writer of
        the folder it was last seen in here never chooses what it is restored
        as (attack round 22a (2)).  A state this device gave knows its place;
        a later state of it with a name (restored, here or there) ends this
        (``_at``)."""
        if seq is None or seq[0] == self.device or fid in self.unplaced:
            return
        self.unplaced.add(fid)
        self.version += 1

    def left_from(self, fid: str) -> list[str] | None:
        """The parents (fids) the user's own file out of the tree left from, if
        known here: not for one whose deletion came from another device
        (``trashed_elsewhere``).  ``was_at`` stays, for the judging of a writer's
        document that brings it back (every folder it goes into is judged)."""
        return None if fid in self.unplaced else self.where.get(fid)

    def under_older_key(self, fid: str, doc: dict) -> bool:
        """Whether ``doc``, a state of another user's file signed by its owner that does not open here
        (its sealed ``seq`` unread), carries a key epoch below one this device took of the file: made
        before that state, a replay.  Her epochs only grow (a rotation, and her ``restore``, which
        always gives the file a new key: vault/services/recovery.py), and only keys she sealed count
        here (``keyed`` takes opened states only), so a writer cannot make her genuine state look old.
        A deletion her other device made offline, concurrent with a new key given here, is refused so
        too: said (a rollback), the file kept, never silently gone."""
        owner = doc.get("owner")
        if (owner == self.key.user_id or not isinstance(owner, str) or _signer(doc) != owner
                or self.owner_refused(fid, owner, say=False)):
            return False  # another owner's document at the id is judged by none of its records (58b (1))
        try:
            epoch = clear_epoch(doc)
        except CorruptData:
            return False  # refused where it is opened or judged; no epoch to compare here
        return epoch < self.epochs.get(fid, 0)

    def _trashed_by_owner(self, fid: str, doc: dict) -> None:
        """Note another user's file put in the trash (or taken out of it) by a state its owner signed.
        A writer's state changes nothing: his deletion is his to undo, and his document bringing back
        one of hers is refused before it is taken (``trashed_by_owner``)."""
        owner = doc.get("owner")
        if owner == self.key.user_id or not isinstance(owner, str) or _signer(doc) != owner:
            return
        if doc.get("delete") is True and fid not in self.owner_trashed:
            self.owner_trashed.add(fid)
            self.version += 1
        elif doc.get("delete") is False and fid in self.owner_trashed:
            self.owner_trashed.discard(fid)
            self.version += 1

    def trashed_by_owner(self, fid: str) -> bool:
        """Whether another user's file ``fid`` was last seen here put in the trash by its owner: only a
        document she signs brings it back (a ``restore`` is hers alone: the trash is the owner's)."""
        return fid in self.owner_trashed

    def place_unknown(self, fid: str) -> bool:
        """Whether the user's own file ``fid`` left the tree from a place not known here
        (``trashed_elsewhere``), and no document she signed placed it since."""
        return fid in self.unplaced

    def _caught_up(self, seq: Seq | None, over: dict[str, int] | None) -> None:
        """A state this device numbered above its counter came back (from a peer): its ledger went
        back (her home restored from a backup, a VM snapshot) after it committed them.  The counter
        never goes back, or her next edit would be numbered below her own states and refused as a
        rollback on her other devices, and lost (attack round 40b (1); ``check_loaded`` does the same
        for what the store holds at load)."""
        top = self.counter
        if seq is not None and seq[0] == self.device and top < seq[1] <= self.counter + MAX_LAG:
            top = seq[1]
        mine = over.get(self.device) if over else None
        if isinstance(mine, int) and top < mine <= self.counter + MAX_LAG:
            top = mine
        if top != self.counter:
            self.counter = top
            self.version += 1

    def branch(self, fid: str, seq: Seq | None) -> None:
        """A live leaf of an unsettled conflict of ``fid``, at ``seq``, signed
        by the file's owner: noted as a concurrent edit if no older than seen
        (and, if this device's, a number it gave)."""
        if (seq is None or self.older(fid, seq) or seq in self.closed.get(fid, ())
                or (seq[0] == self.device and seq[1] > self.counter)):
            return
        held = self.branches.get(fid, [])
        if seq not in held:
            self.branches[fid] = [*held, seq]
            self.version += 1

    def settled_branches(self, fid: str) -> None:
        """The conflict of ``fid`` is settled: its leaves are closed, and one
        put back later is judged as any other state."""
        if self.branches.pop(fid, None) is not None:
            self.version += 1

    def close_leaf(self, fid: str, seq: Seq | None) -> None:
        """A settling closed the leaf of ``fid`` at ``seq``: put back, it is a
        replay.  Kept while it is the newest seen of its device (then
        ``older`` tells), the last few per file."""
        if seq is None or self.older(fid, seq) or seq in self.closed.get(fid, ()):
            return
        self.closed[fid] = [*(s for s in self.closed.get(fid, ()) if not self.older(fid, s)), seq][-_CLOSED:]
        self.version += 1

    def own_replay(self, fid: str, seq: Seq | None) -> bool:
        """Is ``seq`` a state of ``fid`` that THIS device gave, older than one it gave
        or saw since, and no live leaf of a conflict met (``branches``)?  Her own older
        document put back (a store writer, a server's replay left current).  Another
        device's numbers are never judged so at load: they order only that device's
        states, never its state against one made here (a deletion made there, then a
        restore here, are both the newest of their device)."""
        return (seq is not None and seq[0] == self.device and self.older(fid, seq)
                and seq not in self.branches.get(fid, ()))

    def seen_live(self, fid: str) -> bool:
        """Was the newest state this device saw of ``fid`` a live one (not in the trash)?"""
        entry = self.fids.get(fid)
        return entry is not None and entry[0]

    def replayed(self, volume: Held, fid: str, seq: Seq | None, how: str,
                 settled_over: dict[str, int] | None = None) -> bool:
        """Is this state of ``fid`` older than one seen, or a leaf a settling
        closed, and no leaf of its conflict met live (``branches``)?  If so it
        is not taken in (vault/services/conflicts.py), and said: a replay.
        Unless it is this device's own newest state and ``settled_over``, the
        ``over`` of the other leaf (signed by the owner), names it: her other
        device settled this very leaf and made that state over it; the leaf's
        closing has not arrived yet (it travels apart from the settled revision).
        Said, that was a false alarm on two devices' concurrent edits.  Another
        device's state put back as a branch under a state made over it is a
        replay, said (tests/mount/test_trust_attack_round28b.py)."""
        closed = seq is not None and seq in self.closed.get(fid, ())
        if not (closed or self.older(fid, seq)) or seq in self.branches.get(fid, ()):
            return False
        if not closed and self._settled_elsewhere(fid, seq, settled_over):
            log.info("a leaf of %s another device settled already, closed here too", fid)
            return True
        self._rolled_back(volume, fid, how)
        return True

    def _settled_elsewhere(self, fid: str, seq: Seq | None, over: dict[str, int] | None) -> bool:
        entry = self.fids.get(fid)
        return (seq is not None and seq[0] == self.device and over is not None and entry is not None
                and seq[1] >= entry[1].get(seq[0], -1) and seq[1] <= over.get(seq[0], -1))

    def _rolled_back(self, volume: Held, fid: str, how: str) -> None:
        held = volume.find(fid)
        name = path_shown(volume, held) if held is not None else fid
        self.alarms.warn("rollback", fid, f"rollback: an older state of {name} ({fid}) than this device "
                         f"has seen was {how}; it is not taken in")

    # --- load (vault/tree/loading.py)

    def check_loaded(self, volume: Held, store: Store, moved: dict[str, list[str]] | None = None,
                     signers: dict[str, str] | None = None) -> None:
        """Compare the loaded tree with what this device saw; report rollbacks
        and vanished files, then remember the tree.  ``moved``: the user's own
        files a writer's document put where the writer was not judged to move
        them (vault/tree/authorship.py ``settle``): kept ``behind`` there.
        ``signers``: the files whose document another than their owner signed,
        and who (their ``seq`` is kept apart unless that writer is this
        ledger's user: ``writer_seq``)."""
        moved = moved or {}
        signers = signers or {}
        # Files with another live branch (a conflict, settled after the load): nothing superseded.
        branched = set(replica.conflicted(local)) if (local := replica.local_of(store)) is not None else None
        rolled: list[tuple[str, str]] = []  # (fid, where it shows)
        top = self.counter
        loaded = volume.nodes()
        fids = {node.ino: node.fid for node in loaded}
        for node in loaded:
            if not node.dek:
                continue  # a share's virtual folder or a phantom parent: no document opened
            self.saw_owner(node.fid, node.owner)  # first seen now (a ledger from before: learnt)
            seq = node.seq
            if seq is not None:
                signer = signers.get(node.fid)
                seq = apart(seq, signer if signer != self.key.user_id else None)  # as writer_seq keeps it
            if seq is not None and seq[0] == self.device and top < seq[1] <= self.counter + MAX_LAG:
                # The ledger lagged (a crash): the counter never goes back.  Never further
                # than a crash can leave it behind: a writer's document naming this device
                # at the top of the range would make every later commit of the owner's
                # one that check_numbers refuses.
                top = seq[1]
            mine = node.over.get(self.device) if node.over and node.owner == self.key.user_id else None
            if isinstance(mine, int) and top < mine <= self.counter + MAX_LAG:
                # Her state signed over a state of this device this ledger does not count to (it came
                # back from a backup): numbering on from below it would make her next edit a "rollback"
                # on the device that signed it (attack round 31b (1)).
                top = mine
            if self.older(node.fid, seq):
                rolled.append((node.fid, path_shown(volume, node)))
                if node.epoch < self.epochs.get(node.fid, 0):
                    self.rolled.add(node.fid)
                place = parents_of(node, fids.get)
                if self.behind.get(node.fid) != place:
                    self.behind[node.fid] = place
                    self.version += 1
            else:
                stamped = self.stamped.get(node.fid)
                if node.fid not in moved and (
                        (self.newer(node.fid, seq) and node.fid not in signers)
                        or (stamped is not None and stamped == parents_of(node, fids.get))):
                    # A state of the owner's no one had seen here: where it sits is
                    # hers.  A writer's newer document never ends ``behind`` (as
                    # while mounted: ``arrived``), unless it leaves the file where
                    # her stamp it carried puts it.
                    self._placed(node.fid)
                if branched is not None and node.fid not in branched and self.newer(node.fid, seq):
                    self.superseded(node.fid, seq)
                self.record(node.fid, seq, True)
                self.cover(node.fid, node.over)
                self.keyed(node.fid, node.epoch)
                if node.owner == self.key.user_id and node.fid not in signers:
                    self.saw_key(node.fid, node.epoch, node.dek)  # her own signed state
                if node.fid not in signers and node.fid in self.owner_trashed:
                    self.owner_trashed.discard(node.fid)  # live again as its owner signed it: restored
                    self.version += 1
                if node.fid in moved:
                    if self.behind.get(node.fid) != moved[node.fid]:
                        self.behind[node.fid] = moved[node.fid]
                        self.version += 1
                elif node.owner == self.key.user_id and node.fid not in self.behind:
                    self._at(node.fid, parents_of(node, fids.get))
                self.saw_mode(node)
                self.saw_name(node, fids.get)
            if node.owner == self.key.user_id:
                self._own(node.fid)
                self.saw_kind(node)
                if node.fid in self.claimed:
                    self.rolled.add(node.fid)  # his key held at her epoch: her re-key before the mount serves
        self.counter = top
        refused = [(fid, path_shown(volume, held)) for fid in sorted(self.replays)
                   if (held := volume.find(fid)) is not None]
        for fid in [f for f in self.behind if not volume.holds(f)]:
            self._placed(fid)  # gone: one put back older is found behind again
        vanished: list[str] = []
        for fid in [f for f, (live, _) in self.fids.items() if live and not volume.holds(f)]:
            self._missing(volume, store, fid, rolled, vanished)
        if len(rolled) + len(refused) + len(vanished) > MANY:
            rebuilt = (f" ({len(refused)} of them, older states this device gave, rebuilt as it last saw "
                       "them)") if refused else ""
            self.alarms.warn("store-rollback", volume.layout.vault_id,
                             f"rollback: the vault's store is older than this device has seen "
                             f"({len(rolled) + len(refused)} file(s) in an older state, {len(vanished)} "
                             "file(s) gone without a deletion): a restored store or a server serving old "
                             f"revisions; the older state is shown{rebuilt}")
        else:
            for fid, name in refused:
                self.alarms.warn("rollback", fid,
                                 f"rollback: an older state of {name} ({fid}) than this device has seen "
                                 "was put back in the store (its owner's own older document, replayed); "
                                 "it is not taken in: rebuilt as this device last saw it")
            for fid, name in rolled:
                self.alarms.warn("rollback", fid,
                                 f"rollback: {name} ({fid}) is in an older state than "
                                 "this device has seen (a restored store or a server serving an old "
                                 "revision); the older state is shown")
            for fid in vanished:
                self.alarms.warn("vanished", fid, f"file {fid} vanished from the store without a deletion "
                                 "(its row was removed or marked deleted) while this device saw it live and "
                                 "not in the trash")
        for fid in vanished:
            # Said once: a file gone cannot be brought back by waiting.  Kept
            # (not live), as every file ever seen: an older store that brings
            # a deleted file back in an older state is a rollback too.
            self.record(fid, None, False)

    def _missing(self, volume: Held, store: Store, fid: str, rolled: list, vanished: list[str]) -> None:
        try:
            doc = store.get(fid)
        except CorruptData as err:  # a forged body (not JSON, nested too deep): refused, said each load
            self.alarms.warn("malformed", fid, f"file {fid} is left out: {err}")
            return
        if doc is None:
            if getattr(store, "db", None) is None:
                # A CouchDB store cannot tell a deletion from a removed row here: not reported.
                self.record(fid, None, False)
            else:
                # Removed, or a tombstone: gc purges only what was in the trash, and this device saw
                # the file live (a trash seen here, and a peer's purge taken while mounted, recorded it
                # not live: ``committed``, ``admit``).  A tombstone is one clear column of the vault
                # folder's writer's (``deleted``, no signature): said as a removed row is, never taken
                # for a purge (attack round 78c (2)).
                vanished.append(fid)
            return
        if self.owner_refused(fid, doc.get("owner")):
            # Never a share that ended, nor the file's deletion: another owner's document at its id
            # (58b (1)).  Said once: kept as not live, its records (its owner's) kept.
            self.record(fid, None, False)
            return
        if doc.get("delete") and doc.get("owner") == volume.key.user_id:
            try:
                dek, attrs = open_node_doc(doc, volume.key)
                seq = writer_seq(seq_of(attrs), doc, volume.key.user_id)
            except (VaultError, ValueError, TypeError):
                seq = None  # damaged: the load's other checks say so
            if self.older(fid, seq):
                rolled.append((fid, "a file now in the trash"))
                return
            if self.newer(fid, seq) and _not_anothers(doc, volume.key.user_id):
                self.trashed_elsewhere(fid, seq)  # her deletion made elsewhere, met first at this load
            self.record(fid, seq, False)
            return
        if self.under_older_key(fid, doc):
            # Her state (a deletion) older than the live one this device saw: said each load, never
            # noted as her trash nor as not live (attack round 25a (3), (2)).  The tree cannot show
            # the file without its live body: the alarm names it.
            rolled.append((fid, "a shared file, now in its owner's trash"))
            return
        self._trashed_by_owner(fid, doc)  # met first at this load (signatures are checked when it is read)
        self.record(fid, None, False)  # in the trash, or a share that no longer reaches this user


def _signer(doc: dict) -> str | None:
    """Who ``doc`` says signed it (None: unsigned or malformed); checked where it is read."""
    try:
        return signer_of(doc)
    except Forged:
        return None


def _not_anothers(doc: dict, user_id: str) -> bool:
    """Whether ``doc`` says ``user_id`` signed it, or is unsigned (vault format 2):
    not a writer's (his deletion is judged where it was: authorship.py ``deleted``).
    Unchecked (the load checks signatures): a forged claim only makes its file
    hers alone to write."""
    try:
        return signer_of(doc) in (None, user_id)
    except Forged:
        return False


def parents_of(node: Node, fid_of: Callable[[int], str | None]) -> list[str]:
    """The fids of the folders the node is linked in (``fid_of``: an inode's fid)."""
    return sorted({fid_of(parent) or "" for parent, _ in node.links})


def path_shown(volume: Held, node: Node) -> str:
    try:
        return "/" + os.fsdecode(volume.path_of(node)).lstrip("/") if node.links else node.fid
    except Exception:  # a name is never worth failing a report over
        return node.fid


def at_load(volume: Held, store: Store, ledger: Ledger | None = None,
            moved: dict[str, list[str]] | None = None, signers: dict[str, str] | None = None) -> Ledger:
    """The user's ledger (opened before the load, to judge every file it knows),
    checked against the tree just loaded, and saved."""
    if ledger is None:
        ledger = Ledger.open(volume.key, volume.layout.root, volume.layout.vault_id)
    ledger.check_loaded(volume, store, moved, signers)
    ledger.save()
    return ledger
