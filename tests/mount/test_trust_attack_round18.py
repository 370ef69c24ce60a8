"""Attack round 18 on issue 22 (the authenticated vault).

(Docstring filled in as the round goes: holes most severe first, then what held.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import mounted

USER_UID = 4242  # the user whose home root's `sudo -E` keeps (no login needed: only the owner counts)


def _users_home(tmp_path: Path) -> Path:
    """A home folder of an unprivileged user, as `sudo -E` leaves HOME pointing at it."""
    home = tmp_path / "home-of-the-user"
    (home / ".local" / "state").mkdir(parents=True)
    for folder in (home, home / ".local", home / ".local" / "state"):
        os.chown(folder, USER_UID, USER_UID)
    return home


def _as_sudo_e(home: Path) -> dict[str, str]:
    """The environment of `sudo -E fusevault ...`: HOME is the user's, no state-dir override."""
    return {"HOME": str(home), "XDG_STATE_HOME": "", "XDG_CONFIG_HOME": "", "FUSEVAULT_STATE_DIR": "",
            "FUSEVAULT_CONFIG_DIR": ""}


@pytest.mark.xfail(strict=True, reason="hole: paths.state_dir() takes a folder the user owns for root's "
                   "state; its logs link is followed and root writes where the user points it")
def test_roots_mount_under_sudo_e_writes_nothing_through_the_users_state_folder(
        vault: Path, tmp_path: Path) -> None:
    home = _users_home(tmp_path)
    # The user (no root) prepares root's state folder in her home before root's next `sudo -E` mount:
    # its logs folder is a link to a folder only root may write (think /etc/cron.d or /etc/sudoers.d).
    state = home / ".local" / "state" / "fusevault"
    state.mkdir(mode=0o700)
    os.chown(state, USER_UID, USER_UID)
    roots_only = tmp_path / "roots-only"
    roots_only.mkdir(mode=0o700)
    (state / "logs").symlink_to(roots_only)
    os.lchown(state / "logs", USER_UID, USER_UID)

    with mounted(vault, tmp_path / "mnt", env=_as_sudo_e(home)) as mnt:
        (mnt / "a.txt").write_bytes(b"root's mount works")
    written = sorted(p.name for p in roots_only.iterdir())
    assert written == [], f"root wrote {written} into a folder only root may write, through the user's link"
