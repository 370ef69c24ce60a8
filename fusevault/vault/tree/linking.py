"""Loaded nodes linked into the tree: names found taken placed beside, names across owners judged,
folder loops cut, others' shared nodes admitted and each share's root shown in ``shared/<owner>/``
or ``groups/<group>/``; her orphans' removed folders revived."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from fusevault.encoding import str_to_name
from fusevault.vault.model import names
from fusevault.vault.model.nodes import Node
from fusevault.vault.tree import revival
from fusevault.vault.tree.arrivals import Absorbed, clash
from fusevault.vault.tree.authorship import Authorship
from fusevault.vault.tree.guests import (
    GROUPS_DIR,
    SHARED_DIR,
    phantom,
    virtual_dir,
)
from fusevault.vault.tree.namespace import Tree

log = logging.getLogger(__name__)


def revive_for_orphans(tree: Tree, pending: list[tuple[Node, list[tuple[str, bytes]]]],
                       others: set[str]) -> bool:
    """Her own live nodes loaded in no folder, whose folder her own removal took away: removed on one
    device while this one put them in it, and taken in without them (a sync that stored the removal
    while nothing was mounted, a ``kill -9`` between storing and taking in).  Their folders come back
    where this device last saw them (vault/tree/revival.py, as on arrival), committed before the mount
    serves, over the removal (``Ledger.replays``: her newer state put back over a revision, at
    ``rotation.resume``).  A document another signed is judged on arrival only.  Whether it linked a
    folder (its own document may name it under itself: the caller cuts that loop, 78b (2)); a folder a
    loop's cut put back has its name already, never linked back into the loop here."""
    out = Absorbed()
    folders = False
    for node, links in pending:
        if node.links or node.fid in others or tree.get(node.ino) is not node or not links:
            continue
        revival.revive(tree, links, tree.key.user_id, tree.key.user_id, out)
        if any(tree.holds(parent) for parent, _ in links):
            link_loaded(tree, node, links)
            folders = folders or (node.is_dir and bool(node.links))
    for folder, rev in out.recommit:
        tree.ledger.replays[folder.fid] = rev
    return folders or bool(out.recommit)


def link_loaded(tree: Tree, node: Node, links: list[tuple[str, bytes]], *,
                guest_inodes: dict[str, int] | None = None) -> list[tuple[str, bytes]]:
    """Place ``node`` under each of its links; return the links whose name was taken."""
    taken = []
    for parent_fid, name in links:
        if not names.link_ok(tree, node.fid, name):
            continue
        parent_ino = tree.ino_of(parent_fid)
        if parent_ino is None and guest_inodes is not None:
            # A guest whose parent this user cannot open: a share's root.
            parent_ino = tree.add(phantom(0, parent_fid), guest_inodes).ino
            tree.sharing.phantoms.add(parent_ino)
        parent = tree.get(parent_ino) if parent_ino else None
        if parent is None or not parent.is_dir or name in parent.children:
            log.warning("skipping a dangling link of node %s", node.fid)
            if parent is not None and parent.is_dir:
                taken.append((parent_fid, name))
            continue
        tree.link_entry(parent, name, node)
    return taken


def place_taken(tree: Tree, taken: list[tuple[Node, list[tuple[str, bytes]]]]) -> list[tuple[int, bytes]]:
    """The names each node still held found taken (``link_loaded``), once what was judged is settled:
    ``_link_beside``.  At the load, and when shares are admitted together (absorbing.py
    ``_admit_new_shares``: dropped, a file whose name another share's node took, that name refused
    since, was in no folder until an unlock: attack round 73d (2)).  The entries changed."""
    entries: list[tuple[int, bytes]] = []
    for node, lost in taken:
        if tree.get(node.ino) is node:
            entries += _link_beside(tree, node, lost)
    return entries


