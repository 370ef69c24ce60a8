"""fallocate(2) on the mount, which pyfuse3 (3.5) does not pass on.

pyfuse3 leaves the ``fallocate`` slot of libfuse's ``fuse_lowlevel_ops``
empty, so libfuse answers ENOSYS and the kernel turns every fallocate into
EOPNOTSUPP: the ``fallocate`` program, databases and downloaders that
reserve space fail.  Once ``pyfuse3.init()`` has made the session, this puts
a handler into the session's copy of the operations table (libfuse reads it
for each request): a ctypes callback that runs ``operations.fallocate`` as a
task of pyfuse3's own nursery and answers with ``fuse_reply_err``.

Finding that copy needs two of pyfuse3's static variables (the session
pointer and its own operations table), read from the extension's ELF symbol
table; the copy is where the session holds the same pointers as pyfuse3's
table.  Every step is checked, and when one fails (a stripped build, another
layout) nothing is written and fallocate stays EOPNOTSUPP, as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import struct
from typing import Any

import pyfuse3
import trio

log = logging.getLogger(__name__)

# struct fuse_lowlevel_ops (fuse_lowlevel.h, libfuse 3): pointers in this
# order; only ever extended at the end.
SLOT_FORGET_MULTI, SLOT_FLOCK, SLOT_FALLOCATE, SLOT_READDIRPLUS = 38, 39, 40, 41
SLOTS = SLOT_READDIRPLUS + 1
# Where the operations table may sit in struct fuse_session (after a few fields).
SESSION_SCAN = 256
# struct fuse_file_info: int flags, 32 bits of flags, 32 bits of padding, then fh.
FH_OFFSET = 16
SESSION_SYMBOL = b"__pyx_v_7pyfuse3_session"
OPS_SYMBOL = b"__pyx_v_7pyfuse3_fuse_ops"
INIT_SYMBOL = b"PyInit_pyfuse3"

CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int, ctypes.c_int64,
                            ctypes.c_int64, ctypes.c_void_p)
# Kept for the life of the process: libfuse holds a pointer to the callback.
_installed: list[Any] = []


def elf_symbols(path: str, wanted: set[bytes]) -> dict[bytes, int]:
    """Values of the named symbols in a 64-bit little-endian ELF file (symtab and dynsym)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return {}
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    found: dict[bytes, int] = {}
    for _, kind, _, _, offset, size, link, _, _, entsize in sections:
        if kind not in (2, 11) or entsize != 24:  # SHT_SYMTAB, SHT_DYNSYM
            continue
        strings = sections[link][4]
        for at in range(offset, offset + size, 24):
            name_at, _, _, _, value, _ = struct.unpack_from("<IBBHQQ", data, at)
            start = strings + name_at
            name = data[start:data.find(b"\0", start)]
            if name in wanted and value:
                found[name] = value
    return found


def _session_ops() -> ctypes.Array | None:
    """The session's copy of pyfuse3's operations table, or None if it cannot be found surely."""
    path = pyfuse3.__file__
    symbols = elf_symbols(path, {SESSION_SYMBOL, OPS_SYMBOL, INIT_SYMBOL})
    if len(symbols) != 3:
        log.info("fallocate is not supported: this pyfuse3 build has no symbol table")
        return None
    library = ctypes.CDLL(path)  # already loaded: the same handle, nothing runs again
    init = ctypes.cast(library.PyInit_pyfuse3, ctypes.c_void_p).value
    if not init:
        log.info("fallocate is not supported: pyfuse3's module is not where its symbols say")
        return None
    base = init - symbols[INIT_SYMBOL]
    session = ctypes.c_void_p.from_address(base + symbols[SESSION_SYMBOL]).value
    table = (ctypes.c_void_p * SLOTS).from_address(base + symbols[OPS_SYMBOL])
    want = [p or 0 for p in table]
    # What pyfuse3 sets and leaves empty around the slot: proof of the layout.
    if (not session or not want[0] or want[SLOT_FALLOCATE] or want[SLOT_FLOCK]
            or not want[SLOT_FORGET_MULTI] or not want[SLOT_READDIRPLUS]):
        log.info("fallocate is not supported: pyfuse3's operations table is not as expected")
        return None
    for offset in range(0, SESSION_SCAN, ctypes.sizeof(ctypes.c_void_p)):
        copy = (ctypes.c_void_p * SLOTS).from_address(session + offset)
        if [p or 0 for p in copy] == want:
            return copy
    log.info("fallocate is not supported: the session's operations table was not found")
    return None


def install(operations: Any) -> bool:
    """Serve fallocate with ``operations.fallocate(fh, mode, offset, length)``
    (after ``pyfuse3.init``, before ``pyfuse3.main``); False if it cannot be."""
    try:
        fuse = ctypes.CDLL(ctypes.util.find_library("fuse3") or "libfuse3.so.3")
        reply = fuse.fuse_reply_err
        reply.argtypes, reply.restype = [ctypes.c_void_p, ctypes.c_int], ctypes.c_int
        table = _session_ops()
    except (OSError, ValueError, AttributeError, struct.error, IndexError) as err:
        log.info("fallocate is not supported: %s", err)
        return False
    if table is None:
        return False

    async def answer(req: int, fh: int, mode: int, offset: int, length: int) -> None:
        code = errno.EINTR  # cancelled (unmounting): the request still gets its one answer
        try:
            await operations.fallocate(fh, mode, offset, length)
            code = 0
        except pyfuse3.FUSEError as err:
            code = err.errno
        except Exception:
            log.exception("fallocate failed")
            code = errno.EIO
        finally:
            reply(req, code)

    def on_request(req: int, ino: int, mode: int, offset: int, length: int, info: int) -> None:
        # Called by libfuse inside pyfuse3's request loop, on the trio thread:
        # the work is a task of the nursery that runs pyfuse3's own handlers.
        try:
            fh = ctypes.c_uint64.from_address(info + FH_OFFSET).value
            nursery = trio.lowlevel.current_task().parent_nursery
            assert nursery is not None  # a pyfuse3 handler's task: its nursery runs them all
            nursery.start_soon(answer, req, fh, mode, offset, length)
        except BaseException:
            log.exception("fallocate could not be started")
            reply(req, errno.EIO)

    callback = CALLBACK(on_request)
    _installed.append(callback)
    table[SLOT_FALLOCATE] = ctypes.cast(callback, ctypes.c_void_p).value
    return True
