"""Recommitting a file's current content in the newest manifest shape (``fusevault upgrade``).

A manifest of an older shape (an entry per block, runs: docs/FORMAT.md) is
read as it is and rewritten in the newest one at the file's next commit.
``recommit`` makes that next commit now, through the same path as any other
(``Files.commit_version``, which seals ``Sealing.MANIFEST_KIND``): the new
version shares every block of the current one, only its manifest is new.  So
when the manifest format changes again, this follows with no change here.
"""

from __future__ import annotations

from fusevault.vault.files.open_files import Files
from fusevault.vault.model.nodes import Node


async def recommit(files: Files, node: Node) -> bool:
    """Commit ``node``'s current content again if its manifest is not in the newest
    shape (or it has changes not committed yet); True when a version was written.

    The new version keeps the file's size, times and bytes: the blocks are the
    current version's, the manifest (and any block sealed with a flag the new
    shape reads differently) is written anew.  Under the file's content lock,
    like any commit, so no write or restore runs meanwhile."""
    node.opens += 1  # kept open while it is recommitted: its Content stays until done
    try:
        async with files.content_lock(node):
            content = files.content(node)
            if not content.changed and content.in_newest_shape():
                return False
            content.changed = True
            await files.commit_version(node, content)
            return True
    finally:
        node.opens -= 1
        files.release_content(node)
