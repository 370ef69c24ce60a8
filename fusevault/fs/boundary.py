"""Where domain errors become errno values: the one wrapper every FUSE handler runs in.

It also notes that the drive is in use, for sync to wait (sync/foreground.py).

Also counts requests for ``FUSEVAULT_OP_STATS`` (bench/profile.py).
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import pyfuse3

from fusevault import errors
from fusevault.store.local import LocalStore
from fusevault.sync.foreground import FOREGROUND
from fusevault.vault.model.verified import STATS as VERIFIED

log = logging.getLogger("fusevault.fs.operations")  # the name the mount's log always showed

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])

ERRNO: dict[type, int] = {
    errors.NotFound: errno.ENOENT,
    errors.Exists: errno.EEXIST,
    errors.NotEmpty: errno.ENOTEMPTY,
    errors.NotADirectory: errno.ENOTDIR,
    errors.IsADirectory: errno.EISDIR,
    errors.NameTooLong: errno.ENAMETOOLONG,
    errors.InvalidArgument: errno.EINVAL,
    errors.NoAttribute: pyfuse3.ENOATTR,
    errors.NotSupported: errno.EOPNOTSUPP,
    errors.PermissionDenied: errno.EACCES,
    errors.CrossOwner: errno.EXDEV,
    errors.Locked: errno.EACCES,
    errors.BadHandle: errno.EBADF,
    errors.FileTooLarge: errno.EFBIG,
    errors.CorruptData: errno.EIO,
    errors.NoSpace: errno.ENOSPC,
    errors.VaultReadOnly: errno.EROFS,
    errors.StoreUnavailable: errno.EIO,
    errors.Conflict: errno.EIO,
}


def errno_for(err: errors.VaultError) -> int:
    for cls in type(err).__mro__:
        if cls in ERRNO:
            return ERRNO[cls]
    return errno.EIO


# FUSEVAULT_OP_STATS=FILE: count every request and the time spent in its
# handler, written to FILE as JSON at unmount (bench/profile.py uses it).
# Decided once at import, so a mount without it pays nothing per request.
OP_STATS: dict[str, list[float]] | None = {} if os.environ.get("FUSEVAULT_OP_STATS") else None


def boundary(handler: Handler) -> Handler:
    inner = _timed(handler) if OP_STATS is not None else handler
    served = FOREGROUND.served  # sync's batches wait while requests keep coming (sync/foreground.py)

    @functools.wraps(handler)
    async def wrapper(*args: Any) -> Any:
        served()
        try:
            return await inner(*args)
        except pyfuse3.FUSEError:
            raise
        except errors.VaultError as err:
            code = errno_for(err)
            if code == errno.EIO:
                log.error("%s: %s", handler.__name__, err)
            raise pyfuse3.FUSEError(code) from None
        except OSError as err:
            log.error("%s: %s", handler.__name__, err)
            raise pyfuse3.FUSEError(err.errno or errno.EIO) from None
        except Exception:
            log.exception("unexpected error in %s", handler.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return cast(Handler, wrapper)


def _timed(handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    assert OP_STATS is not None
    stats = OP_STATS.setdefault(handler.__name__, [0, 0.0])

    @functools.wraps(handler)
    async def timed(*args: Any) -> Any:
        start = time.perf_counter()
        try:
            return await handler(*args)
        finally:
            stats[0] += 1
            stats[1] += time.perf_counter() - start

    return timed


def write_op_stats() -> None:
    if OP_STATS:
        with open(os.environ["FUSEVAULT_OP_STATS"], "w") as out:
            stats = {op: {"count": n, "seconds": t} for op, (n, t) in OP_STATS.items()}
            # Not a request: the store's write transactions, to count group commit's effect.
            stats["store commits"] = {"count": LocalStore.commits, "seconds": 0.0}
            # Signatures checked, and those this device had checked before (vault/model/verified.py).
            stats["signatures verified"] = {"count": VERIFIED["verified"], "seconds": 0.0}
            stats["signatures cached"] = {"count": VERIFIED["cached"], "seconds": 0.0}
            json.dump(stats, out)
