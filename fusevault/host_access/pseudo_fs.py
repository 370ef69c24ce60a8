"""Kernel pseudo file systems: never a source of a user's documents.

Files of procfs, sysfs, debugfs... are the kernel's answers, and some of them are computed at
``read()`` against the credentials of the *reader*, not of whoever opened them (procfs's
``/proc/<pid>/stat`` shows a process's memory layout to a reader that may ptrace it, ``%pK``
pointers are hidden from a reader without CAP_SYSLOG).  A shared mount reads a user's sources in
root's process: opened by her helper, such a file still answered root (attack round 69d (1)).  The
reads are done with her rights now (``HostAccess.thread_as_user``), and these file systems are
refused outright, by the descriptor's own file system (``fstatfs``: no name looked up again, no
race), as a folder setting and as a source.  The list is this one, in one place.
"""

from __future__ import annotations

import ctypes
import errno
import os

# statfs(2) f_type magic numbers (linux/magic.h) of the kernel's own file systems.
KERNEL_PSEUDO: dict[int, str] = {
    0x9FA0: "proc",
    0x62656572: "sysfs",
    0x64626720: "debugfs",
    0x74726163: "tracefs",
    0x73636673: "securityfs",
    0x0027E0EB: "cgroup",
    0x63677270: "cgroup2",
    0x62656570: "configfs",
    0xCAFE4A11: "bpf",
    0xDE5E81E4: "efivarfs",
    0x6165676C: "pstore",
    0x00001CD1: "devpts",
    0x19800202: "mqueue",
    0x958458F6: "hugetlbfs",
    0x42494E4D: "binfmt_misc",
    0x6E736673: "nsfs",
    0xF97CFF8C: "selinuxfs",
    0x43415D53: "smackfs",
    0x5A3C69F0: "apparmorfs",
    0x07655821: "resctrl",
    0x65735543: "fusectl",
    0x62646576: "bdevfs",
    0x534F434B: "sockfs",
    0x50495045: "pipefs",
    0x09041934: "anon_inodefs",
    0x444D4142: "dmabuf",
}

_STATFS_BYTES = 256  # struct statfs is 120 bytes on 64-bit Linux; f_type (a long) comes first
_libc: ctypes.CDLL | None = None


def fs_type(fd: int) -> int:
    """The ``f_type`` of the file system ``fd`` lies on (OSError if the kernel does not answer)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    buffer = ctypes.create_string_buffer(_STATFS_BYTES)
    if _libc.fstatfs(ctypes.c_int(fd), buffer) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"fstatfs: {os.strerror(code)}")
    return ctypes.c_ulong.from_buffer(buffer).value & 0xFFFFFFFF


def kernel_pseudo(fd: int) -> str | None:
    """The name of the kernel pseudo file system ``fd`` lies on, or None."""
    return KERNEL_PSEUDO.get(fs_type(fd))


def refuse_pseudo(fd: int, what: str) -> None:
    """PermissionError (EPERM) if ``fd`` (``what``: said in the error) lies on a kernel pseudo file system."""
    name = kernel_pseudo(fd)
    if name is not None:
        raise PermissionError(errno.EPERM, f"on the kernel's {name} file system, not a folder of documents "
                              "(never read for a user)", what)