def _link_beside(tree: Tree, node: Node, links: list[tuple[str, bytes]]) -> list[tuple[int, bytes]]:
    """Names still held by another live node once the load is judged (two devices gave one name while
    apart, no forgery): ``link_clashing``.  A commit of the one shown beside keeps that name.  One
    no node holds any more (its holder's name was left out since) is simply taken.  The folders it
    shows in kept as a map: looked through per name, its names cost k^2/2 looks (73d (5)); where it
    shows already, a name no node holds is taken (a hard link of hers: skipped, it was lost when another
    owner's name held it first, refused since), one held gets no name beside, noted all the same
    (arrivals.py ``clash``, 74b (1))."""
    shown_in = dict(node.links)  # folder inode -> a name it shows under there
    entries: list[tuple[int, bytes]] = []
    for parent_fid, name in links:
        parent = tree.find(parent_fid)
        if (parent is None or not parent.is_dir or parent.children is None
                or parent.children.get(name) == node.ino):
            continue
        if name not in parent.children:
            tree.link_entry(parent, name, node)
            shown_in.setdefault(parent.ino, name)
            entries.append((parent.ino, name))
            continue
        entries += clash(tree, parent, name, node, shown_in)
    return entries


def names_across(tree: Tree, gate: Authorship | None, nodes: list[Node], signers: dict[str, str],
                 taken: list[tuple[Node, list[tuple[str, bytes]]]],
                 ) -> list[tuple[Node, list[tuple[str, bytes]]]]:
    """The names ``nodes`` (placed) hold in a folder of another owner than the node's, refused as an
    arrival's are (``Authorship.may_name``: a node is named only in its own owner's folders, or in a
    phantom), each taken out and said,
    naming the signer of the node's document (``signers``; its owner if absent).  An owner compare
    per name: one pass, in any order (attack rounds 70a (6), 71a (2)).  Returned: ``taken`` (names a
    node could not take, another holding them) without the refused ones, so none is shown beside its
    holder either.  At the load and when a share arrives (``admit_guests``)."""
    if gate is None or tree.sharing is None:
        return taken
    for node in nodes:
        for ino, name in list(node.links):
            parent = tree.get(ino)
            if parent is None or tree.get(node.ino) is not node or parent.owner == node.owner:
                continue
            signer = signers.get(node.fid, node.owner)
            if gate.may_name(tree, signer, node.owner, parent):
                continue
            tree.unlink_entry(parent, name, node)
            gate.name_refused(node, signer, parent, name)
    out = []
    for node, lost in taken:
        kept = []
        for parent_fid, name in lost:
            parent = tree.find(parent_fid)
            signer = signers.get(node.fid, node.owner)
            if parent is not None and not gate.may_name(tree, signer, node.owner, parent):
                gate.name_refused(node, signer, parent, name)
                continue
            kept.append((parent_fid, name))
        if kept:
            out.append((node, kept))
    return out


def break_cycles(tree: Tree, first: Iterable[Node] = (), cut: list[tuple[Node, Node, bytes]] | None = None,
                 ) -> None:
    """A folder is never inside itself, whoever's documents say so (a grantee's,
    two devices' concurrent moves): walking the names down from the root
    (then from every folder not reached), a name leading back to a folder on
    the way down is left out, and said.  Nothing walking the tree loops then.

    A loop of folders (one name each: nodes.py) is never reached from the root, only from a
    folder in it, and the name left out is the one into that folder: its own document's.  So
    the walks start from ``first``, the nodes whose document another signed (judged after
    this): a loop a writer's move closes loses his name, never one of the owner's, and his
    document, refused, gives the folder back where it was (attack round 28c (2)).

    ``cut``: each folder whose name is left out, the folder and the name, added; in no folder then
    (its loop reached from no folder), the load puts it back (unlooping.py: attack round 78b (2), (3))."""
    state: dict[int, bool] = {}  # inode -> still on the way down (False: done)
    alarms = tree.trust.alarms if tree.trust is not None else None
    for start in [tree.root, *first, *tree.nodes()]:
        if not start.is_dir or start.ino in state:
            continue
        state[start.ino] = True
        way = [(start, list((start.children or {}).items()))]
        while way:
            parent, todo = way[-1]
            if not todo:
                state[parent.ino] = False
                way.pop()
                continue
            name, ino = todo.pop()
            child = tree.get(ino)
            if child is None or not child.is_dir or state.get(ino) is False:
                continue
            if state.get(ino):
                tree.unlink_entry(parent, name, child)
                if cut is not None:
                    cut.append((child, parent, name))
                said = f"folder {child.fid} was named inside itself (in {parent.fid}): that name is left out"
                if alarms is not None:
                    alarms.warn("cycle", child.fid, said)
                else:
                    log.warning("%s", said)
                continue
            state[ino] = True
            way.append((child, list((child.children or {}).items())))


