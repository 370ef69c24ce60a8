"""Ids made paths in the vault folder (attack round 14 (2)): one place checks them
(vault/format/layout.py ``checked_id``, UnsafeId), the documents that carry them are refused where
they are read (vault/model/shapes.py), and what is written or removed there never follows a link out
(vault/format/inside.py).  The mounts: tests/mount/test_vault_folder_ids.py."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import pytest

from fusevault.errors import CorruptData, UnsafeId
from fusevault.store.local import LocalStore
from fusevault.vault.format import inside
from fusevault.vault.format import layout as layouts
from fusevault.vault.model import meta_files, shapes, sharing

GOOD = "963d5f5dfa534c72ad684370ad72c96a"  # fixed: xdist workers must collect the same ids
# Each is a way out of its place, or a name fusevault never makes.
BAD = ["../../escaped/x", "/etc", "..", ".", "", "a/b", GOOD + "/..", GOOD.upper(), GOOD[:-1], GOOD + "0",
       GOOD + "\n", "\x00" + GOOD[1:], 7, None]


@pytest.fixture
def layout(tmp_path: Path) -> layouts.Layout:
    return layouts.create(tmp_path / "vault", {"kind": "local"})


@pytest.mark.parametrize("bad", BAD, ids=repr)
def test_every_path_made_of_an_id_refuses_one_fusevault_never_makes(layout: layouts.Layout, bad) -> None:
    makers = [lambda: layout.user_dir(bad), lambda: layout.own_dir(bad), lambda: layout.group_dir(bad),
              lambda: layout.vf_path(bad, GOOD), lambda: layout.vf_path(GOOD, bad),
              lambda: layout.vfmeta_path(GOOD, bad), lambda: layout.make_user_dirs(bad),
              lambda: sharing.user_key_path(layout, bad, GOOD, GOOD),
              lambda: sharing.user_key_path(layout, GOOD, bad, GOOD),
              lambda: sharing.user_key_path(layout, GOOD, GOOD, bad),
              lambda: sharing.group_key_path(layout, bad, GOOD, GOOD),
              lambda: sharing.group_key_path(layout, GOOD, bad, GOOD),
              lambda: sharing.group_key_path(layout, GOOD, GOOD, bad)]
    for make in makers:
        with pytest.raises(UnsafeId, match="not a name fusevault makes"):
            make()
    assert sorted(os.listdir(layout.root / "users")) == []


def test_a_good_id_makes_the_paths_it_did(layout: layouts.Layout) -> None:
    assert layout.vf_path(GOOD, GOOD) == layout.root / "users" / GOOD / "own" / f"{GOOD}.vf"
    assert sharing.group_key_path(layout, GOOD, GOOD, GOOD) == (
        layout.root / "groups" / GOOD / "own" / GOOD / "keys" / f"{GOOD}.vfkey")
    layout.make_user_dirs(GOOD)
    assert sorted(os.listdir(layout.user_dir(GOOD))) == ["own", "shared"]


@pytest.mark.parametrize("bad", ["../../escaped/x", "/x", GOOD.upper()])
def test_documents_whose_ids_would_be_paths_are_refused_by_their_shape(bad: str) -> None:
    user = {"_id": bad, "type": shapes.USER, "username": "x", "created_at": 1}
    group = {"_id": bad, "type": shapes.GROUP, "groupname": "x", "owner": GOOD, "created_at": 1, "users": {}}
    assert shapes.user_ok({**user, "_id": GOOD}) and shapes.group_ok({**group, "_id": GOOD})
    assert not shapes.user_ok(user)
    assert not shapes.group_ok(group)
    assert not shapes.group_ok({**group, "_id": GOOD, "owner": bad})
    assert not shapes.group_ok({**group, "_id": GOOD, "users": {bad: "READ"}})  # a key file's name
    share = {"_id": "s", "type": shapes.SHARE, "owner": GOOD, "fid": GOOD, "grantee": GOOD, "perm": "READ"}
    assert shapes.share_ok(share)
    for field in ("owner", "fid", "grantee"):
        assert not shapes.share_ok({**share, field: bad})
        with pytest.raises(CorruptData):
            sharing.grant_of({**share, field: bad})


def test_reconcile_writes_no_meta_inf_through_a_link_and_removes_nothing_it_points_to(
        layout: layouts.Layout, tmp_path: Path) -> None:
    """A writer of the vault folder makes users/<a user's id> a link to a folder outside, and
    groups/<an id no group has> a link to another: reconcile (as root on the shared mount) writes no
    meta.inf there, makes no folder there and removes neither."""
    outside, elsewhere = tmp_path / "outside", tmp_path / "elsewhere"
    for folder in (outside, elsewhere):
        folder.mkdir()
        (folder / "precious.txt").write_text("not the vault's")
    store = LocalStore(layout.root / "store.sqlite")
    try:
        store.put_many([{"_id": GOOD, "type": shapes.USER, "username": "alice", "created_at": 1}])
        os.symlink(outside, layout.root / "users" / GOOD)
        gone = uuid.uuid4().hex
        os.symlink(elsewhere, layout.root / "groups" / gone)
        meta_files.reconcile(layout, store)
    finally:
        store.close()
    assert sorted(os.listdir(outside)) == ["precious.txt"]
    assert sorted(os.listdir(elsewhere)) == ["precious.txt"]
    assert (layout.root / "groups" / gone).is_symlink()


def test_reconcile_never_walks_a_linked_users_or_groups_folder(
        layout: layouts.Layout, tmp_path: Path) -> None:
    """users/ and groups/ themselves made links to folders holding folders of nobody's (named as ids, or
    not): reconcile's cleaning of places no document names removes none of them."""
    for kind in ("users", "groups"):
        outside = tmp_path / f"outside-{kind}"
        for name in (uuid.uuid4().hex, "etc"):
            (outside / name).mkdir(parents=True)
        os.rmdir(layout.root / kind)
        os.symlink(outside, layout.root / kind)
    store = LocalStore(layout.root / "store.sqlite")
    try:
        meta_files.reconcile(layout, store)
    finally:
        store.close()
    for kind in ("users", "groups"):
        assert len(os.listdir(tmp_path / f"outside-{kind}")) == 2


