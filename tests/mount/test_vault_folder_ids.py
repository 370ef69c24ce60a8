"""Nothing outside the vault folder is written or removed from a planted id or a planted link
(attack round 14 (2), more than tests/mount/test_trust_attack_round14.py drives): an absolute id, a
peer's documents, and symbolic links a writer of the vault folder (no key) puts where fusevault keeps
its folders.  The checks: vault/format/layout.py ``checked_id``, vault/format/inside.py."""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from pathlib import Path

import httpx
from attack_scenes import mounts_again
from conftest import PASSPHRASE, first_device, fusevault, mounted, settled, sync_status, wait_for


def _plant_user(vault: Path, doc_id: str, username: str = "x") -> None:
    db = sqlite3.connect(vault / "store.sqlite", timeout=30)
    try:
        with db:
            (seq,) = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM docs").fetchone()
            body = {"type": "UserDetails", "username": username, "created_at": 1}
            db.execute("INSERT INTO docs (id, rev, seq, deleted, type, body, revs) "
                       "VALUES (?, '1-0', ?, 0, 'UserDetails', ?, NULL)", (doc_id, seq, json.dumps(body)))
    finally:
        db.close()


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _alice_id(vault: Path) -> str:
    db = sqlite3.connect(vault / "store.sqlite", timeout=30)
    try:
        (uid,) = db.execute("SELECT id FROM docs WHERE type = 'UserDetails'").fetchone()
    finally:
        db.close()
    return uid


def test_an_absolute_planted_user_id_writes_nothing_where_it_points(vault: Path, tmp_path: Path) -> None:
    """A store writer plants a UserDetails document whose id is an absolute path (``users / "/x"`` is
    "/x"): alice's mount makes nothing there, and comes up; `fusevault status` says it was refused."""
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "notes.txt").write_text("alice's notes")
    target = tmp_path / "absolute"
    _plant_user(vault, str(target))
    with mounts_again(vault, mnt):
        assert not target.exists(), f"an absolute id wrote outside the vault folder: {_tree(target)}"
        assert (mnt / "notes.txt").read_text() == "alice's notes"
        status = fusevault("status", mnt, passphrase=None)
        assert f"malformed UserDetails document '{target}'" in status.stdout + status.stderr


def test_a_linked_groups_folder_loses_nothing_it_points_to(vault: Path, tmp_path: Path) -> None:
    """A writer of the vault folder makes groups/ a link to a folder of someone's holding folders (one
    named like a fusevault id, one not).  Every mount (root's shared mount as root) removes the places of
    groups no document names: safe, it removes nothing there, and her mount comes up."""
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "notes.txt").write_text("alice's notes")
    victim = tmp_path / "victim"
    for name in (uuid.uuid4().hex, "photos"):
        (victim / name).mkdir(parents=True)
        (victim / name / "precious.txt").write_text("not the vault's")
    before = _tree(victim)
    os.rmdir(vault / "groups")
    os.symlink(victim, vault / "groups")
    with mounts_again(vault, mnt):
        assert (mnt / "notes.txt").read_text() == "alice's notes"
    assert _tree(victim) == before, "a linked groups folder lost what it points to"


def test_a_planted_link_among_the_users_folders_is_neither_followed_nor_stops_her_mount(
        vault: Path, tmp_path: Path) -> None:
    """A writer of the vault folder puts users/<an id no user has> -> a folder outside (empty but for a
    file of someone's), and replaces alice's own users/<her id>/shared with a link to another.  Safe:
    her mount comes up, neither folder outside is removed, written or given an own/ or meta.inf."""
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "notes.txt").write_text("alice's notes")
    outside, other = tmp_path / "outside", tmp_path / "other"
    for folder in (outside, other):
        folder.mkdir()
        (folder / "precious.txt").write_text("not the vault's")
    os.symlink(outside, vault / "users" / uuid.uuid4().hex)
    shared = vault / "users" / _alice_id(vault) / "shared"
    os.rmdir(shared)
    os.symlink(other, shared)
    with mounts_again(vault, mnt):
        assert (mnt / "notes.txt").read_text() == "alice's notes"
    assert _tree(outside) == ["precious.txt"] and _tree(other) == ["precious.txt"]


