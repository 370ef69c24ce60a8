"""What others wrote, taken in by every unlocked user of a mount.

One place for a personal and a shared mount alike: a peer's documents (the
sync service calls ``arrived``), another process's (a shared mount's store
watcher) and, in a shared mount, another seat's commit (``committed`` with
the writer's agent).  Each unlocked user's tree takes them in
(vault/services/absorbing.py); what that asks for follows as background
tasks of the mount's nursery: the kernel's caches dropped, files written
under an older key sealed again, writes made before a share ended saved,
versions that came in during a commit taken in later, edits made on two
devices while apart settled, and keys sealed for new group members.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import trio

from fusevault.agent.sessions import Agent
from fusevault.errors import VaultError
from fusevault.store import Store
from fusevault.store.local import LocalStore
from fusevault.vault.model import users
from fusevault.vault.model.groups import GROUP
from fusevault.vault.model.nodes import Node
from fusevault.vault.model.sharing import ROTATION
from fusevault.vault.model.users import USER
from fusevault.vault.services import rotation
from fusevault.vault.services.absorbing import (
    Absorbed,
    absorb,
    absorb_arrivals,
    absorb_beneath,
    admit_new,
    retry_awaiting,
    save_leaving,
    settle_busy,
)
from fusevault.vault.services.conflicts import left_open, note_branches, settle, to_settle
from fusevault.vault.services.placing import contents_changed
from fusevault.vault.services.punched_wants import note_asked, note_listed, wanted_of
from fusevault.vault.volume import Volume

log = logging.getLogger(__name__)

HELD_POLL = 0.5  # seconds between looks at a file a peer changed while it was open here
NOTED_AT_ONCE = 100  # conflicts of the store whose leaves are noted between two turns of the loop


class Arrivals:
    def __init__(self, store: Store, agents: Callable[[], Iterable[Agent]],
                 noted: Callable[[list[dict]], None] | None = None) -> None:
        self.store = store
        self._agents = agents  # every user of the mount, locked or not
        self._noted = noted  # told of every document first (a shared mount's bookkeeping)
        self.nursery: trio.Nursery | None = None  # the mount's, once it runs
        self.closing = False  # unmounting: no new tasks (the nursery is closing)
        self._settling = trio.Lock()
        # Each unlocked tree's conflicts (``_hand``), gone with the tree at a lock.
        self._conflicts: weakref.WeakKeyDictionary[Volume, _Conflicts] = weakref.WeakKeyDictionary()
        self._resharing = False
        self._again = False
        self._held: set[tuple[Agent, int]] = set()  # (agent, ino): ``_forget_when_closed`` waits for it
        # Wakes the sync's pulls (sync/service.py ``want_again``): set by the mount when it syncs.
        self.wanting: Callable[[], None] = _nobody

    def unlocked(self) -> list[Agent]:
        return [agent for agent in self._agents() if agent.session is not None]

    def names(self, version: dict) -> bool | None:
        """Does a tree unlocked here show ``version`` (a version document) as a live file's
        newest version (its head)?  gc never deletes that one, so a peer's deletion of it is a
        forgery (sync/replicator.py ``_judge_held``).  None: nobody is unlocked to tell."""
        volumes = [_volume(agent) for agent in self.unlocked()]
        if not volumes:
            return None
        fid = version.get("fid")
        if not isinstance(fid, str):
            return False
        return any(_shows(volume.find(fid), version["_id"]) for volume in volumes)

    def want_again(self) -> None:
        """After a tree loaded (an unlock), took in others' documents, settled conflicts or was sent
        records: if some tree wants records gc punched or revisions under refused ones, the sync
        asks the peers now, not after its longpoll (up to 20 s of EIO; sync/replicator.py
        ``want_again``, which coalesces any number of these)."""
        trees = [_volume(agent).tree for agent in self.unlocked()]
        if any(tree.records_wanted or tree.beneath for tree in trees):
            self.wanting()

    def loaded(self, agent: Agent, changed: Absorbed) -> None:
        """``agent``'s unlock loaded her tree and took in what other seats committed meanwhile
        (sessions.py ``missed``): what that asks for is followed up as for any arrival (a node
        written under her older key, which a member she revoked holds, sealed again; the kernel's
        caches dropped), then what the tree wants of the peers is asked for at once, and the
        conflicts left in the store (come while she was locked) are settled (``_hand``)."""
        if (session := agent.session) is not None:
            self.follow_up(agent, session.volume, changed)
            self._hand(agent, session.volume, [])
        self.want_again()

    def _start(self, task: Callable[..., Awaitable[object]], *args: object) -> bool:
        if self.nursery is not None and not self.closing:
            self.nursery.start_soon(task, *args)
            return True
        return False

    def arrived(self, docs: list[dict], conflicts: list[str]) -> None:
        """What a peer sent, just stored (the sync service's callback); ``conflicts``: the ids of the
        batch in conflict after it.  Each unlocked tree settles those, with the ones a settling of
        hers left for a later arrival and, the first time, the store's (``_hand``)."""
        self.committed(None, docs)
        # Conflicts come from sync, which runs over a local store only.
        if not isinstance(self.store, LocalStore):
            return
        for agent in self.unlocked():
            volume = _volume(agent)
            if conflicts:
                # Now, before any commit of this device's (the settling waits its turn).
                note_branches(volume, self.store, conflicts)
            self._hand(agent, volume, conflicts)

    def _hand(self, agent: Agent, volume: Volume, conflicts: list[str]) -> None:
        """Have ``volume``'s settling take ``conflicts`` and, again, what it left for a later arrival.

        A pull batch hands the conflicts it brought, not the store's: every conflicted id of the store
        was handed at each batch, and one on another owner's node, never settled here, came back at
        every later one, a server's 50,000 planted ones read on the loop for each unlocked user at each
        document it sent (attack round 74c (2)).  The store's are looked at once per unlock, on a
        worker thread (``_settle_handed``); one left to its owner's devices is looked at again only
        when a batch brings a revision of it.  One settling runs per tree, taking what batches handed
        meanwhile all at once: a batch a second never piles up a settling each."""
        if not isinstance(self.store, LocalStore):
            return
        state = self._conflicts.setdefault(volume, _Conflicts())
        state.wanted.update(conflicts)
        state.wanted |= state.left
        # The settling running may leave open what this arrival completes (a version come meanwhile):
        # it looks again at what it left before it stops (attack round 76c (2)).
        state.again = state.again or state.running
        if not state.running and (state.wanted or not state.looked):
            state.running = self._start(self._settle_handed, agent, volume, state)

    async def _settle_handed(self, agent: Agent, volume: Volume, state: _Conflicts) -> None:
        """Settle what ``_hand`` gathered for ``volume`` until none is left; first the store's
        conflicts she settles (``conflicts.to_settle``, read off the loop), their leaves noted in
        slices with the loop served between."""
        store = self.store
        assert isinstance(store, LocalStore)  # ``_hand``: conflicts come from sync, over a local store
        try:
            if not state.looked:
                state.looked = True
                if volume.key is None:  # locked meanwhile: looked at by the next unlock's tree
                    return
                try:
                    stored = await volume.read_call(to_settle, store, volume.key.user_id)
                except VaultError as err:
                    log.error("the conflicts in the store could not be read: %s", err)
                    stored = []
                for start in range(0, len(stored), NOTED_AT_ONCE):
                    if volume.key is None:
                        return
                    note_branches(volume, store, stored[start:start + NOTED_AT_ONCE])
                    await trio.lowlevel.checkpoint()
                state.wanted.update(stored)
            while (session := agent.session) is not None and session.volume is volume:
                if state.again:  # something arrived while it ran: what it left, once more
                    state.again = False
                    state.wanted |= state.left
                if not state.wanted:
                    break
                ids, state.wanted = sorted(state.wanted), set()
                await self._settle_conflicts(agent, ids)
        finally:
            state.running = state.again = False

    def beneath_wanted(self) -> list[tuple[str, str]]:
        """The revisions refused ones were stacked on that a tree unlocked here never took in
        (vault/tree/arrivals.py ``keep``): the sync fetches them (sync/replicator.py ``Beneath``)."""
        return sorted({(fid, rev) for agent in self.unlocked()
                       for fid, (_, unseen) in _volume(agent).tree.beneath.items() for rev in unseen})

    def take_beneath(self, docs: list[dict]) -> None:
        """Those revisions, as the peer sent them (some may be missing), taken in under the
        refused ones by every tree that wants them."""
        fetched = {(doc["_id"], doc["_rev"]): doc for doc in docs}
        for agent in self.unlocked():
            volume = _volume(agent)
            if not volume.tree.beneath:
                continue
            try:
                changed = absorb_beneath(volume, fetched)
            except Exception:  # a bug a document reached: never the end of the sync
                log.exception("taking in the changes under refused ones failed for one user")
                volume.tree.beneath.clear()
                changed = Absorbed()
            self.follow_up(agent, volume, changed)
            # A conflict the settling left open while they were fetched is settled now (conflicts.py
            # ``_settle_one``; attack round 78a (1), (2)).
            self._hand(agent, volume, [])

    def records_wanted(self, peer: str) -> list[tuple[tuple[str, str], str, int, str, bytes | None]]:
        """Records gc punched out here that a version a tree holds back (or shows as it is) inherits
        and that ``peer`` was not asked for in vain (vault/services/punched_wants.py ``wanted_of``), each
        with the hash its manifest names: the sync with it fetches them (sync/replicator.py ``Beneath``)."""
        return sorted({row for agent in self.unlocked() for row in wanted_of(_volume(agent), peer)},
                      key=lambda row: row[:4])

    def asked_records(self, peer: str, in_vain: set[tuple[tuple[str, str], str, int]],
                      came: set[tuple[str, str, int]]) -> None:
        """``peer`` was asked for those records: ``in_vain`` the ones of asks it sent none of, ``came``
        (fid, vid, index) those placed (vault/services/punched_wants.py ``note_asked``)."""
        for agent in self.unlocked():
            note_asked(_volume(agent), peer, in_vain, came)
        if came:  # a version some came for is walked again: it may want more (its tree's next nodes)
            self.want_again()

    def listed_records(self, peer: str, listed: set[tuple[str, str, int]]) -> None:
        """``peer``'s changes feed lists records gc punched here (fid, vid, index): asked of it again
        though once asked in vain (vault/services/punched_wants.py ``note_listed``)."""
        for agent in self.unlocked():
            note_listed(_volume(agent), peer, listed)

    def committed(self, writer: Agent | None, docs: list[dict]) -> None:
        """``docs`` were written by ``writer`` (a user of this mount) or, None,
        by a peer or another process: into every unlocked tree (a tree still
        loading keeps them, a locked one is loaded from the store at unlock)."""
        if self._noted is not None:
            self._noted(docs)
        if writer is None:
            docs = self._typed(docs)
        # Group changes and pending rotations come from other processes (an
        # administrator's `group member add|remove`) or peers; a rotation a
        # user here started is finished by that user's own request.
        if writer is None and (any(d.get("type") in (GROUP, ROTATION) for d in docs)
                               or self._of_groups(docs)):
            self._start(self._reshare)
        for agent in self._agents():
            if agent.missed is not None:
                agent.missed.extend(docs)
        for agent in self.unlocked():
            volume = _volume(agent)
            try:
                if writer is None:
                    changed = absorb_arrivals(volume, docs)
                else:
                    changed = absorb(volume, docs, own=agent is writer, here=True)
            except Exception:  # a bug a document reached: never the end of the store watcher or sync
                log.exception("taking in %d document(s) failed for one user; the others take them in",
                              len(docs))
                continue
            self.follow_up(agent, volume, changed)
        if writer is None:
            for agent in self.unlocked():
                for doc in docs:
                    if doc.get("_id") == agent.user_id and doc.get("type") == USER and "_deleted" not in doc:
                        self._start(self._own_document_arrived, agent, _volume(agent), doc)
            if docs:  # held back for records gc punched, or stacked on a refused revision
                self.want_again()

    def _of_groups(self, docs: list[dict]) -> bool:
        """Whether a document of ``docs`` stands at the id of a Group some unlocked user holds in force,
        whatever its type now: a Group replaced by a body of another kind is a group removed, its
        members' files re-keyed as for a deletion (attack round 71c (1))."""
        held = [sharing.groups for agent in self.unlocked()
                if (sharing := _volume(agent).sharing) is not None]
        return any(d.get("_id") in groups for groups in held for d in docs if isinstance(d.get("_id"), str))

    def _typed(self, docs: list[dict]) -> list[dict]:
        """``docs`` with each bare deletion of a grant or user in force here given the type it had.

        A deletion from a peer is a bare tombstone (``_id``, ``_rev``, ``_deleted``): read by its
        missing type it would be no change of groups or shares, so a group removed through sync
        while she is mounted would keep admitting its former members (new files sealed to them, no
        re-key, the deletion never recorded, so a replay of the old body passes) until her next
        unlock (attack round 24a (1), (2)).  Typed, it is taken in as a shared mount's store watcher
        takes in a removal: shares and groups read again (freshness records the deletion) and
        removed members' files re-keyed.  Only ids some unlocked user holds in force are typed: a
        flood of bare deletions of other documents costs no reload and no re-key."""
        if not any(d.get("_deleted") and "type" not in d for d in docs):
            return docs
        known: dict[str, str] = {}
        for agent in self.unlocked():
            if (sharing := _volume(agent).sharing) is not None:
                known.update(sharing.kinds())
        return [{**d, "type": known[d["_id"]]} if d.get("_deleted") and "type" not in d
                and isinstance(d.get("_id"), str) and d["_id"] in known else d for d in docs]

    async def _own_document_arrived(self, agent: Agent, volume: Volume, doc: dict) -> None:
        """Her own user document from a peer or the server: judged against the newest key fields this
        device saw (users.judged: a replay said; a fork of her keys or a recovery key she revoked here
        written back at once, so her devices end with the same keys, round 19 (2), (5)).  Its settings
        are read again now, not at the next unlock: the import service starts over with what
        ``confirmed.load`` makes of them, so a forged body is said at once and a safer value (deletion
        turned off on her other device) applies at once (attack round 30c)."""
        try:
            await volume.store_call(users.judged, volume.layout.root, doc, volume.key, None, volume.store)
        except Exception:  # a bug a document reached: never the end of the sync
            log.exception("judging an arrived user document failed")
        if (session := agent.session) is not None and session.volume is volume:
            session.importer.reconfigure()

    def follow_up(self, agent: Agent, volume: Volume, changed: Absorbed) -> None:
        """What a tree took in asks for: the kernel's caches dropped, files
        sealed again, writes saved, versions taken in later (background tasks)."""
        if not changed:
            return
        self._start(agent.kernel.drop_all, changed.entries, changed.inodes)
        self._rekey_asked(volume, changed)
        if changed.save:
            self._start(self._save_leaving, agent, volume, changed.save)
        if changed.busy:
            self._start(self._settle_busy, agent, volume, changed.busy)
        if changed.resized:
            self._start(self._resized, agent, volume, changed.resized)
        for node, rev in changed.recommit:
            self._start(self._recommit, volume, node, rev)

    async def _reshare(self) -> None:
        """Group members changed: each unlocked holder of a group's file keys
        seals them for new members, and owners give removed members' files new
        keys (rotation.resume); then everyone takes in what they may open now."""
        if self._resharing:
            self._again = True
            return
        self._resharing = True
        try:
            self._again = True
            while self._again and not self.closing:
                self._again = False
                for agent in self.unlocked():
                    if (session := agent.session) is not None:  # not locked meanwhile
                        try:
                            await rotation.resume(session.volume)
                        except VaultError as err:
                            log.error("sharing after a change of groups: %s", err)
                for agent in self.unlocked():
                    if (session := agent.session) is None:
                        continue
                    changed = admit_new(session.volume)
                    if changed and not self.closing:
                        await agent.kernel.drop_all(changed.entries, changed.inodes)
        except Exception:  # a background task: a bug must not end the mount
            log.exception("sharing after a change of groups failed")
        finally:
            self._resharing = False

    def _rekey_asked(self, volume: Volume, changed: Absorbed) -> None:
        """Each node ``changed`` asks to be sealed again (a state kept under an older key of hers, which
        those her unshare removed hold), once: from what a tree took in (``follow_up``) or what a
        settling kept (``_settle_conflicts``: rule 4 keeping her other device's edit made apart under
        the key her unshare replaced; attack round 45c).  A member's state the settling sealed again
        itself is no longer asked (conflicts.py ``_sealed_again_under_hers``)."""
        for node in {id(node): node for node in changed.rekey}.values():
            self._start(self._rekey, volume, node)

    async def _rekey(self, volume: Volume, node: Node) -> None:
        """Seal again a file another user wrote under its older key (during a
        revoke); the others then open it with the key sealed to them now."""
        try:
            await volume.rekey(node)
        except VaultError as err:
            log.error("could not give %s a new key again: %s", node.fid, err)
            return
        except Exception:  # a background task: a bug must not end the mount
            log.exception("could not give %s a new key again", node.fid)
            return
        for agent in self.unlocked():
            other = _volume(agent)
            if other.sharing is not None and other.sharing.awaiting:
                changed = Absorbed()
                retry_awaiting(other, changed)
                self.follow_up(agent, other, changed)

    async def _recommit(self, volume: Volume, node: Node, rev: str) -> None:
        """A replay of the user's own node was refused (absorbing.py): her newer
        state, which the tree kept, committed as the revision after it, so that
        neither her next unlock nor a peer takes the replay for her current state.
        Nothing if a commit went on top of it meanwhile, or she locked."""
        try:
            if volume.key is not None and volume.find(node.fid) is node and node.rev == rev:
                await volume.save_node(node)
        except VaultError as err:  # the next unlock judges the replay again (vault/tree/rebuilding.py)
            log.error("could not put the newer state of %s back over a replay: %s", node.fid, err)
        except Exception:  # a background task: a bug must not end the mount
            log.exception("putting the newer state of %s back over a replay failed", node.fid)

    async def _save_leaving(self, agent: Agent, volume: Volume, nodes: list[Node]) -> None:
        """A share ended while this user had unsaved writes in its files:
        saved now (the owner's mount seals them again), then the files go."""
        try:
            changed = await save_leaving(volume, nodes)
        except Exception:  # a background task: a bug must not end the mount
            log.exception("saving writes made before a share ended failed")
            return
        if changed and not self.closing:
            await agent.kernel.drop_all(changed.entries, changed.inodes)

    async def _settle_busy(self, agent: Agent, volume: Volume, nodes: list[Node]) -> None:
        """Versions that came in while this user committed the same files:
        taken in once their own commits are done."""
        try:
            changed = await settle_busy(volume, nodes)
        except Exception:  # a background task: a bug must not end the mount
            log.exception("taking in versions committed meanwhile failed")
            return
        self.follow_up(agent, volume, changed)

    async def _resized(self, agent: Agent, volume: Volume, nodes: list[tuple[Node, int]]) -> None:
        """Files another device changed in size or times.  With the writeback
        cache the kernel keeps its own size, modification and change times of
        a file it caches, which no invalidation changes.  A file that grew is
        handed its last page at its place (a store notification), which makes
        the kernel take the new size, also for a program that holds it open.
        The kernel takes no smaller size and no times that way: every such
        file has its names dropped as well as its pages, so once no program
        holds it open the kernel forgets the inode and asks again (FUSE drops
        an unused inode at once): its next ``stat`` shows what the writer's showed."""
        for node, old_size in nodes:
            if self.closing:
                return
            try:
                if node.size > old_size:
                    await contents_changed(volume, agent.kernel, node, old_size)
            except VaultError as err:  # unreadable now: the kernel only forgets it
                log.warning("the new size of %s was not shown: %s", node.fid, err)
            except Exception:  # a background task: a bug must not end the mount
                log.exception("showing a file's new size failed")
            await agent.kernel.drop_all(list(node.links), [node.ino])
            if node.opens > 0 and (agent, node.ino) not in self._held:
                self._held.add((agent, node.ino))
                self._start(self._forget_when_closed, agent, node)

    async def _forget_when_closed(self, agent: Agent, node: Node) -> None:
        """A file a peer changed while a program here held it open: the kernel
        kept its inode, with the old times, and a ``stat`` meanwhile gave it a
        name again.  Once the last handle is closed, its names are dropped
        again, so the kernel forgets it and shows the new times."""
        try:
            while node.opens > 0 and not self.closing:
                await trio.sleep(HELD_POLL)
            if not self.closing:
                await agent.kernel.drop_all(list(node.links), [node.ino])
        finally:
            self._held.discard((agent, node.ino))

    async def _settle_conflicts(self, agent: Agent, ids: list[str]) -> None:
        """Settle edits made on two devices while apart (vault/services/conflicts.py), one batch at a time."""
        session = agent.session
        # Conflicts come from sync, which runs over a local store only.
        if session is None or not isinstance(self.store, LocalStore):
            return
        volume = session.volume
        state = self._conflicts.setdefault(volume, _Conflicts())
        async with self._settling:
            if volume.key is None:  # locked meanwhile: settled at the next unlock
                return
            user_id = volume.key.user_id
            try:
                changed = await settle(volume, self.store, ids)
            except Exception:  # a background task: a bug must not end the mount
                log.exception("settling concurrent edits failed")
                changed = None
            # Left for a later arrival (a version on its way, records gc punched, a failure): handed
            # again with each; never another owner's (read off the loop, after the settling's commits).
            try:
                left = await volume.read_call(left_open, self.store, user_id, ids)
            except VaultError as err:
                log.error("the conflicts left after a settling could not be read: %s", err)
                left = ids
            state.left.difference_update(ids)
            state.left.update(left)
            if changed is None:
                return
            if changed:
                await agent.kernel.drop_all(changed.entries, changed.inodes)
            # A kept state under an older key of hers: sealed again, or the file stays readable to
            # whoever her unshare removed, and so does what she writes next.
            self._rekey_asked(volume, changed)
            if changed.resized:  # the side kept may differ in size from what the kernel holds
                await self._resized(agent, volume, changed.resized)
            for node, rev in changed.recommit:  # a folder brought back for what the kept side put in it
                self._start(self._recommit, volume, node, rev)
        self.want_again()  # a leaf inheriting records gc punched (conflicts.py ``settle``)


@dataclass
class _Conflicts:
    """One unlocked tree's conflicts to settle (``Arrivals._hand``)."""

    looked: bool = False  # the store's conflicts looked at (once per tree: an unlock)
    wanted: set[str] = field(default_factory=set)  # handed, not settled yet
    left: set[str] = field(default_factory=set)  # left by a settling for a later arrival
    running: bool = False  # a settling of them started (``_settle_handed``)
    again: bool = False  # something arrived while it ran: what it left is settled once more


def _nobody() -> None:
    """No sync to wake (a mount without peers' sync)."""


def _shows(node: Node | None, vid: str) -> bool:
    """``vid`` is the head of a file linked in the tree (one unlinked but still open may be
    purged from the trash by a peer's gc)."""
    return node is not None and node.is_reg and node.head == vid and bool(node.links)


def _volume(agent: Agent) -> Volume:
    session = agent.session
    assert session is not None  # asked only of unlocked agents, on the trio thread
    return session.volume