def test_inside_refuses_a_link_on_the_way_and_writes_where_asked(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "root" / "users").mkdir(parents=True)
    os.symlink(tmp_path / "out", tmp_path / "root" / "users" / "x")
    with pytest.raises(CorruptData, match="symbolic link"):
        inside.write_file(tmp_path / "root", ["users", "x"], "meta.inf", b"{}")
    with pytest.raises(CorruptData, match="symbolic link"):
        inside.remove_tree(tmp_path / "root", ["users"], "x")
    with pytest.raises(CorruptData):
        inside.write_file(tmp_path / "root", ["users", ".."], "meta.inf", b"{}")
    assert os.listdir(tmp_path / "out") == []
    inside.write_file(tmp_path / "root", ["users", "y"], "meta.inf", b"{}")
    assert inside.read_file(tmp_path / "root", ["users", "y"], "meta.inf") == b"{}"
    os.symlink(tmp_path / "root" / "users" / "y" / "meta.inf", tmp_path / "root" / "users" / "y" / "ln")
    assert inside.read_file(tmp_path / "root", ["users", "y"], "ln") is None  # a link is not read through
    inside.remove_tree(tmp_path / "root", ["users"], "y")
    assert sorted(os.listdir(tmp_path / "root" / "users")) == ["x"]


@pytest.mark.parametrize("field", ["_id", "owner"])
def test_a_node_whose_fid_or_owner_is_no_id_is_refused_before_any_path(field: str) -> None:
    """A node document (a grantee can sign his own with any id) whose fid or owner would become
    users/<owner>/own/<fid>.vf: refused as malformed (UnsafeId is a CorruptData: the file is left out)."""
    from fusevault.vault.model.nodes import node_from_doc

    doc = {"_id": GOOD, "owner": GOOD, "_rev": "1-0", field: "../../escaped/x"}
    with pytest.raises(UnsafeId):
        node_from_doc(doc, b"\0" * 32, {"mode": 0o100600})


