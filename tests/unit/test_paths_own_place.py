"""paths.py: the state and config folders are the user's own, in folders no one else may change
(``_own_place``).  Root's `sudo -E` (HOME kept) would keep its pins, rollback ledger and logs in the
user's folder: hers to move away or to point elsewhere with a link (attack round 18).  The mounts:
tests/mount/test_trust_attack_round18.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fusevault import paths
from fusevault.errors import Unsafe

OTHER = 4242  # no such user needed: only the owner counts


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    place = tmp_path / "home" / ".local" / "state" / "fusevault"
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(place))
    return place


def test_a_folder_of_ones_own_under_ones_own_folders_is_taken(state: Path) -> None:
    assert paths.state_dir() == state and state.is_dir()


def test_a_state_folder_another_user_owns_is_refused(state: Path) -> None:
    state.mkdir(parents=True)
    os.chown(state, OTHER, OTHER)
    with pytest.raises(Unsafe, match="state folder"):
        paths.state_dir()


def test_a_state_folder_inside_another_users_folder_is_refused(state: Path) -> None:
    """She owns her home: she may rename root's state folder away, whoever owns it."""
    state.mkdir(parents=True)
    os.chown(state.parents[2], OTHER, OTHER)  # the home
    with pytest.raises(Unsafe, match="another user may change"):
        paths.state_dir()


def test_a_state_folder_that_is_a_link_is_refused(state: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    state.parent.mkdir(parents=True)
    state.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(Unsafe):
        paths.state_dir()


def test_a_folder_above_anyone_may_write_is_refused_unless_sticky(state: Path) -> None:
    state.mkdir(parents=True)
    state.parent.chmod(0o777)
    with pytest.raises(Unsafe):
        paths.state_dir()
    state.parent.chmod(0o1777)  # as /tmp: no one may rename another's folder in it
    paths._checked.clear()
    assert paths.state_dir() == state
