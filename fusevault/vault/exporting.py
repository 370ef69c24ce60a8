"""``fusevault export``: decrypted copies of vault files in an ordinary folder.

Each file is written to a hidden temporary name, fsynced and renamed, so
the destination holds whole files only; modes and modification times are
kept.  Nothing is overwritten unless asked, and that is checked for every
file before the first one is written.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import trio

from fusevault.encoding import name_to_str
from fusevault.errors import AlreadyExists, InvalidInput
from fusevault.mounts import fusevault_mounts, within
from fusevault.vault.atomic import fsync_dir
from fusevault.vault.nodes import Node
from fusevault.vault.placing import read_file
from fusevault.vault.volume import Volume


def tree(volume: Volume, node: Node, rel: str) -> list[tuple[str, Node]]:
    """(path relative to the destination, node) for node and everything under it."""
    found = [(rel, node)]
    if node.is_dir:
        for name, ino in sorted(node.children.items()):
            found += tree(volume, volume.nodes[ino], os.path.join(rel, name_to_str(name)))
    return found


def _check_destination(dest: Path, paths: list[tuple[str, Node]], overwrite: bool) -> None:
    real = os.path.realpath(dest)
    if not os.path.isdir(real):
        raise InvalidInput(f"{dest} is not an existing folder")
    for mountpoint in fusevault_mounts():
        if within(real, mountpoint):
            raise InvalidInput(f"{dest} is inside the mounted vault at {mountpoint}: copy with cp instead")
    if overwrite:
        return
    for rel, node in paths:
        target = dest / rel
        if not node.is_dir and os.path.lexists(target):
            raise AlreadyExists(f"{target} exists (use --overwrite to replace it)")


async def export(volume: Volume, path: bytes, dest: Path, overwrite: bool = False) -> dict:
    top = volume.resolve(path)
    base = name_to_str(path.rstrip(b"/").rpartition(b"/")[2]) if path.strip(b"/") else ""
    paths = tree(volume, top, base)
    await trio.to_thread.run_sync(_check_destination, dest, paths, overwrite)
    files = size = 0
    for rel, node in paths:
        target = dest / rel if rel else dest
        if node.is_dir:
            await trio.to_thread.run_sync(lambda t=target: t.mkdir(exist_ok=True))
        elif stat.S_ISLNK(node.mode):
            await trio.to_thread.run_sync(_place_symlink, volume.readlink(node.ino), target)
            files += 1
        elif node.is_reg:
            size += await _write(volume, node, target)
            files += 1
    return {"exported": str(dest / base if base else dest), "files": files, "bytes": size}


async def _write(volume: Volume, node: Node, target: Path) -> int:
    temp = target.with_name(f".{target.name[:200]}.fvpart-export")
    out = await trio.to_thread.run_sync(lambda: open(temp, "wb"))
    try:
        with out:
            async for data in read_file(volume, node):
                await trio.to_thread.run_sync(out.write, data)
            await trio.to_thread.run_sync(_finish, out, node)
        await trio.to_thread.run_sync(os.replace, temp, target)
        await trio.to_thread.run_sync(fsync_dir, target.parent)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return node.size


def _finish(out, node: Node) -> None:
    out.flush()
    os.fchmod(out.fileno(), stat.S_IMODE(node.mode))
    os.utime(out.fileno(), ns=(node.atime, node.mtime))
    os.fsync(out.fileno())


def _place_symlink(target_bytes: bytes, target: Path) -> None:
    temp = target.with_name(f".{target.name[:200]}.fvpart-export")
    temp.unlink(missing_ok=True)
    os.symlink(target_bytes, temp)
    os.replace(temp, target)
