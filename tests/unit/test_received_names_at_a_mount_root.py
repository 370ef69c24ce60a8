"""A receive into the root of a fusevault mount: the sender's top names the root keeps for its views
take another name (transfer/output.py ``away_from_views``, attack round 53t (5)); the real-mount
scene is tests/services/test_attack_53t.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fusevault import mounts
from fusevault.errors import ReservedName
from fusevault.transfer import output
from fusevault.transfer.output import away_from_views

OFFERED = ["shared/bob/contract.txt", ".versions/notes.txt", "groups", "sharedx/a", "a/shared/b"]


@pytest.fixture
def mount_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "Private"
    root.mkdir()
    monkeypatch.setattr(mounts, "fusevault_mounts", lambda: [os.path.realpath(root)])
    return root


def test_at_a_mount_root_the_views_names_take_another_name(mount_root: Path) -> None:
    assert away_from_views(mount_root, OFFERED) == {
        "shared/bob/contract.txt": "shared (2)/bob/contract.txt",
        ".versions/notes.txt": ".versions (2)/notes.txt",
        "groups": "groups (2)",
    }


def test_the_root_reached_through_a_symlink_or_dots_too(mount_root: Path, tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(mount_root)
    assert away_from_views(tmp_path / "link", ["shared/x"]) == {"shared/x": "shared (2)/x"}
    assert away_from_views(mount_root / "sub" / "..", ["groups"]) == {"groups": "groups (2)"}


def test_below_the_root_or_outside_a_mount_names_stay(mount_root: Path, tmp_path: Path) -> None:
    (mount_root / "Inbox").mkdir()
    assert away_from_views(mount_root / "Inbox", OFFERED) == {}
    assert away_from_views(tmp_path, OFFERED) == {}


def test_a_new_name_the_sender_offers_too_is_refused(mount_root: Path) -> None:
    with pytest.raises(ReservedName):
        away_from_views(mount_root, ["shared/x", "shared (2)/y"])


def test_a_link_that_climbs_back_to_the_views_name_is_not_made(mount_root: Path) -> None:
    """``shared/a -> ../shared/b`` stayed inside ``shared`` by its text; arrived as ``shared (2)/a``
    it would name the root's view: checked against the name it arrives under, it is not made."""
    renamed = away_from_views(mount_root, ["shared/a", "shared/b"])
    (mount_root / "shared (2)").mkdir()
    (mount_root / "shared (2)" / "b").write_text("b")
    output.make_links(mount_root, [{"name": renamed["shared/a"], "target": "../shared/b"}], print)
    assert not os.path.lexists(mount_root / "shared (2)" / "a")
