"""links/owner.py ``_dropped_mode``: a dropped file is never writable by group or others (52t (6))."""

from __future__ import annotations

import pytest

from fusevault.links import owner


@pytest.mark.parametrize(("given", "umask", "kept"), [
    (0o666, 0o022, 0o644), (0o777, 0o022, 0o755), (0o666, 0o000, 0o644), (0o4777, 0o002, 0o755),
    (0o600, 0o077, 0o600), (0o640, 0o027, 0o640),
])
def test_a_dropped_mode_loses_setuid_her_umask_and_write_for_others(given, umask, kept, monkeypatch) -> None:
    monkeypatch.setattr(owner, "her_umask", lambda: umask)
    assert owner._dropped_mode(given) == kept
