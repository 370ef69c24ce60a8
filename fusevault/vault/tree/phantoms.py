"""A phantom's owner: unknown until the folder's own document says it (attack round 70a (1), (3)).

A *phantom* is a folder a shared node names as its parent that this tree does not hold (a share
root's real parent, linking.py ``link_loaded``): no key, no name, never shown.  Whose folder it is
nobody here knows: the document naming it is the sharer's, and any user names any id he replicates.
So a phantom is made with no owner (``guests.phantom``): no grant counts on it (``Guests._root_perm``,
``covering`` count a grant of the node's owner only), nothing is sealed to anyone for it, and no
name in it is judged against an owner.  Made with the owner of the node naming it, that guess
stuck: her own folder, arriving after bob's file named it, stayed his on her device, listing his
file, refusing hers as her forgery, and what she saved in it was sealed to him (70a (1)).

When a verified document of that folder arrives (an arrival, or a share that gives its key), the
folder takes that document's owner (``made_real``; ``owner_changed`` has judged it against the
owner this device saw first), and every name given in it while it was a phantom is judged again
(``names_judged_again``), as the load judges them.  Her own node at the id (her restore of a
file from her trash) is never a phantom's: the phantom gives way (inodes.py ``phantom_gives_way``,
70a (3)).
"""

from __future__ import annotations

import stat
from collections.abc import Container
from typing import TYPE_CHECKING

from fusevault.encoding import name_to_str
from fusevault.errors import CorruptData
from fusevault.vault.model import names
from fusevault.vault.model.nodes import Node
from fusevault.vault.tree.arrivals import give_back, judge
from fusevault.vault.tree.guests import phantom

if TYPE_CHECKING:
    from fusevault.vault.tree.arrivals import Absorbed
    from fusevault.vault.tree.namespace import Tree


def is_phantom(tree: Tree, node: Node | None) -> bool:
    return node is not None and tree.sharing is not None and node.ino in tree.sharing.phantoms


def real(tree: Tree, fid: str) -> Node | None:
    """The node held at ``fid`` if it is no phantom: a phantom is only a placeholder, never the state
    of a node of that id (attack round 71a (1), (5))."""
    node = tree.find(fid)
    return None if node is None or is_phantom(tree, node) else node


def gives_way(tree: Tree, node: Node | None, fresh: Node) -> bool:
    """Whether the phantom ``node`` left for ``fresh``, a verified document of its id of another type
    (a file): a phantom is only a guess that the id is a folder, vouched for by nobody, so it is never
    judged a prior state (``retyped``): her own file restored on her other device was refused on this
    one as her forgery "changing the file's type", hidden and blamed on her until an unlock (attack
    round 71a (1)).  A folder's document makes the phantom real instead (``made_real``), what was
    named in it judged again.  The names in a phantom that gives way go with it, unsaid (they were
    shown nowhere); each is judged on its document's next arrival (a file is no folder: arrivals.py
    ``into_a_file``)."""
    if node is None or not is_phantom(tree, node) or stat.S_IFMT(node.mode) == stat.S_IFMT(fresh.mode):
        return False
    tree.phantom_gives_way(node)
    return True


def made_real(tree: Tree, node: Node, owner: str) -> bool:
    """``node``, if a phantom, is held from now on under ``owner``, its verified document's.
    Whether it was one (its names then want ``names_judged_again``, once its own are set)."""
    if not is_phantom(tree, node):
        return False
    assert tree.sharing is not None
    tree.sharing.phantoms.discard(node.ino)
    node.owner = owner
    return True