def test_removing_a_user_whose_folder_was_made_a_link_deletes_nothing_it_points_to(
        vault: Path, tmp_path: Path) -> None:
    """bob, a user of alice's vault, has no files; a writer of the vault folder makes users/<bob's id> a
    link to a folder of someone's.  The administrator runs `fusevault user remove bob`: bob's documents
    go, the folder outside stays whole (the removal refuses the link, never follows it)."""
    env = {"FUSEVAULT_VAULT": str(vault), "FUSEVAULT_NEW_PASSPHRASE": PASSPHRASE}
    assert fusevault("user", "add", "bob", "--uid", "2001", env=env).returncode == 0
    db = sqlite3.connect(vault / "store.sqlite", timeout=30)
    try:
        (bob,) = db.execute("SELECT id FROM docs WHERE type = 'UserDetails' AND body LIKE '%\"bob\"%'"
                            ).fetchone()
    finally:
        db.close()
    victim = tmp_path / "victim"
    (victim / "own").mkdir(parents=True)
    (victim / "precious.txt").write_text("not the vault's")
    os.rename(vault / "users" / bob, tmp_path / "bobs-folder")
    os.symlink(victim, vault / "users" / bob)
    done = fusevault("user", "remove", "bob", env={"FUSEVAULT_VAULT": str(vault)})
    print(done.returncode, done.stdout[-500:], done.stderr[-500:])
    assert done.returncode == 0
    assert _tree(victim) == ["own", "precious.txt"], "removing a user deleted what a link points to"
    assert "bob" not in fusevault("user", "list", env={"FUSEVAULT_VAULT": str(vault)}).stdout


def test_a_peers_documents_whose_ids_are_paths_are_refused_at_the_pull(
        couchdb_url: str, tmp_path: Path) -> None:
    """alice's laptop syncs with a server.  The server (no key) adds a UserDetails document whose id is
    "../../escaped/x" and a node whose id is "../../escaped/y".  Safe: the laptop's pull stores neither
    (an alarm says so), makes nothing outside the vault folder, and syncs on."""
    laptop = first_device(couchdb_url, tmp_path)
    mnt = tmp_path / "laptop-mnt"
    with mounted(laptop, mnt):
        (mnt / "before.txt").write_text("before\n")
        wait_for(lambda: settled(mnt), "the laptop to push")
    forged = {"../../escaped/x": {"type": "UserDetails", "username": "x", "created_at": 1},
              "../../escaped/y": {"type": "node", "owner": "x"}}
    for doc_id, body in forged.items():
        put = httpx.put(f"{couchdb_url}/{doc_id.replace('/', '%2F')}", json=body, timeout=30)
        assert put.status_code in (201, 202), put.text
    with mounted(laptop, mnt):
        wait_for(lambda: "escaped/y" in fusevault("status", mnt, passphrase=None).stdout,
                 lambda: f"the pull to refuse the forgeries: {sync_status(mnt)}")
        status = fusevault("status", mnt, passphrase=None).stdout
        print(status)
        assert "no name fusevault makes" in status
        (mnt / "after.txt").write_text("after\n")
        wait_for(lambda: settled(mnt), lambda: f"the laptop to push: {sync_status(mnt)}")
        assert sync_status(mnt)["error"] is None
    db = sqlite3.connect(laptop / "store.sqlite", timeout=30)
    try:
        stored = db.execute("SELECT id FROM docs WHERE id LIKE '%escaped%'").fetchall()
    finally:
        db.close()
    assert stored == [], f"the pull stored a peer's document whose id is a path: {stored}"
    assert not (tmp_path / "escaped").exists() and not (laptop.parent / "escaped").exists()


def test_check_reports_a_planted_node_whose_id_is_a_path_and_reads_nothing_there(
        vault: Path, tmp_path: Path) -> None:
    """A store writer plants a node of alice's whose id is "../../escaped/x" (and a file escaped/x.vf
    outside waits there).  `fusevault check` reports it as a problem and runs to its end: no path is
    made of the id (no UnsafeId, no "internal error")."""
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "notes.txt").write_text("alice's notes")
    (tmp_path / "escaped").mkdir()
    (tmp_path / "escaped" / "x.vf").write_bytes(b"not the vault's")
    db = sqlite3.connect(vault / "store.sqlite", timeout=30)
    try:
        with db:
            (seq,) = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM docs").fetchone()
            body = {"type": "node", "owner": _alice_id(vault), "enc": "AAAA", "en_file_dek": "AAAA"}
            db.execute("INSERT INTO docs (id, rev, seq, deleted, type, body, revs) "
                       "VALUES ('../../escaped/x', '1-0', ?, 0, 'node', ?, NULL)", (seq, json.dumps(body)))
    finally:
        db.close()
    done = fusevault("check", vault)
    print(done.returncode, done.stdout[-1500:], done.stderr[-1500:])
    assert "internal error" not in done.stderr and "not a name fusevault makes" not in done.stderr
    assert "../../escaped/x" in done.stdout + done.stderr
    assert (tmp_path / "escaped" / "x.vf").read_bytes() == b"not the vault's"
