"""A pause point in a mount server a test starts (attack round 58d): the moment of a kill made certain.

A test puts this folder on ``PYTHONPATH`` and names a gate folder in ``PYTHON_FVTEST_REKEY_GATE``
(the mount server is started with the ``PYTHON*`` variables: fs/daemon.py ``_start_env``).  Once
``GATE/armed`` exists, the next ``Volume.rekey`` touches ``GATE/paused`` and waits (on the trio loop:
the mount answers meanwhile) until ``GATE/go`` exists.  The test kills the server there (kill -9):
only the moment is chosen; the mount, the kernel and the server are real.
"""

from __future__ import annotations

import os
from pathlib import Path


def _install(gate: Path) -> None:
    import trio

    from fusevault.vault.volume import Volume

    rekey = Volume.rekey

    async def paused_rekey(self, node):  # type: ignore[no-untyped-def]
        if (gate / "armed").exists() and not (gate / "paused").exists():
            (gate / "paused").touch()
            while not (gate / "go").exists():
                await trio.sleep(0.05)
        return await rekey(self, node)

    Volume.rekey = paused_rekey  # type: ignore[method-assign]


if gate := os.environ.get("PYTHON_FVTEST_REKEY_GATE"):
    _install(Path(gate))
