"""Who else may read a vault's key material.

Everything fusevault makes is made under umask 077 (cli.main), so a vault
made by this version is its owner's alone.  A vault from before, or one
copied or unpacked under a looser umask, may not be: ``mount`` refuses a
vault whose key material other local users can read (the store holds every
user's wrapped master key, open to offline passphrase guessing; ``.vfkey``
files hold sealed file keys), and says the command that fixes it.
"""

from __future__ import annotations

import os
import shlex
import stat
from collections.abc import Iterator
from pathlib import Path

from fusevault.errors import Unsafe

# Relative to the vault: the store (and its -wal, -shm, -journal), and shared file keys.
KEY_MATERIAL = ("store.sqlite*", "users/*/shared/*.vfkey", "groups/*/own/*/keys/*.vfkey")


def key_material(root: Path) -> Iterator[Path]:
    for pattern in KEY_MATERIAL:
        yield from root.glob(pattern)


def check_private(root: Path) -> None:
    """Refuse a vault whose key material others (group or other) may read."""
    for path in key_material(root):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue  # gone meanwhile (a -wal at checkpoint)
        if st.st_mode & 0o044:
            raise Unsafe(f"other users may read {path} (mode {stat.S_IMODE(st.st_mode):o}): "
                         f"run `chmod -R go-rwx {shlex.quote(str(root))}` and mount again")