def admit_guests(tree: Tree, guests: list[tuple[Node, list[tuple[str, bytes]]]],
                 inodes: dict[str, int] | None = None, *, unlooped: bool = True,
                 signers: dict[str, str] | None = None) -> list[tuple[Node, list[tuple[str, bytes]]]]:
    """Add others' nodes shared with this user (at load, or when a share
    arrives while unlocked), and show each share's root in its folder.
    Returns the links whose name was taken, by node.  ``unlooped``: no
    folder left inside itself (the load does that once, after).  ``signers``
    (fid -> who signed its document, if not its owner; when a share arrives):
    their names in folders of other owners judged (``names_across``; the
    load judges every node's at once)."""
    inodes = {} if inodes is None else inodes
    fresh = [(node, links) for node, links in guests if not tree.holds(node.fid)]
    for node, _ in fresh:
        tree.add(node, inodes)
    taken = [(node, lost) for node, links in fresh
             if (lost := link_loaded(tree, node, links, guest_inodes=inodes))]
    if signers is not None:
        taken = names_across(tree, tree.authorship, [node for node, _ in fresh], signers, taken)
    if unlooped and fresh:
        break_cycles(tree)
    _place_shares(tree, inodes)
    return taken


def _place_shares(tree: Tree, inodes: dict[str, int]) -> None:
    """Show each share's root not shown yet in ``shared/<owner>/`` or ``groups/<group>/``."""
    shares, root = tree.sharing, tree.root

    def folder(parent: Node, name: bytes, fid: str) -> Node | None:
        if (ino := parent.children.get(name)) is not None:
            found = tree.node(ino)
            return found if found.ino in shares.virtual else None
        node = tree.add(virtual_dir(0, fid, root), inodes)
        shares.virtual.add(node.ino)
        parent.children[name] = node.ino
        parent.subdirs += 1
        node.links.append((parent.ino, name))
        return node

    # The inodes each view folder shows, gathered once a call: a look per reach, not a scan of the
    # folder per reach (quadratic in the shares one member gives her: attack round 71c (2)).
    shown: dict[int, set[int]] = {}
    for reach in shares.my_reaches():
        grant = reach.grant
        node = tree.find(grant.fid)
        if node is None:
            continue
        if grant.group:
            top, label = GROUPS_DIR, shares.groups.get(grant.grantee, {}).get("groupname", grant.grantee)
        else:
            top, label = SHARED_DIR, shares.users.get(grant.owner, {}).get("username", grant.owner)
        outer = folder(root, top, f"virtual:{top.decode()}")
        if not isinstance(label, str) or not names.valid(label):
            names.refuse(tree, f"label:{grant.owner}:{grant.grantee}", "a user or group name that is not "
                         "a file name: its shares are shown under its id")
            label = grant.grantee if grant.group else grant.owner
        inner = outer and folder(outer, str_to_name(label), f"virtual:{top.decode()}:{label}")
        if inner is None:
            # Her own folder (or one a drop or an import made before 52t) holds the name: her
            # shares are not shown, and she is told so in ``fusevault status``, not only the log;
            # what is under that folder is hers, not the share it looks like (attack round 52t (2)).
            names.refuse(tree, f"reserved:{top.decode()}",
                         f"your own {top.decode()!r} at the root of your drive hides the files others "
                         f"share with you there: what is in it is not theirs; rename it to see the shares")
            continue
        ino = node.ino
        if (there := shown.get(inner.ino)) is None:
            there = shown[inner.ino] = set(inner.children.values())
        if ino in there:
            continue
        name = node.links[0][1] if node.links else grant.fid.encode()
        if name in inner.children:
            # Numbered until free: ``groups/<group>/`` gathers every member's shares, and a made name
            # another share holds was written over, hers shown nowhere (attack round 70c (3)).
            name = names.made(name, grant.fid, inner.children)
        inner.children[name] = ino
        there.add(ino)  # a second reach of the file (another share on it) shows it once
        inner.subdirs += int(node.is_dir)
