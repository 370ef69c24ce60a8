"""A pause point in a mount server a test starts: the moment of a race made certain.

A test puts this folder on ``PYTHONPATH`` and names a gate folder in
``PYTHON_FVTEST_CONFLICT_GATE`` (the mount server is started with the
``PYTHON*`` variables and the command's path: fs/daemon.py ``_start_env``),
so Python imports this module first in every process of that mount.  There,
``vault/services/conflict_copies.py`` stops each conflict copy it makes after the
copy is created and before its bytes are written: it touches ``GATE/paused``
and waits (polling, on the trio loop: the mount answers meanwhile) until the
test creates ``GATE/go``.  Once the settling that made a copy has returned
(with what it asked of the kernel done: fs/arrivals.py), ``GATE/settled`` is
touched.  Only the moment is chosen; the mount, the kernel and the server are real.
"""

from __future__ import annotations

import os
from pathlib import Path


def _install(gate: Path) -> None:
    import trio

    from fusevault.fs import arrivals
    from fusevault.vault.services import conflict_copies

    made = []
    copy_into = conflict_copies.copy_into
    settle_conflicts = arrivals.Arrivals._settle_conflicts

    async def paused_copy_into(*args, **kwargs):
        (gate / "paused").touch()
        while not (gate / "go").exists():
            await trio.sleep(0.05)
        await copy_into(*args, **kwargs)
        made.append(True)

    async def marked_settle_conflicts(self, *args, **kwargs):
        try:
            return await settle_conflicts(self, *args, **kwargs)
        finally:
            if made:
                (gate / "settled").touch()

    conflict_copies.copy_into = paused_copy_into  # type: ignore[assignment]
    arrivals.Arrivals._settle_conflicts = marked_settle_conflicts  # type: ignore[method-assign]


if gate := os.environ.get("PYTHON_FVTEST_CONFLICT_GATE"):
    _install(Path(gate))
