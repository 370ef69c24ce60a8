"""Giving a file a new key: its current contents sealed again as a new version.

A revoked share leaves the file a new DEK (a new epoch); old versions keep
theirs.  Another writer's versions may keep coming in while the file is
sealed again: each try seals the newest, and a version not sealed here is
never committed over.
"""

from __future__ import annotations

from collections.abc import Callable

from fusevault.crypto import aead
from fusevault.errors import Conflict
from fusevault.vault.files.content import Content
from fusevault.vault.files.open_files import FLUSH_AT, Files, Stale
from fusevault.vault.model.nodes import Node

# Sealing a file again under a new key, when other writers' versions keep
# coming in meanwhile: each try seals the newest; after this many the key
# change fails (it never commits over a version it did not seal).
RESEAL_TRIES = 20

# Gives a node the contents and key of its stored document; False when that
# no longer opens here (vault/tree/arrivals.py's ``reopen``, bound to the tree).
Reopen = Callable[[Node], bool]


async def rekey(files: Files, node: Node, reopen: Reopen) -> None:
    """Give the node a new DEK (a new epoch) and seal its current
    contents under it; old versions keep theirs (a revoked share)."""
    tree = files.tree
    tree.owned(node)
    if node.is_reg:
        await files.commit_content(node)
    async with files.content_lock(node):
        if node.content is not None and node.content.changed:
            # Written since the commit above: sealing starts from the
            # last version, so this must be one first.
            await files.commit_version(node, node.content)
        dek, epoch = aead.new_key(), await _next_epoch(files, node)
        if node.is_reg and node.head:
            if not await _reseal(files, node, dek, epoch, reopen):
                return
        else:
            def change() -> None:
                node.dek, node.epoch = dek, epoch

            await tree.commit_node(node, change)
            if node.content is not None:  # open, nothing stored: nothing sealed under the old key
                node.content.dek, node.content.epoch = dek, epoch
                node.content.acl = tree.acl(node) or []
        key = (node.dek, node.epoch)
    if tree.sharing is not None and (grants := tree.covering(node)):
        await tree.in_thread(tree.sharing.seal_keys, tree.layout, node, grants, key)


async def _next_epoch(files: Files, node: Node) -> int:
    """An epoch no key of the node had: above its own, above what this
    tree gave it before, above every key its recipients hold."""
    tree = files.tree
    top = max(node.epoch, tree.top_epochs.get(node.fid, 0))
    if tree.sharing is not None and (grants := tree.covering(node)):
        top = max(top, await tree.in_thread(tree.sharing.key_epoch, tree.layout, node.fid, grants))
    tree.top_epochs[node.fid] = top + 1
    return top + 1


def _reload(files: Files, node: Node, reopen: Reopen) -> bool:
    """The node's stored version becomes its contents (open ones follow it)."""
    if not reopen(node):
        return False
    if node.content is not None:
        files.switch_content(node)
    return True


async def _reseal(files: Files, node: Node, dek: bytes, epoch: int, reopen: Reopen) -> bool:
    """Seal the node's newest version again under ``dek`` as a new version
    (the content lock held).  Sealed into a Content of its own: reads
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
        rev = node.rev
        fresh = await tree.in_thread(_sealed_again, files, node, dek, epoch)
        try:
            await files.commit_version(node, fresh, rev, key=(dek, epoch))
        except Stale:
            # Another writer's version came in while this one was
            # sealed: seal theirs, so it stays the newest.
            fresh.close()
            if not _reload(files, node, reopen):
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
