"""Giving a file a new key: its current contents sealed again as a new version.

A revoked share leaves the file a new DEK (a new epoch); old versions keep
theirs.  Another writer's versions may keep coming in while the file is
sealed again: each try seals the newest, and a version not sealed here is
never committed over.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from fusevault.errors import Conflict, CorruptData
from fusevault.vault.files.content import Content
from fusevault.vault.files.open_files import FLUSH_AT, Files, Stale
from fusevault.vault.files.ports import TreePort
from fusevault.vault.model import lineage, sealed_for, sharing
from fusevault.vault.model.her_keys import derived_dek, recipients
from fusevault.vault.model.nodes import Node

# Sealing a file again under a new key, when other writers' versions keep
# coming in meanwhile: each try seals the newest; after this many the key
# change fails (it never commits over a version it did not seal).
RESEAL_TRIES = 20
# The store's revision of the file newer than the node's (another writer's change stored, and held back
# until its version arrives): nothing was committed; the next try waits this long for it first.
BEHIND_WAIT = 0.25

# Gives a node the contents and key of its newest state (its stored document's,
# or, that one refused here, the tree's own); False when the document is gone
# (vault/tree/arrivals.py's ``reopen``, bound to the tree).
Reopen = Callable[[Node], bool]


async def rekey(files: Files, node: Node, reopen: Reopen) -> None:
    """Give the node a new DEK (a new epoch) and seal its current
    contents under it; old versions keep theirs (a revoked share).  Counted
    as owed to the peers until its recipients' key files are written: its
    node is committed first, and a sync status saying nothing pending meanwhile
    was taken at its word (a device joining then could not open the file)."""
    with sharing.owing_keys():
        await _rekey(files, node, reopen)


async def _rekey(files: Files, node: Node, reopen: Reopen) -> None:
    tree = files.tree
    tree.owned(node)
    if node.is_reg:
        await files.commit_content(node)
    async with files.content_lock(node):
        if node.content is not None and node.content.changed:
            # Written since the commit above: sealing starts from the
            # last version, so this must be one first.
            await files.commit_version(node, node.content)
        epoch = await _next_epoch(files, node)
        dek = derived_dek(tree, node, epoch)
        # Her proof of it, with it in the node: whoever holds the key after this, whatever the recipients
        # since, knows it hers there (vault/model/her_keys.py ``her_key_at``, attack round 51b (4)-(6)).
        proof = tree.key.key_proof(node.fid, epoch, dek)
        # For whom (attack round 71d (1)): her other device extends this key to nobody else.  With her
        # proof of it: a member who writes the node writes no record that counts (attack round 73a (1)).
        above, held = _above(tree, node), _held_record(tree, node)  # her proof checked once a re-key
        record = sealed_for.proved(tree.key, node.fid, dek, sealed_for.record(
            epoch, recipients(tree, node), _groups_seen(tree, node, held), above,
            _taken(tree, node, above, held)))
        if node.is_reg and node.head:
            if not await _reseal(files, node, (dek, epoch, proof, record), reopen):
                if _left(files, node):
                    return  # deleted meanwhile (on another device): no file to give a key
                # Its document is not in the store, and the tree never saw it go: the key
                # change is not done, which the caller must not take for done (round 36b (1)).
                raise CorruptData(f"{files.tree.path_of(node).decode(errors='replace')} was not given "
                                  "a new key: its document is missing from the store")
        else:
            def change() -> None:
                node.dek, node.epoch, node.key_proof, node.sealed_for = dek, epoch, proof, record

            await tree.commit_node(node, change)
            if node.content is not None:  # open, nothing stored: nothing sealed under the old key
                node.content.dek, node.content.epoch = dek, epoch
                node.content.acl = tree.acl(node) or []
        key = (node.dek, node.epoch)
        if tree.sharing is not None and (kept := tree.sharing.below.get(node.fid)) is not None \
                and kept["epoch"] < node.epoch:
            del tree.sharing.below[node.fid]  # the new key's record lists it (``_held_record``)
    if tree.sharing is not None and (grants := tree.covering(node)):
        await tree.in_thread(tree.sharing.seal_keys, tree.layout, node, grants, key)


def _groups_seen(tree: TreePort, node: Node, held: dict | None) -> dict[str, lineage.Vector]:
    """The signed version vector of each Group body whose members the new key reaches here; of a body
    here not the one her record of the current key saw nor newer (an older body served again, naming a
    member she removed: his key left out, ``Guests.left``), the one that record saw: the new record says
    him taken back as the old one did, at the next unlock and on every device (attack round 74a (1))."""
    if tree.sharing is None:
        return {}
    was = held.get("groups", {}) if held is not None else {}
    seen: dict[str, lineage.Vector] = {}
    for grant in tree.covering(node):
        body = tree.sharing.groups.get(grant.grantee) if grant.group else None
        try:
            vector = lineage.of(body) if isinstance(body, dict) else None
        except lineage.Malformed:
            vector = None
        try:
            before = lineage.parsed(was[grant.grantee]) if grant.group and grant.grantee in was else None
        except ValueError:  # never in a record ``shaped`` took: as none seen
            before = None
        if before is not None and (vector is None or lineage.compare(vector, before) not in (
                lineage.Order.SAME, lineage.Order.NEWER)):
            vector = before
        if vector is not None:
            seen[grant.grantee] = vector
    return seen


def _held_record(tree: TreePort, node: Node) -> dict | None:
    """Her record of the node's current key (``sealed_for``), if her proof of it checks; for a node that
    took a state under an older key of hers (a WRITE member's state under the key he held, taken back
    below her epoch: the re-key this is), her record of the key it held then (``Guests.below``, her proof
    checked when kept): what it listed taken stays taken in the new key's record (attack round 76a (3))."""
    kept = tree.sharing.below.get(node.fid) if tree.sharing is not None else None
    if kept is not None and kept["epoch"] > node.epoch:
        # First: her record of a later key than the one the node holds now says all her re-keys took back
        # up to it (less what she gave again).  Her record of the older key the member's state carries
        # may check too (the key was re-keyed before): it lists only what was taken before that key
        # (attack round 77b (1): the removed member sealed the next key on her other device).
        return kept
    held = node.sealed_for
    return held if sealed_for.hers(tree.key, node.fid, node.epoch, node.dek, held) else None


