"""The root's names kept for the mount's views (``.versions``, ``shared``, ``groups``): what makes root
children for her without her typing the name avoids them (attack round 52t (1), (2), (4)).

The scenes, through the real mount: tests/mount/test_trust_attack_52t.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import trio

from fusevault.errors import ReservedName
from fusevault.links.owner import Links, _taken_in, unique_name
from fusevault.vault.model import names
from fusevault.vault.model.nodes import ROOT_INODE
from fusevault.vault.services import versions_view
from fusevault.vault.services.placing import make_dirs
from fusevault.vault.services.recovery import _copy_out
from fusevault.vault.tree import guests


def _folder(ino: int, *children: bytes) -> Any:
    return SimpleNamespace(ino=ino, children={name: 100 + i for i, name in enumerate(children)})


class _NoWrites:
    """A volume whose root is ``root``: any change asked of it fails the test."""

    def __init__(self, root: Any) -> None:
        self.root = root

    def resolve(self, path: bytes) -> Any:
        assert path == b""
        return self.root

    async def mkdir(self, *args: object) -> None:
        raise AssertionError("a reserved name was made at the root")

    async def create(self, *args: object) -> None:
        raise AssertionError("a reserved name was made at the root")


def test_one_definition_of_the_reserved_root_names() -> None:
    assert names.RESERVED_AT_ROOT == {b".versions", b"shared", b"groups"}
    assert versions_view.NAME is names.VERSIONS  # the FUSE handlers' name (fs/operations.py)
    assert (guests.SHARED_DIR, guests.GROUPS_DIR) == (names.SHARED, names.GROUPS)


def test_reserved_at_root_looks_at_the_first_name_only() -> None:
    assert names.reserved_at_root(b".versions/plan.txt/x") == b".versions"
    assert names.reserved_at_root(b"/groups/team/proj") == b"groups"
    assert names.reserved_at_root(b"shared") == b"shared"
    assert names.reserved_at_root(b"docs/shared") is None
    assert names.reserved_at_root(b"shared (2)/x") is None
    assert names.reserved_at_root(b"/") is None


def test_away_from_reserved_is_stable_and_keeps_the_rest() -> None:
    assert names.away_from_reserved(b"/.versions/plan.txt/x") == b".versions (2)/plan.txt/x"
    assert names.away_from_reserved(b"shared") == b"shared (2)"
    assert names.away_from_reserved(b"Imported/shared/x") == b"Imported/shared/x"
    once = names.away_from_reserved(b"groups/a")
    assert names.away_from_reserved(once) == once


def test_a_drop_into_the_root_takes_the_next_free_name_for_a_reserved_one() -> None:
    root = _folder(ROOT_INODE, b"shared (2)")
    assert unique_name(_taken_in(root), b".versions") == b".versions (2)"
    assert unique_name(_taken_in(root), b"shared") == b"shared (3)"
    assert unique_name(_taken_in(root), b"groups") == b"groups (2)"
    assert unique_name(_taken_in(_folder(7)), b"shared") == b"shared"  # below the root: any name


def test_make_dirs_does_not_make_a_reserved_name_at_the_root() -> None:
    volume: Any = _NoWrites(_folder(ROOT_INODE))
    for path in (b"groups/team/proj", b".versions", b"shared/bob"):
        with pytest.raises(ReservedName):
            trio.run(make_dirs, volume, path, None)


def test_restore_to_a_reserved_root_name_is_refused_with_its_own_exit_code() -> None:
    volume: Any = _NoWrites(_folder(ROOT_INODE))
    node: Any = SimpleNamespace(mode=0o100644, uid=1000, gid=1000)
    for to in (b"/.versions", b"shared", b"/groups"):
        with pytest.raises(ReservedName) as refused:
            trio.run(_copy_out, volume, node, None, to)
    assert refused.value.exit_code == 33


def _record(path: str) -> Any:
    return SimpleNamespace(path=path)


def test_a_box_under_a_view_not_there_waits_said_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    links: Any = Links.__new__(Links)
    links.vol = _NoWrites(_folder(ROOT_INODE, b"Inbox"))
    assert links._share_gone(_record("groups/team/proj"))
    assert "waits on the link server" in caplog.text
    assert not links._share_gone(_record("Inbox"))
    assert not links._share_gone(_record("/"))
    links.vol = _NoWrites(_folder(ROOT_INODE, b"groups"))  # the view is there (or a folder of hers)
    assert not links._share_gone(_record("groups/team/proj"))
