"""Her own leaf beside a writer's current revision that is his edit to keep only as a copy: found
among the leaves beside it (within caps), and loaded in place of his at unlock."""

from __future__ import annotations

import functools
import hashlib
import logging
import stat
from collections.abc import Callable, Iterator

from fusevault.crypto.keys import MasterKey
from fusevault.crypto.signing import SIG, canonical, signature_of
from fusevault.errors import VaultError
from fusevault.store import Store, replica
from fusevault.store.revs import generation
from fusevault.vault.model.nodes import Node, node_from_doc, open_node_doc
from fusevault.vault.tree.arrivals import stand_on
from fusevault.vault.tree.authorship import Authorship, Foreign, said_signer
from fusevault.vault.tree.linking import break_cycles, link_loaded
from fusevault.vault.tree.namespace import Tree

log = logging.getLogger(__name__)


# ``_her_leaf``: how many of her leaves (distinct bodies signed by her, opened) beside a writer's current
# revision are tried, at most; and how many distinct bodies saying they are hers (her name as signer)
# are checked to find them, at most (a peer may store any number of branches, each a signature to check).
HER_LEAVES = 16
HER_LEAVES_CHECKED = 16 * HER_LEAVES
# And how many leaves (one per stored body) are read to find them, at most, the first by revision id:
# a store holding thousands (from before ``replica.LEAVES_PER_DOC``) is not read whole at each load
# (attack round 46e (2)); enough to reach both caps above.
HER_LEAVES_READ = HER_LEAVES_CHECKED + HER_LEAVES - 1
# ``_take_her_leaf``: what a node takes from her leaf (not its identity, names, folder entries or
# what this mount holds of it).
_LEAF_STATE = tuple(slot for slot in Node.__slots__ if slot not in (
    "ino", "fid", "owner", "links", "children", "subdirs", "lookups", "opens", "content", "lock"))


def hers_beside_copies(tree: Tree, store: Store, key: MasterKey, gate: Authorship, foreign: list[Foreign],
                       others: dict[str, dict], pending: list[tuple[Node, list[tuple[str, bytes]]]],
                       taken: list[tuple[Node, list[tuple[str, bytes]]]],
                       cut: list[tuple[Node, Node, bytes]]) -> list[tuple[Node, list[tuple[str, bytes]]]]:
    """Her files whose current revision is a writer's edit to keep only as a conflict copy beside her
    own leaf (CouchDB's rule made his current: more saves; authorship.py ``loaded_copy``): loaded as
    her leaf holds them, where she put them, under her key, and taken out of ``foreign`` (and
    ``others``): no writer's move to judge.  Loaded as his document says, her file moved out of his
    share was placed back in it under the key he holds, called his forged move (attack round 42b
    (4)), and with his version withheld it read EIO there at every unlock, hers hidden (42b (3)).
    Her next commit goes over his revision, as while mounted (arrivals.py ``keep``); the settling at
    the mount copies his edit where he wrote it (services/conflicts.py ``_beside_writers_current``).
    ``pending`` is given her names; returned: ``taken`` with her names taken in place of his."""
    for entry in list(foreign):
        node, links, signer, guest = entry
        doc = others.get(node.fid)
        if guest or doc is None or node.owner != key.user_id or tree.get(node.ino) is not node:
            continue
        hers = _her_leaf(store, key, gate, node, functools.partial(gate.loaded_copy, tree, doc, signer,
                                                                    (node, links)))
        if hers is None:
            continue
        log.info("%s: a writer's edit to copy is its current revision: her own leaf %s is loaded",
                 node.fid, hers[0].rev)
        foreign.remove(entry)
        del others[node.fid]
        lost = _take_her_leaf(tree, node, *hers)
        pending[:] = [(each, hers[1] if each is node else names_) for each, names_ in pending]
        taken = [(each, names_) for each, names_ in taken if each is not node]  # his names: no more
        if lost:
            taken.append((node, lost))
        if node.is_dir:
            break_cycles(tree, (), cut)  # her folder's own names close no loop either
    return taken


def _her_leaf(store: Store, key: MasterKey, gate: Authorship, node: Node,
              fits: Callable[[Node], bool] | None = None) -> tuple[Node, list[tuple[str, bytes]]] | None:
    """Her own live leaf of ``node``'s file beside the current revision another signed, the first of
    ``_her_leaves`` that ``fits`` (``loaded_copy``: his is a copy beside it; None: any).  Only the
    first by generation was tried: her laptop's many saves under the old key (or her older state a
    server served above) hid her moved-out leaf, beside which alone his is a copy (attack round 43c
    (4)).  Tried as each is found, inside ``_her_leaves``' bounds: judged only after ``HER_LEAVES``
    were found, 16 copies of one old state of hers (genuine, none fitting) filled them first (45c
    (1)).  None found: the load is as before.  Unsaid: the settling judges every leaf, and says
    what it refuses."""
    for hers in _her_leaves(store, key, gate, node):
        if fits is None or fits(hers[0]):
            return hers
    return None