def _taken(tree: TreePort, node: Node, above: list[str], held: dict | None) -> list[str]:
    """The Share ids her re-keys took back from the node: this one's (``Guests.taking``: the rotation's,
    vault/services/rotation.py ``rotate``), those her record of
    its current key names (a re-key since, for another reason, keeps saying so) and a user's Share her
    records showed taken back here (``Guests.left``), on the node or a folder over it now, less any in
    force here now (shared again: sealed to, in ``to``); one of ``left`` is in force for no new key (it
    is sealed nothing, and ``to`` lacks it: attack round 74a (1)).  Only a grant listed
    counts as taken back on her other devices (``sealed_for.left_out``, attack round 73a (4))."""
    taken = list(tree.sharing.taking) if tree.sharing is not None else []
    left = tree.sharing.left if tree.sharing is not None else set()
    users = {sid for sid, who in left if sid == sharing.doc_id(sealed_for.shared_fid(sid) or "", who)}
    found = {*taken, *(held.get("taken", ()) if held is not None else ()), *users}
    over = set(above)
    grants = tree.covering(node) if tree.sharing is not None else []
    out = {sid for sid, _ in left}
    in_force = {sid for g in grants if (sid := sharing.doc_id(g.fid, g.grantee)) not in out}
    return sorted(t for t in found if sealed_for.shared_fid(t) in over and t not in in_force)


def _above(tree: TreePort, node: Node) -> list[str]:
    """The file's id and those of the folders over each of its names (as ``covering`` walks them)."""
    found, seen = [node.fid], set[int]()
    for parent, _ in node.links:
        folder = tree.get(parent)
        while folder is not None and folder.ino not in seen and len(seen) < 4096:
            seen.add(folder.ino)
            found.append(folder.fid)
            folder = tree.get(folder.links[0][0]) if folder.links else None
    return found


async def _next_epoch(files: Files, node: Node) -> int:
    """An epoch no key of the node had: above its own, above what this
    tree gave it before, above every key its recipients hold."""
    tree = files.tree
    top = max(node.epoch, tree.top_epochs.get(node.fid, 0))
    if tree.sharing is not None and (grants := tree.covering(node)):
        top = max(top, await tree.in_thread(tree.sharing.key_epoch, tree.layout, node.fid, grants))
    tree.top_epochs[node.fid] = top + 1
    return top + 1


