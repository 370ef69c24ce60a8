"""The inode table of one user's tree: nodes by inode and by file id, names, commits.

The table is private to the tree (``_nodes``, ``_by_fid``, ``_unplaced``, ``_incomplete``):
every other module asks through these methods, so that one place keeps the
two indexes, the lookup counts and the purge of unused nodes consistent.
Metadata is committed here too (``commit``): one store transaction per
change, undone in memory if it fails; or, for a request from the kernel,
held a moment (``defer``) and committed with the next commit, at fsync or
fsyncdir, or at the end of a short window (group commit).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import os
from collections.abc import AsyncIterator, Callable, Container, Iterable, Iterator, Mapping
from typing import Any

import trio

from fusevault.crypto.keys import MasterKey
from fusevault.errors import CorruptData, NotFound, StoreUnavailable, VaultError
from fusevault.store import Store, replica, short_calls
from fusevault.vault.format.layout import Layout, os_error
from fusevault.vault.model import alarms, placement
from fusevault.vault.model.ledger import Ledger, parents_of
from fusevault.vault.model.nodes import ROOT_INODE, Node, node_doc
from fusevault.vault.model.sharing import Grant, acl_lines
from fusevault.vault.model.trust import Trust
from fusevault.vault.tree.authorship import Authorship
from fusevault.vault.tree.beside import Beside
from fusevault.vault.tree.guests import Guests
from fusevault.vault.tree.tx import Tx

log = logging.getLogger(__name__)

# How long a deferred metadata change (unlink, rename, chmod, mkdir... from
# the kernel) waits for a commit to ride with before it is committed alone:
# what ``kill -9`` of the server may lose of what was acknowledged.  The
# tests that count commits widen it (FUSEVAULT_GROUP_WINDOW), so that their
# count does not depend on how busy the machine is.
GROUP_WINDOW = float(os.environ.get("FUSEVAULT_GROUP_WINDOW", "0.1"))


class _Besides(Container[str]):
    """``behind`` less one fid: the file asked about in ``Inodes.readers_under``, placed elsewhere."""

    def __init__(self, behind: Container[str], fid: str) -> None:
        self.behind, self.fid = behind, fid

    def __contains__(self, fid: object) -> bool:
        return fid != self.fid and fid in self.behind


def _places_it(ledger: Ledger, node: Node, parents: list[str]) -> bool:
    """Whether her commit of ``node`` in ``parents`` is her putting it there, which her placement stamp
    says: a move from where this device last had it (``Ledger.was_at``), or, where that is not known
    here (a device that loaded the file and never committed or took it in since), a place her stamp
    does not name (no move told by it: a stamp signed then at a re-key in place would be taken for a
    move, round 43c (5)); or her file brought back from the trash where it left (no stamp since).
    A commit that keeps the file where this device had it (an edit, a chmod, the re-key of an unshare
    or a rotation) signs none, even where a member put it (he created it there, or moved it): a stamp
    of that commit, newer than any state her other device was made over, was taken for a move made
    apart from that device's later move, which it then undid unsaid (attack round 46d (2)).  The stamp
    the state carries stays (a member's move is judged by where she last put the file, as before)."""
    was = ledger.was_at(node.fid)
    if was is None:
        return node.placed is None or node.placed.get("parents") != parents
    if sorted(was) != sorted(parents):
        return True
    return node.placed is None and not ledger.seen_live(node.fid)


def stand_on(tree: Inodes, node: Node, rev: str, signer: str | None = None) -> None:
    """``node``'s next commit goes over ``rev``, a revision whose state it did not take (refused: a
    replay the ledger refuses, arrivals.py ``keep``; its key awaited; a node rebuilt from her own
    material over a refused document): the one way ``node.rev`` moves onto such a revision.  Who
    signed the state it holds carries over to it (``signer``: when it holds another state now, as her
    own rebuilt one), so its names are never judged by the document stored at ``rev`` (phantoms.py
    ``_signer_held``): a refused document's signer, bob's replayed state, had her own name in her
    folder taken out (attack rounds 73d (7), 74b (2))."""
    if signer is None:
        held = tree.held_signers.get(node.fid)
        signer = held[1] if held is not None and held[0] == node.rev else node.owner
    tree.held_signers[node.fid] = (rev, signer)
    node.rev = rev


class Inodes:
    def __init__(self, layout: Layout, store: Store, key: MasterKey, root: Node) -> None:
        self.layout = layout
        self.store = store
        self.key = key
        self._nodes: dict[int, Node] = {ROOT_INODE: root}
        self._by_fid: dict[str, int] = {root.fid: ROOT_INODE}
        # Nodes a peer sent that this user opens but whose folder has not
        # arrived yet (vault/services/absorbing.py): placed when it comes.
        self._unplaced: set[str] = set()
        # Nodes a peer sent before the version they name (its document or
        # records): held back, the tree keeps what it had, until they come.
        self._incomplete: set[str] = set()
        self._next_ino = ROOT_INODE + 1
        # Handle numbers (files and directories) of this user's mount.
        self._next_fh = 1
        # Nodes with changes saved lazily (access times, a directory's times
        # when its entries change): with their next commit, at fsyncdir, or
        # at unmount.  A set, so fsyncdir need not look at every node.
        self.lazy: set[int] = set()
        # New files whose document waits for their first commit (group
        # commit): a file made by create(2) is saved with its first version
        # when it is closed, flushed or fsynced, so a small file written and
        # closed at once costs one store transaction, not two.  Until then it
        # was never closed: ``kill -9`` may lose it, as it may lose the
        # unwritten data of any open file.
        self.unsaved: set[int] = set()
        # Files being made from inside fusevault whose bytes are not all
        # written yet (a conflict copy: vault/services/conflicts.py), by fid:
        # no lookup or listing shows them, so the kernel never takes (and,
        # with the writeback cache, keeps) a size or contents from before.
        self.unshown: set[str] = set()
        # A shared mount's store tells the other users' trees of each write:
        # there a new file is committed at once, so they see it while open.
        self.defer_creates = not getattr(store, "watched", False)
        # Metadata changes the kernel asked for, acknowledged and applied in
        # memory but not committed yet (group commit, ``defer``): every
        # commit takes all of them along, so the store never holds a later
        # change without an earlier one; ``keep_flushed`` commits them at the
        # end of GROUP_WINDOW, fsync and fsyncdir at once.  By inode; the node
        # itself, since a removed one may leave the table before its commit.
        self.pending: dict[int, Node] = {}
        # Why the last window's commit failed, until a request reports it.
        self.pending_error: VaultError | None = None
        self._pending_due = trio.Event()
        self.meta_lock = trio.Lock()
        self.store_lock = trio.Lock()
        self.limiter = trio.CapacityLimiter(max(2, os.cpu_count() or 2))
        # Versions the garbage collector is removing: they can no longer be opened.
        self.retiring: set[str] = set()
        # Shares with and by this user (None: opened without key pairs).
        self.sharing: Guests | None = None
        # Whose keys this user trusts; signs and checks documents (None: no key pairs).
        self.trust: Trust | None = None
        # Judges others' node and version documents by their signatures (None: no key pairs).
        self.authorship: Authorship | None = None
        # This replica's name, written into each version (None: not synced).
        self.device: str | None = None
        # fid -> the newest key epoch this tree gave the node: a node that
        # took in another writer's version under an older key goes back to
        # it, and its next key must still be new (one DEK per epoch).
        self.top_epochs: dict[str, int] = {}
        # fid -> (signer, version, signature) of the node document another
        # user's seat in this process committed last (a shared mount), taken
        # in on that seat's own check of their rights when they wrote
        # (vault/services/absorbing.py ``here``).  A second look at that very
        # document (sealing the file again after a Stale, a retry) takes it as
        # then: a recipient's writes saved just after their share ended must
        # not be refused then and sealed over.  Only that document (its
        # signature), only until this tree commits the node (any change of it)
        # and only until the grants change (vault/services/absorbing.py).
        self.vouched: dict[str, tuple[str, str | None, str]] = {}
        # fid -> (the revision the node stands on, who signed the state it holds), where another than
        # its owner signed it or the node stands on a revision whose state it did not take (refused:
        # arrivals.py ``keep``): whose names these are (phantoms.py ``_signer_held``), never a refused
        # document's signer (attack round 73d (7)).  Else the stored document at the node's revision says.
        self.held_signers: dict[str, tuple[str, str]] = {}
        # The nodes a name clash shows beside another (vault/tree/beside.py): a refused holder's name
        # goes back to them (attack round 73d (4)).
        self.beside = Beside()
        # fid -> (the refused revision the node stands on, the revisions between it and the node's
        # own that this tree never took in, newest first): edits another device made that the
        # refused one would erase once her next commit goes over it.  The sync fetches them and
        # they are taken in under it (vault/tree/arrivals.py ``keep``; absorbing.py ``absorb_beneath``).
        self.beneath: dict[str, tuple[str, list[str]]] = {}
        # Of those, the ones stacked on a branch this tree never held (her other device's edit made
        # beside the one held here: ``keep``), and the newest of their revisions fetched: settled
        # against hers by the rules (vault/services/conflicts.py), never taken over it (round 78a (1)).
        self.beneath_beside: set[str] = set()
        # Of those, the ones whose history passes the node's own revision deeper than the revisions
        # fetched (``BENEATH_LIMIT``): none of those taken in is said as such (attack round 80a (1)).
        self.beneath_deeper: set[str] = set()
        self.came_beneath: dict[str, dict] = {}
        # (fid, vid) of a peer's version held back (or shown as it is) -> {(vid, idx): (owner, SHA-256
        # its manifest names or None)} of the records it inherits that gc punched out here (punched_wants.py
        # ``inherits_punched``): the sync fetches them again, checked against the hash.
        # ``records_asked``: such a version -> {peer: the (vid, idx) it was asked for in vain}
        # (punched_wants.py ``note_asked``): a version with any is taken in as it is (its read says EIO)
        # and stays wanted of the peers not asked yet.  Both dropped with the version's want: all
        # came, or it is the head of no node shown or held back (``drop_superseded``).
        self.records_wanted: dict[tuple[str, str], dict[tuple[str, int], tuple[str, bytes | None]]] = {}
        self.records_asked: dict[tuple[str, str], dict[str, set[tuple[str, int]]]] = {}
        # (fid, vid, idx) of a record several versions wanted when a peer was asked for it in vain ->
        # those versions (punched_wants.py ``_disputes_settled``): its notes go once they change.
        self.records_disputed: dict[tuple[str, str, int], frozenset[tuple[str, str]]] = {}
        # Such a version some records of which came, taken out of ``records_wanted`` to be walked again
        # (it may want more) -> its want as it was (punched_wants.py ``note_asked``), until that walk or
        # until it leaves for good: its hashes still count for the records it shares, and its disputes
        # stand (attack round 45b (1): out of the count, the others' hashes alone had bytes placed).
        self.records_rewalk: dict[tuple[str, str], dict[tuple[str, int], tuple[str, bytes | None]]] = {}
        # Such a version whose manifest root its signed document vouched for -> the want that walk gave
        # (the very dict of ``records_wanted``, or of ``records_rewalk`` meanwhile).  It no longer decides
        # what a record is checked against (punched_wants.py ``_checked_rows``: vouched or not, every
        # named hash counts, attack round 46a (1), (5)).
        self.records_vouched: dict[tuple[str, str], dict[tuple[str, int], tuple[str, bytes | None]]] = {}
        # (fid, vid, idx) of such a record -> the hash its writer's own signed, admitted version (``vid``)
        # vouches for (its manifest root -> its Merkle leaf): where known, the one hash it is checked
        # against, whichever versions want it (punched_wants.py ``_writers_sealed``, attack round 46a).
        self.records_sealed: dict[tuple[str, str, int], bytes] = {}
        # (fid, vid) of a version walked for records placed again here (store/places.py ``copies``) that
        # wanted nothing -> a digest of the copies it was walked against (punched_wants.py
        # ``_copies_seen``): not walked again until they change (attack round 50a (1)).  Bounded
        # (``SETTLED_LIMIT`` notes of a digest each, 52c (2)); superseded versions' dropped.
        self.records_settled: dict[tuple[str, str], bytes] = {}
        # fid -> (a state of the node, the other revisions it came under here): a copy of a state put
        # beside it is no concurrent edit of what was made over it (absorbing.py ``_held_under``).
        self.same_state: dict[str, tuple[tuple[str, int], set[str]]] = {}
        # fid -> the batches of arrivals a member's state of her node has been held back for, its key
        # not one this device knows as hers (absorbing.py ``_waits_for_her_re_key``): her other
        # device's re-key not heard of yet, or his claim, said once ``HER_RE_KEY_BATCHES`` came.
        self.her_re_key_waits: dict[str, int] = {}
        # fid -> (inode, the inodes it held, its owner) of a folder dropped from the table while nodes
        # it held were still in it (its removal taken here: they keep a name in it, its own removal not
        # come, or never coming): when the folder is added again (brought back: vault/tree/revival.py,
        # or a newer state of it), they are linked in it again (``rejoin``; attack round 45a (2)), only
        # in a node of that owner (round 46b (2)).
        self.left_holding: dict[str, tuple[int, list[int], str]] = {}
        # Folders whose keys rotation.py is rotating now (not started twice).
        self.rotating: set[str] = set()
        # fid -> the shares her own file or folder lost by a move or an unlink of one of its names
        # here: their recipients' keys are taken back and it gets a new key (rotation.py
        # ``keep_moves_rekeyed``), so a member of a share it left reads nothing written after.
        self.moved_out: dict[str, set[Grant]] = {}
        self.moves = trio.Event()
        # Her key files to look over for recipients no share reaches now (the same service,
        # vault/services/stale_keys.py): a device of hers sealed them before it heard of a revocation.
        self.keys_to_check = False
        # Files of key files the last look found and the table did not hold (their key document came
        # before them): a look asked again when one arrives (absorbing.py, attack round 54a (1)).
        self.keys_ahead: set[str] = set()
        # What this device has seen of each file (rollback detection).
        self.ledger: Ledger | None = None
        # Told when a node leaves the table (open-file state keyed by inode goes with it).
        self.on_purge: Callable[[Node], None] | None = None
        # The file layer's plaintext of a file whose key this user lost (Volume: the block cache).
        self.on_key_gone: Callable[[str], None] | None = None

    def note_moved(self, node: Node, before: list[Grant]) -> None:
        """``node`` had the shares ``before`` above it, and has been moved: those it lost are noted
        for a re-key (only her own node: another's owner re-keys it at her unshare)."""
        if node.owner != self.key.user_id or not before:
            return
        lost = set(before) - set(self.covering(node))
        if not lost:
            return
        # Each node under it too, noted now (the folder first: its re-key takes their keys, and theirs
        # then find none to take): one moved out of it before the service gets to the folder is in
        # the folder's re-key no more, and had lost these shares all the same (attack round 37b (1)).
        todo, seen = [node], {node.ino}
        while todo:
            each = todo.pop(0)
            self.moved_out.setdefault(each.fid, set()).update(lost)
            for ino in (each.children or {}).values():
                if ino not in seen and (child := self._nodes.get(ino)) is not None:
                    seen.add(ino)
                    todo.append(child)
        self.moves.set()

    def take_moved(self) -> dict[str, set[Grant]]:
        moved, self.moved_out, self.moves = self.moved_out, {}, trio.Event()
        return moved

    def check_keys(self) -> None:
        self.keys_to_check = True
        self.moves.set()

    def take_key_check(self) -> bool:
        asked, self.keys_to_check = self.keys_to_check, False
        return asked

    # --- asking the table

    @property
    def root(self) -> Node:
        return self._nodes[ROOT_INODE]

    def node(self, ino: int) -> Node:
        try:
            return self._nodes[ino]
        except KeyError:
            raise NotFound(f"no inode {ino}") from None

    def get(self, ino: int | None) -> Node | None:
        return self._nodes.get(ino) if ino is not None else None

    def find(self, fid: str | None) -> Node | None:
        """The node of file id ``fid`` in this tree, or None."""
        ino = self._by_fid.get(fid) if fid is not None else None
        return self._nodes.get(ino) if ino is not None else None

    def ino_of(self, fid: str | None) -> int | None:
        return self._by_fid.get(fid) if fid is not None else None

    def holds(self, fid: str | None) -> bool:
        return fid in self._by_fid

    def stand_on(self, node: Node, rev: str, signer: str | None = None) -> None:
        """The ledger's way to ``stand_on`` (vault/model/ledger.py ``Held``)."""
        stand_on(self, node, rev, signer)

    def nodes(self) -> list[Node]:
        """Every node (a snapshot: the caller may change the tree while walking it)."""
        return list(self._nodes.values())

    def __iter__(self) -> Iterator[Node]:
        return iter(list(self._nodes.values()))

    def __len__(self) -> int:
        return len(self._nodes)

    def inode_numbers(self) -> dict[str, int]:
        """fid -> inode: what a later load keeps (the kernel may still hold these numbers)."""
        return {node.fid: ino for ino, node in self._nodes.items()}

    def live(self, inos: set[int]) -> set[int]:
        """Those of ``inos`` still in the table."""
        return {ino for ino in inos if ino in self._nodes}

    def fid_of(self, ino: int) -> str:
        return self._nodes[ino].fid

    def new_fh(self) -> int:
        fh = self._next_fh
        self._next_fh += 1
        return fh

    # --- shares, asked about this tree's nodes (vault/tree/guests.py)

    def perm(self, node: Node) -> str | None:
        return self.sharing.perm(node, self._nodes) if self.sharing is not None else None

    def covering(self, node: Node) -> list[Grant]:
        return self.sharing.covering(node, self._nodes, self.behind) if self.sharing is not None else []

    def new_readers(self, node: Node, parent: Node) -> list[Grant] | None:
        """The shares a new name of ``node`` in ``parent`` adds (None: not known here)."""
        if self.sharing is None:
            return []
        return self.sharing.new_readers(node, parent, self._nodes, self.behind)

    def widening(self, node: Node, into: Node,
                 leaving: Container[tuple[int, bytes]] = ()) -> tuple[Node, list[Grant] | None] | None:
        """A name of ``node`` in the folder ``into`` (``leaving``: names of it that go, a move), as
        ``new_readers`` sees it: the first file it gives to others than its names do, and the shares it
        adds (None: not known), or None if it adds nobody.  A file gets a new name there if it keeps
        one (a link; a move keeping another link), and so does every file under the folder ``node``
        that keeps a name outside it; a file's only name moved is a move (the shares it leaves are
        taken back: ``note_moved``), and a folder has one name (round 28c)."""
        moved, todo = {node.ino}, [node]
        while todo:  # every node under it: in memory, each once
            each = todo.pop()
            for ino in (each.children or {}).values():
                if ino not in moved and (child := self._nodes.get(ino)) is not None:
                    moved.add(ino)
                    todo.append(child)
        for ino in moved:
            each = self._nodes.get(ino, node)
            if each.is_dir:
                continue
            stays = [(p, n) for p, n in each.links
                     if p not in moved and not (each is node and (p, n) in leaving)]
            if stays and (added := self.new_readers(each, into)) != []:
                return each, added
        return None

    def readers_under(self, node: Node, links: list[tuple[str, bytes]],
                      known: list[tuple[str, bytes]] | None = None) -> list[Grant] | None:
        """Who else the shares above ``links`` (the names a document of ``node`` gives it: folder
        fids) let read it, with their rights: each grant (a group's as it is) and, as a user's grant
        of its rights, each recipient a grant reaches, as a re-key seals them (``covering``,
        ``Guests.reaches``); the owner is no other reader.  Rights count: a name under a share giving
        WRITE where others give READ gives more (attack round 47d (2)).

        None: not known here, as a name is in a folder not held here, or its way up ends at one (or
        at one this user cannot open) before the top or a folder above a name of ``known``: the
        shares above it are not known, and "not known" is never "nobody" (attack round 47d (3)).  So
        too a way up that meets a folder kept ``behind`` first: ``covering`` follows no share above
        it while it sits there, but one that ends it (her newer state of it, her move of it) has
        every share above sealed the file's key (``fill_missing``): a name there is a share read by
        nobody only for now (attack round 49b (4)).

        With ``known`` (names asked about for a file placed there), the file's own ``behind`` stops
        nothing: taking them is her move of it, which ends its ``behind`` (``Ledger.committed``); the
        kept names (no ``known``) keep it, as the re-key sealed no share above a place it holds."""
        if self.sharing is None:
            return []
        behind = self.behind
        if known is not None:
            if not self._known_up(links, self._folders_up(known)):
                return None
            if node.fid in behind:
                behind = _Besides(behind, node.fid)
        placed = copy.copy(node)  # where ``links`` put it; the node itself stays as it is
        placed.links = [(self._by_fid.get(parent, -1), name) for parent, name in links]
        found: list[Grant] = []
        for grant in self.sharing.covering(placed, self._nodes, behind):
            found.append(grant)
            found += [Grant(grant.owner, grant.fid, reach.recipient, False, reach.perm)
                      for reach in self.sharing.reaches(grant)]
        return [g for g in found if g.group or g.grantee != node.owner]

    def _folders_up(self, links: list[tuple[str, bytes]]) -> set[int]:
        """The folders (inodes) held here on the way up from each of ``links`` (folder fids)."""
        walked: set[int] = set()
        for parent, _ in links:
            folder = self._nodes.get(self._by_fid.get(parent, -1))
            for _ in range(4096):
                if folder is None or folder.ino in walked:
                    break
                walked.add(folder.ino)
                folder = self._nodes.get(folder.links[0][0]) if folder.links else None
        return walked

    def _known_up(self, links: list[tuple[str, bytes]], known: set[int]) -> bool:
        """Whether the way up from each of ``links`` (folder fids) is held here to the top or to a
        folder of ``known`` (from there up, the shares are the same): never through a folder not held
        or not opened here, nor one kept ``behind`` (the shares above it are not followed now, yet
        are the file's readers once it is placed again: attack round 49b (4))."""
        assert self.sharing is not None
        for parent, _ in links:
            folder = self._nodes.get(self._by_fid.get(parent, -1))
            for _ in range(4096):
                if folder is None or folder.ino in self.sharing.phantoms:
                    return False
                if folder.ino in known or not folder.links:
                    break
                if folder.fid in self.behind:
                    return False
                folder = self._nodes.get(folder.links[0][0])
            else:
                return False
        return True

    @property
    def behind(self) -> Container[str]:
        """Files loaded in an older state than this device saw (a rollback): no
        share is followed above them, as the place that state gives them is no
        place the owner chose (vault/model/ledger.py)."""
        return self.ledger.behind if self.ledger is not None else ()

    def fid_at(self, ino: int) -> str | None:
        node = self._nodes.get(ino)
        return node.fid if node is not None else None

    def held_keys(self) -> list[tuple[Node, bytes, int]]:
        return self.sharing.held_keys(self._nodes) if self.sharing is not None else []

    def fill_missing(self, keys: list[tuple[Node, bytes, int]]) -> Any:
        return self.sharing.fill_missing(self.layout, self._nodes, keys, self.behind, self.key)

    def note_left(self, keys: list[tuple[Node, bytes, int]],
                  kept: Mapping[tuple[str, str], Mapping[str, int]] | None = None) -> set[tuple[str, str]]:
        if self.sharing is None:
            return set()
        return self.sharing.note_left(self.layout, self._nodes, keys, self.behind, self.key, kept)

    def acl(self, node: Node) -> list[str] | None:
        """Who else a file's versions are sealed for (None: shared with nobody)."""
        if self.sharing is None or not self.sharing.by_fid:
            return None
        return acl_lines(self.sharing.covering(node, self._nodes, self.behind))

    # --- adding and removing nodes

    def new_ino(self) -> int:
        ino = self._next_ino
        self._next_ino += 1
        return ino

    def start_inodes_after(self, inodes: dict[str, int]) -> None:
        """Number new nodes above those an earlier load gave out (unlock after a lock)."""
        self._next_ino = max(inodes.values(), default=ROOT_INODE) + 1

    def add(self, node: Node, inodes: dict[str, int] | None = None, *, rejoin: bool = True) -> Node:
        """Put ``node`` in the table, under its number of an earlier load if it had one.  ``rejoin``:
        what its dropped node held goes back in it at once (``rejoin``); a caller that links it after
        (an arrival, a folder brought back) says False and calls ``rejoin`` once it is linked."""
        held = self._by_fid.get(node.fid)
        if (held is not None and self.sharing is not None and held in self.sharing.phantoms
                and (phantom := self._nodes.get(held)) is not None and phantom is not node):
            # A phantom is only a placeholder: any real node of its id takes its place (a folder of
            # hers put back at the load whose id a share named: attack round 71a (5)).
            self.phantom_gives_way(phantom)
        ino = (inodes or {}).get(node.fid)
        if ino and (other := self._nodes.get(ino)) is not None and other.fid != node.fid:
            ino = None  # never two nodes under one number (71a (4)): a new one
        node.ino = ino or self.new_ino()
        self._nodes[node.ino] = node
        self._by_fid[node.fid] = node.ino
        if rejoin:
            self.rejoin(node)
        return node

    def rejoin(self, folder: Node, signer: str | None = None) -> None:
        """Link in ``folder``, just added (and linked, if its caller links it), the nodes still held
        here that its earlier node (dropped) held, under the names they had there.  Its removal taken
        here, nothing else places them: a file saved on a third device (not live here, by design) kept
        a name in the dropped inode, in no folder, unsaid, once the removal's device brought the folder
        back as a new node (attack round 45a (2)).  A node given another folder since keeps it.  The
        new inode is unknown to the kernel: no entry of it is stale.

        Only in a node of the dropped folder's owner, whose state that owner signed (``signer``, None:
        not judged here): another user's folder at its id (his document names any id he replicates)
        was given her files, under his name and in his share (attack round 46b (2)).  Never a node
        that is above ``folder`` now: linked in it, it closed a loop of folders, and every walk up
        from them (``path_of``) spun (round 46b (1)); it keeps its name in the dropped inode, said."""
        entry = self.left_holding.get(folder.fid)
        if entry is None or not folder.is_dir or folder.children is None:
            return
        old, held, owner = entry
        if folder.owner != owner or signer not in (None, owner):
            log.warning("%s: a folder of %s (signed by %s) at the id of a folder of %s dropped here: what "
                        "that one held is not put in it", folder.fid, folder.owner, signer, owner)
            return
        del self.left_holding[folder.fid]
        for ino in held:
            node = self._nodes.get(ino)
            for parent_ino, name in list(node.links) if node is not None else ():
                if parent_ino != old or name in folder.children:
                    continue  # placed elsewhere, or a name taken meanwhile
                if self.is_ancestor(node, folder):
                    self._left_out_above(node, folder)
                    continue
                node.links.remove((parent_ino, name))
                self.link_entry(folder, name, node)
                log.info("%s: back in its folder %s, brought back", node.fid, folder.fid)

    def _left_out_above(self, node: Node, folder: Node) -> None:
        """Said: ``node``, held by ``folder``'s dropped node, is above ``folder`` now (a move the
        server served after the removal): it stays out of it, as all above it (until its next state)."""
        log.warning("%s: not put back in folder %s, brought back beneath it: that would be a loop",
                    node.fid, folder.fid)
        if self.key is not None:
            alarms.for_user(self.key.user_id).warn(
                "cycle", node.fid, f"folder {node.fid} was not put back in folder {folder.fid}, brought "
                "back beneath it (a removal and a move served in an order that makes a loop): it is not "
                "shown until a newer state of it places it")

    def _note_holding(self, folder: Node) -> None:
        """Note the nodes ``folder``, being dropped, still holds (``left_holding``).  Each note
        looks at the oldest one: one whose nodes all left goes (a mount's many ``rm -r``)."""
        held = [ino for ino in (folder.children or {}).values() if ino in self._nodes]
        if held:
            self.left_holding[folder.fid] = (folder.ino, held, folder.owner)
        for fid in list(itertools.islice(self.left_holding, 2)):
            entry = self.left_holding.pop(fid)
            old, inos = entry[0], entry[1]
            if any((node := self._nodes.get(ino)) is not None and any(p == old for p, _ in node.links)
                   for ino in inos):
                self.left_holding[fid] = entry  # still holds some: looked at again later

    def purge_if_unused(self, node: Node) -> None:
        """Drop a node that has no name, no kernel reference and no open handle."""
        if node.ino != ROOT_INODE and not node.links and node.lookups <= 0 and node.opens <= 0:
            if node.content is not None and node.content.changed:
                return  # keep unsaved contents of an unlinked file until unmount
            if node.content is not None:
                node.content.close()
            self._nodes.pop(node.ino, None)
            self._by_fid.pop(node.fid, None)
            if node.children:
                self._note_holding(node)
            self.lazy.discard(node.ino)
            self.unsaved.discard(node.ino)
            self.beside.drop(node.ino)  # what it waited for beside another's (beside.py): it left
            if self.on_purge is not None:
                self.on_purge(node)

    def phantom_gives_way(self, node: Node) -> None:
        """The phantom ``node`` (guests.py ``phantom``) leaves the tree for the user's own node at its
        id (a file of hers out of her trash: attack round 70a (3)).  The names in it go with it, unsaid:
        they were shown nowhere, and each document that gave one is judged on its next arrival against
        what holds the id then (a file is no folder: arrivals.py ``into_a_file``)."""
        for name, ino in list((node.children or {}).items()):
            if (child := self._nodes.get(ino)) is not None:
                self.unlink_entry(node, name, child)
        if self.sharing is not None:
            self.sharing.phantoms.discard(node.ino)
        if self._nodes.get(node.ino) is node:
            del self._nodes[node.ino]
        if self._by_fid.get(node.fid) == node.ino:
            del self._by_fid[node.fid]

    def drop_phantom_if_empty(self, ino: int) -> None:
        """The phantom at ``ino``, if a name just left it and it holds nothing now, goes: it was kept only
        for the names in it (a share root's real parent, a guest's name in a folder not held:
        phantoms.py ``placed_as_a_guest``), and is made again if a name in it comes again.  Kept, each
        revision of a member's document naming his file in fresh folder ids added as many phantoms for
        the rest of the mount, each walked at every change of shares (attack round 74b (3))."""
        if self.sharing is None or ino not in self.sharing.phantoms:
            return
        node = self._nodes.get(ino)
        if node is not None and not node.children and node.ino != ROOT_INODE:
            self.phantom_gives_way(node)

    def take_back(self, node: Node) -> None:
        """Undo the making of a new file never committed (``unsaved``), in
        memory: its names go and, unused, the node (``Files.abandon``)."""
        if node.ino not in self.unsaved:
            return  # committed meanwhile: it stays
        for parent_ino, name in list(node.links):
            parent = self._nodes.get(parent_ino)
            if parent is not None:
                self.unlink_entry(parent, name, node)
        node.links.clear()  # also a name in a folder dropped meanwhile
        self.unsaved.discard(node.ino)
        self.purge_if_unused(node)

    def forget_key(self, node: Node) -> None:
        """Drop a node's key (a share that no longer reaches this user), and the
        plaintext of it the file layer keeps (a handle still open reads on from
        its own contents, as before)."""
        node.dek = b""
        if self.on_key_gone is not None:
            self.on_key_gone(node.fid)
        if node.opens == 0 and node.content is not None:
            node.content.close()
            node.content = None

    # --- files a peer sent before their folder (vault/services/absorbing.py)

    def wait_for_folder(self, fid: str) -> None:
        self._unplaced.add(fid)

    def placed(self, fid: str) -> None:
        self._unplaced.discard(fid)

    def unplaced(self) -> set[str]:
        return set(self._unplaced)

    # --- files a peer sent before their version (vault/services/absorbing.py)

    def wait_for_version(self, fid: str) -> None:
        self._incomplete.add(fid)

    def complete(self, fid: str) -> None:
        self._incomplete.discard(fid)

    def incomplete(self) -> set[str]:
        return set(self._incomplete)

    # --- names

    @staticmethod
    def link_entry(parent: Node, name: bytes, node: Node) -> None:
        parent.children[name] = node.ino
        parent.subdirs += int(node.is_dir)
        node.links.append((parent.ino, name))

    @staticmethod
    def unlink_entry(parent: Node, name: bytes, node: Node) -> None:
        if parent.children is not None and parent.children.get(name) == node.ino:
            del parent.children[name]
            parent.subdirs -= int(node.is_dir)
        if (parent.ino, name) in node.links:
            node.links.remove((parent.ino, name))

    def unlink_entries(self, node: Node, gone: Iterable[tuple[int, bytes]]) -> None:
        """Take the names ``gone`` (parent inode, name) of ``node`` away at once, each as ``unlink_entry``
        does (a name of a folder no longer here only leaves its links): one pass over its names, where
        ``unlink_entry`` looks through them all for each (a document taking k names away cost k^2/2
        looks on the loop: attack round 73d (5))."""
        drop = set(gone)
        if not drop:
            return
        for parent_ino, name in drop:
            parent = self._nodes.get(parent_ino)
            if parent is not None and parent.children is not None and parent.children.get(name) == node.ino:
                del parent.children[name]
                parent.subdirs -= int(node.is_dir)
        node.links[:] = [link for link in node.links if link not in drop]

    def path_of(self, node: Node) -> bytes:
        """``node``'s path by its first names.  A walk longer than the table holds nodes has met a
        folder twice: a loop of folders, which no commit makes and every arrival refuses, but which an
        order of arrivals no check foresaw made once, and the walk then never ended, its list growing,
        on the mount's loop (attack round 46b (1)): raised, whatever made it."""
        parts = []
        for _ in range(len(self._nodes) + 1):
            if node.ino == ROOT_INODE or not node.links:
                return b"/".join(reversed(parts))
            parent_ino, name = node.links[0]
            parts.append(name)
            node = self._nodes[parent_ino]
        raise CorruptData(f"a cycle of folders above {node.fid}: it has no path")

    def is_ancestor(self, node: Node, of: Node) -> bool:
        """True when ``node`` is ``of`` or one of its ancestors.  Bounded as ``path_of``: above a
        loop of folders, True (a move or a link it would judge is refused, never made)."""
        for _ in range(len(self._nodes) + 1):
            if of is node:
                return True
            if of.ino == ROOT_INODE or not of.links:
                return False
            of = self._nodes[of.links[0][0]]
        log.warning("a cycle of folders above %s: taken as above %s", of.fid, node.fid)
        return True

    # --- lookup counts (the kernel's references)

    def remember(self, node: Node) -> None:
        node.lookups += 1

    def forget(self, ino: int, count: int) -> None:
        node = self._nodes.get(ino)
        if node is not None:
            node.lookups -= count
            self.purge_if_unused(node)

    # --- committing (inline for the local store, a worker thread otherwise)

    async def store_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call the store in a worker thread (inline only for a store that says ``inline``).  Inline,
        on the loop that serves every user's files, only short work: one commit, a few documents by
        id.  A read whose length the store's contents set (every document of a kind: anyone's import
        records, Rotation requests) goes through ``read_call``; made here, it is refused
        (store/short_calls.py: a user's restart of her import service froze root's shared mount,
        attack round 73b (1))."""
        try:
            if self.store.inline:
                with short_calls.on_loop():
                    return fn(*args)
            async with self.store_lock:
                return await trio.to_thread.run_sync(fn, *args)
        except OSError as err:
            raise os_error(err, "committing metadata") from None

    async def read_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A long read of the store (and of this tree) for a request, never on the loop: the trash,
        a file's history, each of which parses and judges many documents.  A local store is read on a
        worker thread from a snapshot of its own (store/local.py ``reading``), so the FUSE requests of
        every user go on meanwhile; other stores as ``store_call`` does.  ``fn`` writes nothing to the
        store."""
        if not self.store.inline:
            return await self.store_call(fn, *args)

        def snapshot() -> Any:
            with self.store.reading():
                return fn(*args)
        try:
            return await trio.to_thread.run_sync(snapshot, limiter=self.limiter)
        except OSError as err:
            raise os_error(err, "reading metadata") from None

    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run CPU or disk work on a worker thread (bounded by the tree's limiter)."""
        try:
            return await trio.to_thread.run_sync(fn, *args, limiter=self.limiter)
        except OSError as err:
            raise os_error(err, "writing file contents") from None

    async def commit(self, tx: Tx, extra: list[dict] | None = None, places: list[tuple] = ()) -> None:
        """Commit the nodes ``tx`` changed (with ``extra`` documents and block
        ``places``) in one store transaction; on failure undo ``tx`` in memory.
        The deferred changes (``pending``) ride along; they stay pending if it fails."""
        nodes = list(tx.nodes.values())
        nodes += [node for ino, node in self.pending.items() if ino not in tx.nodes]
        parents = [parents_of(n, self.fid_at) for n in nodes]
        if self.ledger is not None:
            self.ledger.stamp(nodes)
            self._place_stamps(nodes, parents)
        docs = list(extra or [])
        docs += [node_doc(n, self.key, self.fid_of, deleted=self.is_deleted(n)) for n in nodes]
        # The files whose commit supersedes a state seen here, if alone in the store (``_put``).
        asked = [n.fid for n in nodes if self.ledger is not None and self.ledger.supersedes(n.fid)]
        over = {n.fid: n.rev for n in nodes if n.fid in self.beneath}  # ``_over_beneath``
        try:
            revs, alone = await self.store_call(self._put, docs, places, asked)
        except BaseException:
            tx.rollback(self._nodes)
            for node in tx.created:
                self._by_fid.pop(node.fid, None)
            raise
        for node, rev in zip(nodes, revs[len(docs) - len(nodes):]):
            if node.fid in self.beneath:
                self._over_beneath(node, over.get(node.fid))
            node.rev = rev
            self.lazy.discard(node.ino)
            self.unsaved.discard(node.ino)
            self.pending.pop(node.ino, None)
            # This tree's own document is the node's now: nothing another seat
            # wrote before it is vouched for any more (any commit, not only a version).
            self.vouched.pop(node.fid, None)
            if node.owner == self.key.user_id:  # this tree's user signed it
                self.held_signers.pop(node.fid, None)
            else:
                self.held_signers[node.fid] = (rev, self.key.user_id)
            if self.sharing is not None:
                # Nor is a writer's state held while the file was busy (``Guests.held``) newer than
                # it: kept, a refused revision stored over this commit had the re-key seal his older
                # contents over it (attack round 40a (2)).
                self.sharing.held.pop(node.fid, None)
        if self.ledger is not None:
            self.ledger.committed(nodes, [self.is_deleted(n) for n in nodes], parents, alone, self.fid_at)

    def _over_beneath(self, node: Node, over: str | None) -> None:
        """``node`` just committed over ``over``: if that is the refused revision whose revisions
        beneath (``beneath``) were asked for and have not come (a peer slow to answer, or never), her
        save went over them: said (``withheld``), once, and no longer waited for.  Her save is never
        held back for them, and never goes over them unsaid (attack round 78a)."""
        top, _ = self.beneath[node.fid]
        if over != top:
            return
        self.beneath.pop(node.fid, None)
        self.beneath_beside.discard(node.fid)
        self.beneath_deeper.discard(node.fid)
        alarms.for_user(self.key.user_id).warn(
            "withheld", node.fid, f"a change of file {node.fid} lies under a refused one and had not been "
            "sent here when this device saved the file over both: it is in the file's history only")

    def came_unsettled(self) -> None:
        """At her lock (or unmount), before the last commits: each edit of her other device fetched from
        under a refused revision and still waiting to be settled (``came_beneath``: its version not here
        yet) is lost to this device with the tree's memory, and the lock's commit of the file (or her next
        write) goes over it: said (``withheld``).  Forgotten unsaid, it was in no file on any replica
        (attack round 80a (2)).  Kept until the wipe: a lock that fails serves on, and settles it still."""
        for fid in sorted(self.came_beneath):
            alarms.for_user(self.key.user_id).warn(
                "withheld", fid, f"a change of file {fid} made on another device was fetched here but "
                "its version had not come when this device locked: it is not in the file, and a write "
                "to the file goes over it")

    def _put(self, docs: list[dict], places: list[tuple], asked: list[str]) -> tuple[list[str], set[str]]:
        """Commit ``docs``; and, of ``asked`` (files whose commit supersedes a state seen of another
        device or writer: ``Ledger.supersedes``), those the store holds no other live branch of now
        (looked at in the same call: no arrival comes between).  A store that keeps no branches here
        (a server's): none known alone, as an arrival judges it (absorbing.py ``_in_conflict``)."""
        revs = self.store.put_many(docs, places)
        local = replica.local_of(self.store)
        if local is None or not asked:
            return revs, set()
        return revs, set(asked) - set(replica.conflicted_of(local, asked))

    def _place_stamps(self, nodes: list[Node], places: list[list[str]]) -> None:
        """The owner's placement stamp of each of her nodes her commit puts where it
        is (``_places_it``: a move from the folders of the state it was made over
        here, ``Ledger.was_at``; where that is not known, folders other than its
        stamp names), signed with the commit's ``seq``
        (vault/model/placement.py); none for one with no name left (the trash), and a
        file kept ``behind`` keeps the one it has (where it sits is not her choice).
        A move back to the folder her stamp names (out of a share a member had moved
        it into) signed none before: the stamp both sides carried said nothing of the
        move, it was taken for a re-key in place, and a later rename in the share put
        the file back there under the new key (attack round 46d (1))."""
        identity, ledger = self.key.identity, self.ledger
        if identity is None or ledger is None:
            return
        for node, parents in zip(nodes, places):
            if node.owner != self.key.user_id:
                continue  # another's file: its stamp is carried over as it came
            if not node.links or self.is_deleted(node):
                node.placed = None
            elif ledger.behind.get(node.fid) == parents:
                continue
            elif _places_it(ledger, node, parents):
                assert node.seq is not None  # ledger.stamp gave it
                node.placed = placement.stamp(identity.sign, self.layout.vault_id, node.owner, node.fid,
                                              parents, node.seq)

    async def save(self, tx: Tx, group: bool = False) -> None:
        """Commit ``tx`` now, or with ``group`` (a request from the kernel, in a
        mount no other tree reads from) hold it in ``pending`` for group commit.
        Called under the metadata lock."""
        if group and self.defer_creates:
            self.pending.update(tx.nodes)
            self._pending_due.set()
        else:
            await self.commit(tx)

    def check_pending(self) -> None:
        """Report, once, a window's commit that failed (the next request that
        changes metadata, fsync or fsyncdir gets its error); its changes are
        still pending and go with the next commit."""
        err, self.pending_error = self.pending_error, None
        if err is not None:
            raise err

    async def flush_pending(self) -> None:
        """Commit the deferred changes now (fsync, fsyncdir, a reader of the
        store); a failure, or one a window met before, is raised."""
        self.check_pending()
        if self.pending:
            async with self.meta_lock:
                if self.pending:
                    await self.commit(Tx())

    async def commit_pending(self) -> None:
        """Commit the deferred changes now, under the metadata lock, for a
        reader of the store that must see them (sync's conflict settling).
        A failure is raised and kept for the next request, as a window's is;
        an earlier one still waiting for a request is left for it."""
        async with self.meta_lock:
            await self._commit_pending()

    async def _commit_pending(self) -> None:
        if not self.pending:
            return
        try:
            await self.commit(Tx())
        except VaultError as err:
            if self.pending_error is None:
                self.pending_error = err
            raise

    @contextlib.asynccontextmanager
    async def settled(self) -> AsyncIterator[None]:
        """The metadata lock, held with nothing pending: sync's pull stores a
        peer's documents and takes them in inside it.  A change the kernel
        asked for before is then a committed revision, which the replica's
        conflict handling sees (else the peer's state would be taken into the
        node in memory and this change committed over it: lost, no conflict),
        and one asked for after waits for the lock, as after any local change.
        A failed commit is raised (the pull takes the batch later)."""
        async with self.meta_lock:
            await self._commit_pending()
            yield

    async def keep_flushed(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Commit deferred changes GROUP_WINDOW after the first of them (a
        session service: cancelled at lock, which saves the rest)."""
        task_status.started()
        while True:
            await self._pending_due.wait()
            await trio.sleep(GROUP_WINDOW)
            self._pending_due = trio.Event()
            if not self.pending:
                continue
            try:
                async with self.meta_lock:
                    if self.pending:
                        await self.commit(Tx())
            except Exception as err:  # kept, reported to the next request: never silent
                log.error("%d metadata change(s) not saved yet: %s", len(self.pending), err)
                self.pending_error = err if isinstance(err, VaultError) else StoreUnavailable(str(err))

    async def commit_node(self, node: Node,
                          change: Callable[[], tuple[list[dict], list[tuple]] | None]) -> None:
        """Make ``change`` to ``node`` and commit it (under the metadata lock;
        undone in memory if the commit fails).  ``change`` may refuse by
        raising before it changes anything; it returns the documents and
        block places to commit with the node (vault/files/ commits versions so)."""
        async with self.meta_lock:
            tx = Tx()
            tx.touch(node)
            extra, places = change() or ([], ())
            await self.commit(tx, extra, places)

    async def save_new(self, node: Node) -> None:
        """Commit a new file's document if it still waits for its first
        commit (``unsaved``): at close, flush or fsync when no version does."""
        if node.ino not in self.unsaved:
            return
        async with self.meta_lock:
            if node.ino in self.unsaved and node.ino in self._nodes:
                tx = Tx()
                tx.touch(node)
                await self.commit(tx)

    @staticmethod
    def is_deleted(node: Node) -> bool:
        return node.ino != ROOT_INODE and not node.links

    def wipe(self) -> None:
        """Forget every key and name (the user locked; contents closed before)."""
        for node in self._nodes.values():
            node.dek = b""
            node.children = None
        self._nodes.clear()
        self._by_fid.clear()
        self.unsaved.clear()  # saved before (save_all), else the lock was refused
        self.pending.clear()  # likewise
        self.vouched.clear()
        self.held_signers.clear()
        self.beside.clear()
        self.beneath.clear()
        self.beneath_beside.clear()
        self.beneath_deeper.clear()
        self.came_beneath.clear()
        self.records_wanted.clear()
        self.records_asked.clear()
        self.records_disputed.clear()
        self.records_rewalk.clear()
        self.records_vouched.clear()
        self.records_sealed.clear()
        self.same_state.clear()
        self.her_re_key_waits.clear()
        self.left_holding.clear()
        self.ledger = None  # saved before; it holds a key of the user's
        if self.layout.places is not None and self.key is not None:
            # Their view of who may write (it holds this tree, and so their keys) judges no
            # version documents any more: in a shared mount others read on.
            self.layout.places.forget_judge(self.key.user_id)
        self.key = None  # type: ignore[assignment]
