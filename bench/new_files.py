#!/usr/bin/env python3
"""New files made, written and sealed by ``Content`` alone (no mount): what one new file costs the
file layer.

    PYTHONPATH=SOURCE_DIR .venv/bin/python bench/new_files.py [N] [ROUNDS]

SOURCE_DIR: the fusevault to measure (``git archive COMMIT | tar x -C DIR``; this checkout if
unset).  Prints which fusevault it measured and each round's seconds for N files of 1 KiB.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import fusevault
from fusevault.vault.files.content import Content
from fusevault.vault.format import layout as layouts


def one_round(count: int) -> float:
    folder = Path(tempfile.mkdtemp(prefix="fv-new-files-", dir="/var/tmp"))
    try:
        layout = layouts.create(folder / "vault", {"type": "local"})
        owner = uuid.uuid4().hex
        layout.own_dir(owner).mkdir(parents=True)
        start = time.perf_counter()
        for _ in range(count):
            content = Content(layout, owner, uuid.uuid4().hex, os.urandom(32), None, None)
            content.write(0, b"x" * 1024)
            content.seal_version(1024)
            content.close()
        return time.perf_counter() - start
    finally:
        shutil.rmtree(folder)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    print(fusevault.__file__, " ".join(f"{one_round(count):.2f}" for _ in range(rounds)))


if __name__ == "__main__":
    main()
