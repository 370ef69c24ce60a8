"""The operations on host paths, shared by ``Direct`` (in-process) and the helper (as the user)."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from fusevault.host_access import listing

SAFE_MODE_BITS = 0o777  # never setuid, setgid or sticky on anything written for a user


def do(op: str, args: list, dir_fd: int | None = None) -> tuple[Any, int | None]:
    """Run one operation; (a JSON-ready result, a descriptor to hand over or None)."""
    if op == "open":
        path, flags, mode = args
        return None, os.open(path, int(flags) | os.O_CLOEXEC, int(mode) & SAFE_MODE_BITS, dir_fd=dir_fd)
    if op == "mkdir":
        os.mkdir(args[0], int(args[1]) & SAFE_MODE_BITS, dir_fd=dir_fd)
    elif op == "rename":
        _rename(args[0], args[1], dir_fd, bool(args[2]))
    elif op == "unlink":
        os.unlink(args[0], dir_fd=dir_fd)
    elif op == "symlink":
        os.symlink(args[0], args[1], dir_fd=dir_fd)
    elif op == "utime":
        os.utime(args[0], ns=(int(args[1]), int(args[2])), follow_symlinks=False)
    elif op == "chmod":
        os.chmod(args[0], int(args[1]) & SAFE_MODE_BITS, follow_symlinks=True)
    elif op == "lstat":
        return _fields(os.stat(args[0], dir_fd=dir_fd, follow_symlinks=False)), None
    elif op == "scan_page":
        if dir_fd is None:
            raise OSError(errno.EBADF, "a page of which folder?")
        return list(listing.page(dir_fd, int(args[0]), _fields)), None
    elif op == "listdir":
        return os.listdir(args[0]), None
    elif op == "access":
        return os.access(args[0], int(args[1])), None
    elif op == "realpath":
        return os.path.realpath(args[0]), None
    else:
        raise OSError(errno.ENOSYS, f"unknown operation {op}")
    return None, None


RENAME_NOREPLACE = 1
AT_FDCWD = -100
_libc: Any = None


def _rename(src: str, dst: str, dir_fd: int | None, noreplace: bool) -> None:
    if not noreplace:
        os.rename(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return
    try:
        _renameat2(src, dst, dir_fd)
        return
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    # The file system has no RENAME_NOREPLACE: a hard link refuses an existing name too.
    try:
        os.link(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        # No hard links either (FAT): look, then rename.  Racy, but it is
        # the user's own rename, so it can only replace what they may.
        try:
            os.stat(dst, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            os.rename(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            return
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst) from None
    os.unlink(src, dir_fd=dir_fd)


def _renameat2(src: str, dst: str, dir_fd: int | None) -> None:
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    call = getattr(_libc, "renameat2", None)
    if call is None:
        raise OSError(errno.ENOSYS, "renameat2 is not in this C library")
    fd = AT_FDCWD if dir_fd is None else dir_fd
    if call(fd, os.fsencode(src), fd, os.fsencode(dst), RENAME_NOREPLACE) != 0:
        import ctypes

        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), dst)


def _fields(found: os.stat_result) -> list:
    return [*tuple(found)[:10], found.st_atime_ns, found.st_mtime_ns, found.st_ctime_ns]


def _stat_result(fields: list) -> os.stat_result:
    *ten, atime_ns, mtime_ns, ctime_ns = fields
    return os.stat_result(ten, {"st_atime_ns": atime_ns, "st_mtime_ns": mtime_ns, "st_ctime_ns": ctime_ns,
                                "st_mtime": mtime_ns / 1e9, "st_atime": atime_ns / 1e9,
                                "st_ctime": ctime_ns / 1e9})


class Calls:
    """The typed methods of HostAccess, on top of one ``call(op, *args, fd=dir_fd)``."""

    uid: int
    gid: int
    call: Callable[..., tuple[Any, int | None]]

    def open(self, path: str, flags: int, mode: int = 0o600, *, dir_fd: int | None = None) -> int:
        _, fd = self.call("open", os.fsdecode(path), flags, mode, fd=dir_fd)
        assert fd is not None
        return fd

    def mkdir(self, path: str, mode: int = 0o700, *, dir_fd: int | None = None) -> None:
        self.call("mkdir", os.fsdecode(path), mode, fd=dir_fd)

    def rename(self, src: str, dst: str, *, dir_fd: int | None = None, noreplace: bool = False) -> None:
        self.call("rename", os.fsdecode(src), os.fsdecode(dst), noreplace, fd=dir_fd)

    def unlink(self, path: str, *, dir_fd: int | None = None) -> None:
        self.call("unlink", os.fsdecode(path), fd=dir_fd)

    def symlink(self, target: str, path: str, *, dir_fd: int | None = None) -> None:
        self.call("symlink", os.fsdecode(target), os.fsdecode(path), fd=dir_fd)

    def utime(self, path: str, ns: tuple[int, int]) -> None:
        self.call("utime", os.fsdecode(path), ns[0], ns[1])

    def chmod(self, path: str, mode: int) -> None:
        self.call("chmod", os.fsdecode(path), mode)

    def lstat(self, path: str, *, dir_fd: int | None = None) -> os.stat_result:
        fields, _ = self.call("lstat", os.fsdecode(path), fd=dir_fd)
        return _stat_result(fields)

    def listdir(self, path: str) -> list[str]:
        return self.call("listdir", os.fsdecode(path))[0]

    def scan(self, path: str, *, dir_fd: int | None = None) -> list[tuple[str, os.stat_result]]:
        flags = os.O_RDONLY | os.O_DIRECTORY | (os.O_NOFOLLOW if dir_fd is not None else 0)
        folder = self.open(path, flags, dir_fd=dir_fd)
        try:
            found: list[tuple[str, os.stat_result]] = []
            position: int | None = 0
            while position is not None:
                entries, position = self.scan_page(folder, position)
                found += entries
            return found
        finally:
            os.close(folder)

    def scan_page(self, dir_fd: int, position: int) -> tuple[list[tuple[str, os.stat_result]], int | None]:
        answer, _ = self.call("scan_page", position, fd=dir_fd)
        try:
            entries, after = answer
            found = [(str(name), _stat_result(fields)) for name, fields in entries]
        except (TypeError, ValueError):
            raise OSError(errno.EIO, "a page of a folder not understood") from None
        if isinstance(after, int) and not isinstance(after, bool) and not -2**63 <= after < 2**63:
            raise OSError(errno.EIO, "a position past any folder's")  # a loff_t: lseek could not take it
        if not isinstance(after, int) or isinstance(after, bool) or not found:
            after = None  # the end (an empty page is one: each page moves on, whatever the helper says)
        return found, after

    def access(self, path: str, mode: int) -> bool:
        return bool(self.call("access", os.fsdecode(path), mode)[0])

    def realpath(self, path: str) -> str:
        return self.call("realpath", os.fsdecode(path))[0]


class Direct(Calls):
    """This process's own rights: a personal mount, or a command run by the user."""

    on_behalf = False

    def __init__(self) -> None:
        self.uid = os.geteuid()
        self.gid = os.getegid()

    def call(self, op: str, *args: Any, fd: int | None = None) -> tuple[Any, int | None]:
        return do(op, list(args), fd)

    def thread_as_user(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()  # this process is the user already (or root for root)

    def close(self) -> None:
        pass