def test_the_key_mirror_skips_folders_not_named_as_ids(layout: layouts.Layout) -> None:
    """A writer of the vault folder adds users/lost+found/shared/x_y.vfkey and groups/..x/: the scan of
    key files for peers passes over them (no UnsafeId, no crash)."""
    from fusevault.sync.key_mirror import scan

    (layout.root / "users" / "lost+found" / "shared").mkdir(parents=True)
    (layout.root / "users" / "lost+found" / "shared" / f"{GOOD}_{GOOD}.vfkey").write_text("{}")
    (layout.root / "groups" / "..x" / "own" / GOOD / "keys").mkdir(parents=True)
    assert scan(layout) == {}


def test_a_key_file_is_never_written_or_removed_through_a_linked_folder(
        layout: layouts.Layout, tmp_path: Path) -> None:
    """users/<recipient>/shared (or a group's keys folder) made a link to a folder outside: writing or
    removing a key file there is refused (CorruptData), nothing outside is made or removed."""
    outside = tmp_path / "outside"
    outside.mkdir()
    recipient, owner, fid = (uuid.uuid4().hex for _ in range(3))
    layout.make_user_dirs(recipient)
    os.rmdir(layout.user_dir(recipient) / "shared")
    os.symlink(outside, layout.user_dir(recipient) / "shared")
    path = sharing.user_key_path(layout, recipient, owner, fid)
    (outside / path.name).write_text("someone's")
    with pytest.raises(CorruptData, match="symbolic link"):
        sharing.write_key(path, 0, b"k" * 32)
    with pytest.raises(CorruptData, match="symbolic link"):
        sharing.remove_key(path)
    group = uuid.uuid4().hex
    (layout.root / "groups" / group / "own").mkdir(parents=True)
    os.symlink(outside, layout.root / "groups" / group / "own" / fid)
    with pytest.raises(CorruptData, match="symbolic link"):
        sharing.write_key(sharing.group_key_path(layout, group, fid, recipient), 0, b"k" * 32)
    assert os.listdir(outside) == [path.name] and (outside / path.name).read_text() == "someone's"
    sharing.write_key(sharing.user_key_path(layout, owner, recipient, fid), 0, b"k" * 32)  # a real folder


def test_a_key_folder_made_a_link_while_keys_are_written_gets_none(layout: layouts.Layout,
                                                                   tmp_path: Path) -> None:
    """The race the check by ``lstat`` left open: users/<recipient>/shared swapped, again and again,
    between the real folder and a link to a folder outside while key files are written and removed.
    The folder is opened with no link followed and the key file written relative to that fd, so
    nothing is ever made or removed outside (before: a swap between the check and the write won)."""
    import ctypes
    import threading

    libc = ctypes.CDLL(None, use_errno=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    recipient, owner = uuid.uuid4().hex, uuid.uuid4().hex
    layout.make_user_dirs(recipient)
    shared = layout.user_dir(recipient) / "shared"
    other = shared.with_name("shared-other")
    other.symlink_to(outside)
    stop = threading.Event()
    swaps = []

    def swap() -> None:  # renameat2(RENAME_EXCHANGE): "shared" is always there, a folder or the link
        while not stop.is_set():
            assert libc.renameat2(-100, bytes(shared), -100, bytes(other), 2) == 0, ctypes.get_errno()
            swaps.append(1)

    swapper = threading.Thread(target=swap)
    swapper.start()
    try:
        for _ in range(3000):
            path = sharing.user_key_path(layout, recipient, owner, uuid.uuid4().hex)
            with contextlib.suppress(CorruptData, FileNotFoundError):
                sharing.write_key(path, 0, b"k" * 32)
            with contextlib.suppress(CorruptData, FileNotFoundError):
                sharing.remove_key(path)
    finally:
        stop.set()
        swapper.join()
    assert len(swaps) > 100, "the swapper ran"
    assert os.listdir(outside) == []
