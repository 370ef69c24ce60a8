"""modes.py ``given_mode`` (links/owner.py ``_dropped_mode`` before 53d (5)): a dropped or imported file
is never writable by group or others (52t (6)), a folder made for her keeps her umask (53d (6))."""

from __future__ import annotations

import pytest

from fusevault import modes


@pytest.mark.parametrize(("given", "umask", "kept"), [
    (0o666, 0o022, 0o644), (0o777, 0o022, 0o755), (0o666, 0o000, 0o644), (0o4777, 0o002, 0o755),
    (0o600, 0o077, 0o600), (0o640, 0o027, 0o640),
])
def test_a_dropped_mode_loses_setuid_her_umask_and_write_for_others(given, umask, kept, monkeypatch) -> None:
    monkeypatch.setattr(modes, "_her_umask", umask)
    assert modes.given_mode(given) == kept


@pytest.mark.parametrize(("umask", "kept"), [(0o022, 0o755), (0o077, 0o700), (0o002, 0o755), (0o027, 0o750)])
def test_a_folder_made_for_her_keeps_her_umask_never_writable_by_others(umask, kept, monkeypatch) -> None:
    monkeypatch.setattr(modes, "_her_umask", umask)
    assert modes.folder_mode() == kept
