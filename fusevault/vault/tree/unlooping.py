"""Her folders a loop's cut left in no folder, put back where the load can show them (attack round 78b).

A loop of folders (each naming the next as its folder: her two devices' moves made apart, or a refused
or replayed state of hers rebuilt where this device last saw it, under a folder her other device has
moved under it since) is reached by no walk from the root.  The load cuts one name of it
(linking.py ``break_cycles``), and the folder that lost it is in no folder: it and every folder and
file under it were hidden at every unlock, and, linked back by its own document
(``revive_for_orphans``), the loop came back in memory.  Put back here instead: where this device last
saw it if that folder is reached from the root now (a folder reached is under no loose one: linked
there it closes no loop); else, once every folder that can go back where it was has gone, in the
nearest folder reached up the chain of folders this device last saw it and its folders in; else at the
top of her vault.  Said, as the cut is.  A walk of the tree and of each chain once: linear.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from fusevault.vault.model.nodes import ROOT_INODE, Node
from fusevault.vault.tree.arrivals import clash

if TYPE_CHECKING:
    from fusevault.vault.tree.namespace import Tree

log = logging.getLogger(__name__)


def relinked(tree: Tree, cut: list[tuple[Node, Node, bytes]]) -> None:
    """The names ``cut`` took (folder, the folder it was in, its name there) given back where the
    folder is still in none and the name still free: cut again once the load is judged, the name left
    out is the one into a rebuilt node first (``break_cycles``'s ``first``), whose commit (a replay's
    rebuild, rotation.py ``_put_back_over_replays``) then never names the loop under her signature."""
    for node, parent, name in cut:
        if (node.owner == tree.key.user_id and not node.links and tree.get(node.ino) is node
                and tree.get(parent.ino) is parent and parent.children is not None
                and name not in parent.children):
            tree.link_entry(parent, name, node)
    cut.clear()


def put_back(tree: Tree, cut: Iterable[tuple[Node, Node, bytes]],
             was_at: Callable[[str], list[str] | None]) -> list[Node]:
    """Each of her folders ``cut`` (folder, the folder it was in, its name) left in no folder, put back:
    where this device last saw it (``was_at``) if reached from the root, else as the module says.
    Returned: those put back."""
    owner = tree.key.user_id
    loose: dict[int, tuple[Node, bytes]] = {}
    for node, _, name in cut:
        if (node.owner == owner and node.is_dir and node.ino != ROOT_INODE and not node.links
                and tree.get(node.ino) is node):
            loose.setdefault(node.ino, (node, name))
    if not loose:
        return []
    done: list[Node] = []
    reached: set[int] = set()
    waiting: dict[int, list[int]] = {}  # folder inode -> loose folders last seen in it
    ready: list[tuple[int, Node]] = []  # loose folder, the folder reached it goes in

    def seen_in(fid: str) -> Node | None:
        for parent_fid in was_at(fid) or ():
            parent = tree.find(parent_fid)
            if parent is not None and parent.is_dir and parent.children is not None:
                return parent
        return None

    def reach(top: Node) -> None:
        todo = [top]
        while todo:
            folder = todo.pop()
            if folder.ino in reached:
                continue
            reached.add(folder.ino)
            ready.extend((ino, folder) for ino in waiting.pop(folder.ino, ()))
            for ino in (folder.children or {}).values():
                child = tree.get(ino)
                if child is not None and child.is_dir and child.ino not in reached:
                    todo.append(child)

    def place(ino: int, parent: Node, how: str) -> None:
        node, name = loose[ino]
        if node.links:
            return
        if name in parent.children:
            clash(tree, parent, name, node, {})
        else:
            tree.link_entry(parent, name, node)
        done.append(node)
        said = (f"folder {node.fid} was in a loop of folders, reached from no folder (its name there left "
                f"out): put back {how} ({parent.fid})")
        if tree.trust is not None:
            tree.trust.alarms.warn("looped", node.fid, said)
        else:
            log.warning("%s", said)
        reach(node)

    def drain() -> None:
        while ready:
            ino, parent = ready.pop()
            place(ino, parent, "where this device last saw it")

    reach(tree.root)
    for ino, (node, _) in loose.items():
        parent = seen_in(node.fid)
        if parent is not None and parent is not node:
            waiting.setdefault(parent.ino, []).append(ino)
            if parent.ino in reached:
                ready.extend((each, parent) for each in waiting.pop(parent.ino))
    drain()
    # The rest were last seen under themselves (or under one another): the nearest folder reached up the
    # chain this device last saw them in, each folder of a chain looked at once (``nearest``).
    nearest: dict[int, Node] = {}
    for ino, (node, _) in loose.items():
        if node.links:
            continue
        way, at = {node.ino}, seen_in(node.fid)
        while at is not None and at.ino not in reached and at.ino not in nearest and at.ino not in way:
            way.add(at.ino)
            at = seen_in(at.fid)
        target = (tree.root if at is None or at.ino in way
                  else at if at.ino in reached else nearest[at.ino])
        nearest.update((each, target) for each in way)
        place(ino, target, "at the top of your vault" if target is tree.root else "in the nearest folder "
              "above where this device last saw it")
        drain()
    return done
