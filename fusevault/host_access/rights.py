"""One thread of root's process acting with one user's file-system rights, for a while.

A helper (helper.py) opens, creates and renames as the user, and hands the
mount a descriptor; the mount writes the contents through it.  Those writes
are checked against the *writer*, not the descriptor: a disk quota's hard
limit is ignored for a writer with CAP_SYS_RESOURCE, and ext4 lends its
reserved blocks to fsuid 0.  Written by root's process, a user's export
would be bounded by neither (attack round 45t (3)).  So the thread doing
such writes takes the user's fsuid, fsgid and supplementary groups, and
drops every effective capability, for the duration of the writes; then takes
root's back.

Linux keeps these per thread, and only the raw system calls touch one
thread: glibc's ``setgroups`` (and Python's ``os.setgroups``) changes every
thread of the process, so the groups go through ``syscall`` here.  The
other threads of the mount (other users' requests, the store) never see
the change; a thread started inside the block would keep it, so nothing
run there starts one.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import platform
import pwd
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NoReturn

log = logging.getLogger(__name__)

_CAP_VERSION_3 = 0x20080522  # two 32-bit words per set
_NO_ID = 0xFFFFFFFF  # setfsuid((uid_t) -1) changes nothing and answers the thread's fsuid
# setgroups(2) by number (one thread): glibc's wrapper is for the whole process.
_SETGROUPS = {"x86_64": 116, "aarch64": 159, "riscv64": 159, "loongarch64": 159}
_MOST_GROUPS = 65536  # NGROUPS_MAX


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_Caps = _CapData * 2
_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        libc = ctypes.CDLL(None, use_errno=True)
        for call in (libc.setfsuid, libc.setfsgid):
            # uid_t and gid_t are unsigned: as int, an id from 2**31 read back negative and his
            # every export was refused (attack round 50d (1)).
            call.argtypes, call.restype = [ctypes.c_uint], ctypes.c_uint
        _libc = libc
    return _libc


def user_groups(uid: int, gid: int) -> list[int]:
    """The user's supplementary groups (the user database's), ``gid`` first among them."""
    try:
        return os.getgrouplist(pwd.getpwuid(uid).pw_name, gid)
    except KeyError:
        return [gid]


@dataclass(frozen=True)
class _Thread:
    """What a thread acts with on files: fsuid, fsgid, groups and capabilities."""

    fsuid: int
    fsgid: int
    groups: tuple[int, ...]
    caps: tuple[tuple[int, int, int], ...]


def _caps() -> tuple[tuple[int, int, int], ...]:
    header, data = _CapHeader(_CAP_VERSION_3, 0), _Caps()
    if _c().capget(ctypes.byref(header), data) != 0:
        _raise("capget")
    return tuple((d.effective, d.permitted, d.inheritable) for d in data)


def _set_caps(caps: tuple[tuple[int, int, int], ...]) -> None:
    header, data = _CapHeader(_CAP_VERSION_3, 0), _Caps(*(_CapData(*each) for each in caps))
    if _c().capset(ctypes.byref(header), data) != 0:
        _raise("capset")


def _now() -> _Thread:
    # The kernel keeps the groups sorted: compared sorted.
    return _Thread(_c().setfsuid(_NO_ID), _c().setfsgid(_NO_ID), tuple(sorted(os.getgroups())), _caps())


def _set_groups(groups: tuple[int, ...]) -> None:
    number = _SETGROUPS.get(platform.machine())
    if number is None or struct.calcsize("P") != 8:
        raise OSError(errno.ENOSYS, f"no per-thread setgroups known on {platform.machine()}")
    ids = (ctypes.c_uint32 * max(1, len(groups)))(*groups)
    if _c().syscall(ctypes.c_long(number), ctypes.c_size_t(len(groups)), ids) != 0:
        _raise("setgroups")


def _become(target: _Thread) -> None:
    """Groups and fsgid first, while CAP_SETGID is there; the capabilities last on the way in
    (fsuid 0 to another drops the file capabilities by itself), first on the way back."""
    dropping = target.caps[0][0] == 0 and target.caps[1][0] == 0
    if not dropping:
        _set_caps(target.caps)
    _set_groups(target.groups)
    _c().setfsgid(target.fsgid)
    _c().setfsuid(target.fsuid)
    if dropping:
        _set_caps(target.caps)


def _raise(call: str) -> NoReturn:
    code = ctypes.get_errno()
    raise OSError(code, f"{call}: {os.strerror(code)}")


@contextlib.contextmanager
def acting_as(uid: int, gid: int, groups: list[int]) -> Iterator[None]:
    """This thread, inside the block, acts on files as ``uid``/``gid`` with ``groups`` and no
    effective capability; outside it as before.  Refused (OSError) if that cannot be done."""
    if len(groups) > _MOST_GROUPS:
        raise OSError(errno.EINVAL, "too many groups")
    before = _now()
    none = tuple((0, permitted, inheritable) for _, permitted, inheritable in before.caps)
    user = _Thread(uid, gid, tuple(sorted(groups)), none)
    try:
        _become(user)
        if _now() != user:
            raise OSError(errno.EPERM, f"this thread could not act as uid {uid}")
        yield
    finally:
        _back(before, uid)


def _back(before: _Thread, uid: int) -> None:
    """Root's rights again, or the process ends: a thread of the mount left with a user's rights
    would make the store's files, or another user's, with his."""
    with contextlib.suppress(OSError):
        _become(before)
    if _now() != before:
        log.critical("a thread could not take back its rights after acting as uid %d: stopping", uid)
        logging.shutdown()
        os._exit(70)