def _left(files: Files, node: Node) -> bool:
    """Whether the tree saw the node go (a deletion taken in: it leaves once
    this user's commits of it are done, vault/services/absorbing.py)."""
    sharing = files.tree.sharing
    return not node.links or (sharing is not None and node.ino in sharing.leaving)


def _unchanged(files: Files, node: Node, rev: object) -> Callable[[], bool]:
    """Whether the node still holds the version being sealed again, asked
    right before it is committed: no other writer's version came in (one
    held back while the file is busy waits in ``awaiting``: absorbing.py
    ``_update``) and the file did not go.  Its revision may have moved
    anyway, by documents refused (arrivals.py ``keep``, a replay the ledger
    refused): those are no newer state, and this commit goes over them as
    any commit does.  Taken for changes, a server that puts such a document
    every moment would keep the file from ever getting its new key (attack
    round 36b (1))."""
    sharing = files.tree.sharing
    if sharing is None:
        return lambda: node.rev == rev
    return lambda: node.fid not in sharing.awaiting and not _left(files, node)


def _reload(files: Files, node: Node, reopen: Reopen) -> bool:
    """The node's stored version becomes its contents (open ones follow it)."""
    if not reopen(node):
        return False
    if node.content is not None:
        files.switch_content(node)
    return True


async def _reseal(files: Files, node: Node, key: tuple[bytes, int, str, dict | None], reopen: Reopen) -> bool:
    """Seal the node's newest version again under ``key`` (the new DEK, its epoch and her proof of it)
    as a new version (the content lock held).  Sealed into a Content of its own: reads
    under way keep the old one, which stays whole, until the commit.
    False when the file went meanwhile (nothing to seal)."""
    tree = files.tree
    for _ in range(RESEAL_TRIES):
        if tree.sharing is not None and node.fid in tree.sharing.awaiting:
            # Another writer's version came in while this file was busy:
            # that one is the newest, so it is the one to seal.
            tree.sharing.awaiting.discard(node.fid)
            if not _reload(files, node, reopen):
                return False
        still = _unchanged(files, node, node.rev)
        fresh = await tree.in_thread(_sealed_again, files, node, *key[:2])
        try:
            await files.commit_version(node, fresh, still, key=key)
        except Stale:
            # Another writer's version came in while this one was sealed
            # (it waits in ``awaiting``: sealed next, so it stays the
            # newest), or the file went.
            fresh.close()
            if _left(files, node) or (tree.sharing is None and not _reload(files, node, reopen)):
                return False
            continue
        except Conflict:
            # Another writer's change is stored but not taken in yet (its version document or
            # records still on their way: vault/tree/namespace.py ``wait_for_version``), so the
            # node's revision is behind the store's: nothing was committed, and a key change must
            # never go over a change it did not seal.  Tried again once it may have come; a revoke
            # during a member's writes used to fail so, in one line (exit 13), nothing done.
            fresh.close()
            await trio.sleep(BEHIND_WAIT)
            if _left(files, node):
                return False
            continue
        except BaseException:
            fresh.close()
            raise
        files.use_content(node, fresh)
        await tree.in_thread(fresh.write_sidecar)
        return True
    raise Conflict(f"{node.fid} kept changing while it was given a new key: try again")


def _sealed_again(files: Files, node: Node, dek: bytes, epoch: int) -> Content:
    """The node's current contents in a new Content under ``dek`` (a worker thread's job)."""
    layout = files.tree.layout
    # The sidecar may be of a newer key than this version's (a recipient
    # wrote under the older one during a revoke): not checked by this reader.
    reader = Content(layout, node.owner, node.fid, node.dek, node.manifest, node.head, check_sidecar=False)
    try:
        fresh = Content(layout, node.owner, node.fid, node.dek, node.manifest, node.head, check_sidecar=False)
        try:
            fresh.rekey(dek, files.tree.acl(node) or [], epoch)
            for start, end in reader.data_ranges(node.size):  # holes stay holes
                for offset in range(start, end, FLUSH_AT):
                    fresh.write(offset, reader.read(offset, min(FLUSH_AT, end - offset), node.size))
                    fresh.flush_blocks(node.size)
        except BaseException:
            fresh.close()
            raise
        return fresh
    finally:
        reader.close()