def _her_leaves(store: Store, key: MasterKey, gate: Authorship, node: Node,
                ) -> Iterator[tuple[Node, list[tuple[str, bytes]]]]:
    """Her own live leaves of ``node``'s file beside the current revision, one per body: signed by
    her, not a deletion, of the type loaded, opened; the highest key epoch first (her move out
    re-keys; the clear epoch is the signed one, checked as each opens), then as CouchDB's rule ranks
    them.  A leaf naming another signer (a member's own commit of her file says owner her too) is
    never checked, and one body stored under many revision ids (``_rev`` is not signed) is checked
    once: 256 of either filled the check cap above hers (attack round 45c (2)).  At most
    ``HER_LEAVES`` given, among at most ``HER_LEAVES_CHECKED`` bodies checked (each a signature to
    check; any number of altered ones costs a server nothing), among at most ``HER_LEAVES_READ`` leaves
    read; a cap reached with leaves left is said: her leaf may be among them."""
    local = replica.local_of(store)
    if local is None or not replica.in_conflict(local, node.fid):
        return
    read = replica.other_leaves(local, node.fid, limit=HER_LEAVES_READ + 1, one_per_body=True)
    unread = len(read) > HER_LEAVES_READ  # one more there: leaves left unread
    leaves = [leaf for leaf in read[:HER_LEAVES_READ] if _says_hers(leaf, key.user_id)]
    leaves.sort(key=_leaf_rank, reverse=True)
    bodies: set[bytes] = set()
    checked = given = 0
    for index, leaf in enumerate(leaves):
        body = _body_of(leaf)
        if body in bodies:
            continue  # this very body under another revision id: judged already
        bodies.add(body)
        if checked == HER_LEAVES_CHECKED or given == HER_LEAVES:
            _say_leaves_left(gate, node.fid, len(leaves) - index, checked, given, unread)
            return
        checked += 1
        try:
            if gate.trust.verify(leaf, author=key.user_id) != key.user_id:
                continue
            hers, links = node_from_doc(leaf, *open_node_doc(leaf, key))
        except VaultError:  # not hers after all (Forged), or does not open
            continue
        if stat.S_IFMT(hers.mode) == stat.S_IFMT(node.mode) and links:
            given += 1
            yield hers, links
    if unread:
        _say_leaves_left(gate, node.fid, 0, checked, given, unread)


def _says_hers(leaf: dict, user_id: str) -> bool:
    """Whether a leaf says it is her own live state: owner her, not a deletion, and signed by her (or
    unsigned: hers only while she signs nothing, ``Trust.verify``).  Unchecked."""
    return (leaf.get("owner") == user_id and not leaf.get("delete")
            and said_signer(leaf) in (user_id, None))


def _leaf_rank(leaf: dict) -> tuple[int, int, str]:
    """Her leaves' order: the key epoch it names (signed: checked as it opens), then CouchDB's rule."""
    epoch = leaf.get("epoch")
    return (epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else 0,
            generation(leaf["_rev"]), str(leaf["_rev"]))


def _body_of(leaf: dict) -> bytes:
    """A digest of what a leaf's signature covers and the signature: one signed state is one body,
    with one answer, however it is stored (under many revision ids: ``_rev`` is not signed; or
    re-encoded: keys reordered, 7 as 7.0, an unsigned key in ``sig``, which ``repr`` of the parsed
    JSON told apart: attack round 46e (1)).  The signer named and whether ``sig`` is there at all
    count too (they change the check's answer); a leaf with no canonical form (it fails its check)
    is told by its whole parsed form."""
    try:
        signed = canonical(leaf)
    except VaultError:
        signed = repr(sorted(((str(k), v) for k, v in leaf.items() if k not in ("_rev", "_revisions")),
                             key=lambda item: item[0])).encode()
    sig = leaf.get(SIG)
    by = repr(sig.get("by")) if isinstance(sig, dict) else type(sig).__name__
    parts = (signed, by.encode(), signature_of(leaf).encode())
    return hashlib.sha256(b"".join(len(part).to_bytes(8, "big") + part for part in parts)).digest()


def _say_leaves_left(gate: Authorship, fid: str, left: int, checked: int, given: int, unread: bool = False,
                     ) -> None:
    """Her leaves looked for and a cap reached, leaves left unchecked (a server storing hundreds of
    branches saying they are hers): said, for her leaf may be among them (the writer's revision is
    then judged as loaded, as before)."""
    gate.trust.alarms.warn("forged", fid, f"file {fid}: more leaves beside its current revision say they "
                           f"are yours than are checked ({checked} checked, {given} of yours tried, up to "
                           f"{left} left{', and more not read' if unread else ''}): your own leaf may be "
                           "among those left")


def _take_her_leaf(tree: Tree, node: Node, hers: Node, links: list[tuple[str, bytes]],
                   ) -> list[tuple[str, bytes]]:
    """``node``, loaded from a writer's document, made her leaf ``hers`` (``hers_beside_copies``):
    his names go, her state and names come; its revision stays the current one (his), which her next
    commit goes over.  What is under a folder stays under it.  Returned: her names taken already."""
    for parent_ino, name in list(node.links):
        if (parent := tree.get(parent_ino)) is not None:
            tree.unlink_entry(parent, name, node)
        else:
            node.links.remove((parent_ino, name))
    rev = node.rev
    for slot in _LEAF_STATE:
        setattr(node, slot, getattr(hers, slot))
    node.rev = rev
    if rev is not None:  # her leaf's state over his revision: her names, judged as hers (74b (2))
        stand_on(tree, node, rev, node.owner)
    return link_loaded(tree, node, links)