def placed_as_a_guest(tree: Tree, node: Node, links: list[tuple[str, bytes]], decided: bool) -> None:
    """A phantom a share made real (``_admit_new_shares``): its names in folders not held here kept
    under phantoms of their own, as a guest's are at its admission (linking.py ``link_loaded``), so
    the share shows it under the name its owner gave it, not its id.

    Its names under phantoms are those its current document gives: where ``relink`` kept its place
    (every name it was given in a folder held here refused, a move refused), its older ones stayed and
    each revision naming fresh folder ids added as many phantoms, kept for the mount, each walked at
    every change of shares (attack round 76b (4)): those, a made name among them, go.  Only there:
    where ``relink`` ``decided`` its names, every name in a folder held here (a phantom too) is one it
    placed in this pass, a name it was shown beside under (made, noted) as well; dropped here as not
    given, her seat listed the file nowhere but shared/<owner>/, its folder once shared missing it until
    her unlock (attack round 77c (3))."""
    if tree.sharing is None:
        return
    given = {(parent_fid, name) for parent_fid, name in links}
    for ino, name in list(node.links) if not decided else []:
        if (ino in tree.sharing.phantoms and (parent := tree.get(ino)) is not None
                and (parent.fid, name) not in given):
            tree.unlink_entry(parent, name, node)
            tree.drop_phantom_if_empty(ino)
    for parent_fid, name in links:
        if tree.holds(parent_fid) or not names.link_ok(tree, node.fid, name):
            continue
        parent = tree.add(phantom(0, parent_fid), {})
        tree.sharing.phantoms.add(parent.ino)
        tree.link_entry(parent, name, node)


def parents_again(tree: Tree, links: list[tuple[str, bytes]], coming: Container[str]) -> None:
    """A guest still held here (open, or its unsaved writes kept it: ``sharing.leaving``) whose share
    is given again: each folder its ``links`` name that is not held and comes with no key of this
    share (``coming``: a share root's real parent) is a phantom again, as at its admission
    (linking.py ``link_loaded``), so ``relink`` shows it there under its name.  The phantom its
    names were in went when it left (arrivals.py ``leave``): kept for a node that might come back,
    a member's revision naming his file in fresh folder ids, shared and unshared, left as many
    phantoms behind each round for the rest of the mount (attack round 78b (1))."""
    if tree.sharing is None:
        return
    for parent_fid, name in links:
        if tree.holds(parent_fid) or parent_fid in coming or names.problem(name) is not None:
            continue
        parent = tree.add(phantom(0, parent_fid), {})
        tree.sharing.phantoms.add(parent.ino)


def names_judged_again(tree: Tree, folder: Node, out: Absorbed) -> None:
    """Each name given in ``folder`` while it was a phantom (judged against no owner then), judged
    now that its owner is known: another owner's node by ``Authorship.may_name`` (never: a node is
    named only in its own owner's folders, 71a), a node of the folder's owner named there by a
    document another signed by that signer's WRITE on the folder (``writes_at``).  A name refused is taken out
    and said; the node keeps its other names (a share root stays in shared/<owner>/), and the name goes
    back to a node a clash in the phantom showed beside it (``give_back``, once all are judged: 73d (4))."""
    gate = tree.authorship
    if gate is None or folder.children is None:
        return
    freed = []
    for name, ino in list(folder.children.items()):
        child = tree.get(ino)
        if child is None:
            continue
        signer = _signer_held(tree, child)
        if child.owner == folder.owner:
            if signer == child.owner or gate.writes_at(tree, signer, folder.owner, folder):
                continue
            gate.deny({"_id": child.fid}, f"signed by {signer}, it names the file {name_to_str(name)!r} in "
                      f"folder {folder.fid} of {folder.owner}, who gave {signer} no WRITE there: that name "
                      "is left out")
        elif gate.may_name(tree, signer, child.owner, folder):
            continue
        else:
            gate.name_refused(child, signer, folder, name)
        tree.unlink_entry(folder, name, child)
        out.entries.append((folder.ino, name))
        out.inodes.append(child.ino)
        freed.append(name)
    for name in freed:
        give_back(tree, folder, name, out)


def _signer_held(tree: Tree, node: Node) -> str:
    """Who signed the state of ``node`` held here: as noted when it was taken (``tree.held_signers``),
    else its stored document's signer when that is the revision held (judged again, as on arrival),
    else its owner.  Never a refused document's, though the node stands on its revision (arrivals.py
    ``stand_on``): any user's document at her file's id, refused, had her own name judged by his
    signature, her file taken out of her folder (attack round 73d (7))."""
    held = tree.held_signers.get(node.fid)
    if held is not None and held[0] == node.rev:
        return held[1]
    try:
        doc = tree.store.get(node.fid)
    except CorruptData:
        return node.owner
    if not isinstance(doc, dict) or doc.get("_rev") != node.rev or doc.get("_deleted"):
        return node.owner
    judged = judge(tree, doc, node)
    return judged[1] if isinstance(judged, tuple) else node.owner
