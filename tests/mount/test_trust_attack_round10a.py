"""Issue 22, attack round 10a: fusevault at 5f9522b (the ledger's ``where``, authorship ``settle`` and
``deleted``, repairing ``_place_of``), attacked through its entry points.

The owner, alice, has two devices (two state directories over one vault folder: her laptop and her
desktop, each with its own rollback ledger and so its own ``where``); bob is a WRITE grantee of her
folder team who can write the vault folder.  Each test asserts the SAFE behaviour; holes are marked
``xfail(strict=True)`` until closed: (3)-(6) were closed the same day, (1) and (2) by the owner's placement
stamp (vault/model/placement.py; docs/SECURITY.md, "Signed writes", names the tests; the stamp's own attacks
are tests/mount/test_trust_stamps.py).

Found at 5f9522b (each xfail test fails for the reason named):
- (1) FIXED: ``where`` is only what THIS device saw: alice moves private/diary.txt into team on her desktop,
  bob edits team/diary.txt (his grant allows it), and her laptop (last saw diary.txt in private) judges
  bob's document as a move out of private: a false alarm, and diary.txt is kept ``behind`` for good on
  the laptop: carol, given team there, never gets its key (a denial of the owner's own share).
- (2) FIXED: same root: bob's real deletion of team/diary.txt (moved there by alice on her desktop) is refused
  by the laptop: the deleted file comes back there.
- (3) FIXED: ``_place_of`` trusts ``was_at`` without ``hold_back``: the laptop last saw plan.txt in S; on her
  desktop alice moves it to P and shares S with bob (READ); its node document is damaged; the
  laptop's ``check --repair`` puts it back in S as a place she chose: bob gets its new key.
- (4) FIXED: a deleting writer writes the sealed ``trashed`` path (he holds the DEK): bob deletes
  team/plan.txt and re-signs the deletion with ``club/plan.txt`` (club: READ to carol); ``fusevault trash``
  shows that path with no alarm and ``restore`` puts the file in club: carol gets the key of team's plan.
  (The owner typed the path, but only the writer's word named it; the ledger's ``where`` knew team.)
- (5) FIXED: round 9a's graft, past its ``replaced_by`` fix: bob signs a node document of alice's trashed
  private/secret.txt under a DEK of his own (``owner_dek``, no key of hers needed) saying ``replaced_by``
  plan.txt and ``epoch`` 1 (so versions_of opens her versions with their own ``en_file_dek``), and
  plan.txt's ``previous`` = secret.txt: her ``restore team/plan.txt`` (undoing bob's edit) copies her
  secret into the file bob reads.
- (6) FIXED: ``behind`` escaped: bob moves alice's private/inner into team (kept behind, as it should), then
  signs a second document of it (same place, a newer counter) and damages private's node document:
  private is refused at load, so settle's ``_left`` drops it from the folders judged, the move looks
  like none, check_loaded (newer, not moved) ends ``behind``: inner's diary.txt key is sealed to bob.
  Control (no damage): holds.
Holds: the same-device control of (1); (6) without the damaged folder.
(1) and (2) now pass by her desktop's stamp, which bob's client carries over in his documents.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import adversary
import pytest
from attack_scenes import recipients_dek, resigned
from conftest import fusevault, mounted

from fusevault.crypto import aead
from fusevault.crypto.identity import seal_file_key
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64e
from fusevault.vault.model.nodes import open_node_attrs, open_node_doc
from mount.test_check import flip_enc
from mount.test_trust_attack_round7 import _keys_for, _share
from mount.test_trust_writes import BOB as BOB_SECRET
from mount.test_trust_writes import CAROL, PASSPHRASE, _admin, _key, _node_fid, _user


def _desktop(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """alice's second device: its own state directory (ledger, trash-seen, verified signatures)."""
    ctx = monkeypatch.context()
    patch = ctx.__enter__()
    patch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "desktop-state"))
    return ctx


def _on_desktop(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, vault: Path, mnt: Path, action) -> None:
    ctx = _desktop(monkeypatch, tmp_path)
    try:
        with mounted(vault, mnt):
            action(mnt)
    finally:
        ctx.__exit__(None, None, None)


def _team_and_private(vault: Path, tmp_path: Path, *users: str) -> Path:
    """bob (and carol) added; on alice's laptop: team/plan.txt, private/diary.txt, team shared with
    bob (WRITE)."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB_SECRET)
    if "carol" in users:
        _admin(vault, "user", "add", "carol", "--uid", "2002", passphrase=CAROL)
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "team").mkdir()
        (mnt / "private").mkdir()
        (mnt / "team" / "plan.txt").write_text("the plan")
        (mnt / "private" / "diary.txt").write_text("alice's diary, to share with her team")
        assert _share(mnt, "team", "bob", "WRITE") is not None
    return mnt


def _bob_edits(mnt: Path) -> None:
    """bob, in his mount, reads alice's team/diary.txt and writes it."""
    diary = mnt / "shared" / "alice" / "team" / "diary.txt"
    assert diary.read_text() == "alice's diary, to share with her team"
    diary.write_text("bob's edit of the team diary")


# --- (1) a writer's ordinary edit of a file the owner moved on her other device


def test_a_writers_edit_of_a_file_the_owner_moved_on_her_other_device_is_no_alarm(
        vault: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On her laptop alice keeps private/diary.txt and shares team with bob (WRITE).  On her desktop she
    moves diary.txt into team.  bob, through his own mount, writes team/diary.txt (his grant on team
    allows it).  alice mounts on her laptop again and shares team with carol (READ).  Safe: no warning
    in her status, and carol gets diary.txt's key (alice put it in team herself)."""
    mnt = _team_and_private(vault, tmp_path, "carol")
    carol = _user(vault, "carol")["_id"]
    _on_desktop(monkeypatch, tmp_path, vault, mnt,
                lambda m: (m / "private" / "diary.txt").rename(m / "team" / "diary.txt"))
    # A move into a shared folder seals the grantees' keys at the next unlock (fill_missing): the desktop's.
    _on_desktop(monkeypatch, tmp_path, vault, mnt, lambda m: None)
    with mounted(vault, mnt, "--user", "bob", passphrase=BOB_SECRET):
        _bob_edits(mnt)
    diary = _node_fid(vault, "alice", "diary.txt")
    with mounted(vault, mnt):
        status = fusevault("status", mnt).stdout
        print(status[-3000:])
        assert (mnt / "team" / "diary.txt").read_text() == "bob's edit of the team diary"
        assert _share(mnt, "team", "carol", "READ") is not None
    assert "WARNING" not in status, "alice's own move is alarmed as bob's"
    assert _keys_for(vault, carol, diary), "team's new reader got no key of the diary alice put there"


def test_control_a_writers_edit_of_a_file_moved_on_the_same_device_is_no_alarm(
        vault: Path, tmp_path: Path) -> None:
    """The same with alice's move made on her laptop: passes (the laptop's ``where`` knows it)."""
    mnt = _team_and_private(vault, tmp_path, "carol")
    carol = _user(vault, "carol")["_id"]
    with mounted(vault, mnt):
        (mnt / "private" / "diary.txt").rename(mnt / "team" / "diary.txt")
    with mounted(vault, mnt):
        pass  # its unlock seals the key to bob
    with mounted(vault, mnt, "--user", "bob", passphrase=BOB_SECRET):
        _bob_edits(mnt)
    diary = _node_fid(vault, "alice", "diary.txt")
    with mounted(vault, mnt):
        status = fusevault("status", mnt).stdout
        assert _share(mnt, "team", "carol", "READ") is not None
    assert "WARNING" not in status
    assert _keys_for(vault, carol, diary)


# --- (2) a writer's real deletion of a file the owner moved on her other device


def test_a_writers_deletion_of_a_file_the_owner_moved_to_him_on_her_other_device_is_taken(
        vault: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On her desktop alice moves private/diary.txt into team (WRITE to bob); bob deletes
    team/diary.txt through his mount.  alice mounts on her laptop.  Safe: team/diary.txt is gone (it
    is in her trash), no warning."""
    mnt = _team_and_private(vault, tmp_path)
    _on_desktop(monkeypatch, tmp_path, vault, mnt,
                lambda m: (m / "private" / "diary.txt").rename(m / "team" / "diary.txt"))
    _on_desktop(monkeypatch, tmp_path, vault, mnt, lambda m: None)  # seals the key to bob
    with mounted(vault, mnt, "--user", "bob", passphrase=BOB_SECRET):
        (mnt / "shared" / "alice" / "team" / "diary.txt").unlink()
    with mounted(vault, mnt):
        status = fusevault("status", mnt).stdout
        print(status[-3000:])
        left = sorted(os.listdir(mnt / "team")) + sorted(os.listdir(mnt / "private"))
    assert left == ["plan.txt"], f"bob's deletion was refused: {left}"
    assert "WARNING" not in status


def test_a_refused_deletion_never_leaves_the_file_in_no_folder(
        vault: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scene of (2), the safe side it stays on where no stamp tells her move: bob's deletion, made
    by his own client, names no folder (its links are empty) and carries no placement stamp (a client
    from before stamps); the laptop refuses it.  Safe: the file is not left in no folder (hidden
    from every listing, the trash included, for good): it is back where this device last saw it,
    private/diary.txt, with its bytes (found by the lead's review of (2)'s fix; failed before)."""
    mnt = _team_and_private(vault, tmp_path)
    _on_desktop(monkeypatch, tmp_path, vault, mnt,
                lambda m: (m / "private" / "diary.txt").rename(m / "team" / "diary.txt"))
    _on_desktop(monkeypatch, tmp_path, vault, mnt, lambda m: None)  # seals the key to bob
    diary = _node_fid(vault, "alice", "diary.txt")
    with mounted(vault, mnt, "--user", "bob", passphrase=BOB_SECRET):
        (mnt / "shared" / "alice" / "team" / "diary.txt").unlink()
    resigned(vault, diary, {"placed": None}, recipients_dek(vault, "bob", BOB_SECRET, diary), "bob",
             BOB_SECRET)
    with mounted(vault, mnt):
        print(fusevault("status", mnt).stdout[-3000:])
        listed = sorted(os.listdir(mnt / "private"))
        text = (mnt / "private" / "diary.txt").read_text() if listed == ["diary.txt"] else None
    assert listed == ["diary.txt"], f"the file whose deletion was refused is in no folder: {listed}"
    assert text == "alice's diary, to share with her team"


# --- (3) check --repair on a device whose ``where`` is older than the owner's move


def test_a_file_repaired_where_this_device_last_saw_it_gets_no_key_in_a_folder_it_left_elsewhere(
        vault: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On her laptop alice writes S/plan.txt.  On her desktop she moves it to P/plan.txt and shares S
    with bob (READ): bob never held plan.txt.  Its node document is damaged (a store writer); on the
    laptop alice runs ``check --repair``.  Safe: bob gets no key of plan.txt (at the repair, or at the
    laptop's next unlock)."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB_SECRET)
    bob = _user(vault, "bob")["_id"]
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "S").mkdir()
        (mnt / "P").mkdir()
        (mnt / "S" / "plan.txt").write_text("alice's private plan")

    def move_and_share(m: Path) -> None:
        (m / "S" / "plan.txt").rename(m / "P" / "plan.txt")
        assert _share(m, "S", "bob", "READ") is not None

    _on_desktop(monkeypatch, tmp_path, vault, mnt, move_and_share)
    fid = _node_fid(vault, "alice", "plan.txt")
    assert not _keys_for(vault, bob, fid)
    flip_enc(vault, fid)
    done = fusevault("check", vault, "--repair", "--json")
    print(done.stdout[-3000:], done.stderr[-2000:])
    assert json.loads(done.stdout)["repaired"] is True
    with mounted(vault, mnt):
        print(sorted(os.listdir(mnt / "S")), sorted(os.listdir(mnt / "P")))
    assert not _keys_for(vault, bob, fid), "bob was given the key of the plan alice moved out of S"
    assert adversary.get(vault, fid) is not None


# --- (4) a writer's deletion names where restore puts the file back


def test_a_writers_deletion_cannot_make_the_owners_restore_put_the_file_in_another_share(
        vault: Path, tmp_path: Path) -> None:
    """alice shares team (team/plan.txt) with bob (WRITE) and club (club/agenda.txt) with carol (READ).
    bob deletes team/plan.txt through his mount (his right), then signs its deleted document again with
    the sealed ``trashed`` path ``club/plan.txt`` (he holds its DEK).  alice lists her trash and restores
    the plan by the path it shows.  Safe: carol gets no key of plan.txt (it never was in club)."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB_SECRET)
    _admin(vault, "user", "add", "carol", "--uid", "2002", passphrase=CAROL)
    carol = _user(vault, "carol")["_id"]
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "team").mkdir()
        (mnt / "club").mkdir()
        (mnt / "team" / "plan.txt").write_text("team's plan, never for carol")
        (mnt / "club" / "agenda.txt").write_text("for carol")
        assert _share(mnt, "team", "bob", "WRITE") is not None
        assert _share(mnt, "club", "carol", "READ") is not None
    plan = _node_fid(vault, "alice", "plan.txt")
    with mounted(vault, mnt, "--user", "bob", passphrase=BOB_SECRET):
        (mnt / "shared" / "alice" / "team" / "plan.txt").unlink()
    doc = adversary.get(vault, plan)
    assert doc["delete"]
    dek = recipients_dek(vault, "bob", BOB_SECRET, plan)
    path, when = open_node_attrs(doc, dek)["trashed"]
    assert path == "team/plan.txt"
    resigned(vault, plan, {"trashed": ["club/plan.txt", when]}, dek, "bob", BOB_SECRET)
    with mounted(vault, mnt):
        listed = fusevault("trash", mnt)
        print(listed.stdout[-2000:], listed.stderr[-2000:])
        shown = "club/plan.txt" if "club/plan.txt" in listed.stdout else "team/plan.txt"
        done = fusevault("restore", mnt / shown)
        print(done.stdout[-2000:], done.stderr[-2000:])
        print(sorted(os.listdir(mnt / "team")), sorted(os.listdir(mnt / "club")))
    assert not _keys_for(vault, carol, plan), "carol was given the key of team's plan"


# --- (5) lineage: a writer's own key for the owner's trashed file makes it say ``replaced_by``


def test_a_writer_cannot_graft_the_owners_trashed_file_by_resealing_it_under_his_own_key(
        vault: Path, tmp_path: Path) -> None:
    """alice writes team/plan.txt, then private/secret.txt, and deletes secret.txt (her trash); team is
    WRITE to bob.  bob writes plan.txt (vandalism).  Then he signs a node document of secret.txt (still
    deleted) under a DEK of his own sealed to alice (``owner_dek``: no key of secret.txt needed), whose
    sealed attributes say ``replaced_by`` plan.txt and ``epoch`` 1; and a node document of plan.txt
    (his DEK of it) whose ``previous`` is secret.txt.  alice undoes bob's edit: ``restore
    team/plan.txt``.  Safe: team/plan.txt does not hold her secret (bob would read it)."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB_SECRET)
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "team").mkdir()
        (mnt / "private").mkdir()
        (mnt / "team" / "plan.txt").write_text("alice's plan")
        (mnt / "private" / "secret.txt").write_text("alice's secret, never for bob")
        secret = _node_fid(vault, "alice", "secret.txt")
        (mnt / "private" / "secret.txt").unlink()
        assert _share(mnt, "team", "bob", "WRITE") is not None
    with mounted(vault, mnt, "--user", "bob", passphrase=BOB_SECRET):
        (mnt / "shared" / "alice" / "team" / "plan.txt").write_text("bob's vandalism")
    plan = _node_fid(vault, "alice", "plan.txt")
    doc = adversary.get(vault, secret)
    assert doc["delete"]
    alice = _key(vault, "alice", PASSPHRASE)
    _, attrs = open_node_doc(doc, alice)  # read with her key for brevity: bob could write any he likes
    attrs.update(replaced_by=plan, epoch=1, seq=["bobs-device", 1])
    attrs.pop("trashed", None)
    bob = _key(vault, "bob", BOB_SECRET)
    dek = aead.new_key()
    owner = doc["owner"]
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig", "en_file_dek")}
    body["owner_dek"] = b64e(seal_file_key(alice.identity.box.public_key(), owner, owner, secret, 0, dek))
    body["epoch"] = 0
    body["enc"] = b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", secret)))
    adversary.put(vault, sign_doc(bob.user_id, bob.identity.sign, body))
    resigned(vault, plan, {"previous": secret}, recipients_dek(vault, "bob", BOB_SECRET, plan), "bob",
             BOB_SECRET)
    with mounted(vault, mnt):
        history = fusevault("history", mnt / "team" / "plan.txt")
        print(history.stdout[-3000:], history.stderr[-2000:])
        done = fusevault("restore", mnt / "team" / "plan.txt")
        print(done.stdout[-2000:], done.stderr[-2000:])
        now = (mnt / "team" / "plan.txt").read_text()
    with mounted(vault, mnt, "--user", "bob", passphrase=BOB_SECRET):
        bobs = (mnt / "shared" / "alice" / "team" / "plan.txt").read_text()
    print("bob reads:", bobs)
    assert "secret" not in now, "alice's private trashed secret was copied into team/plan.txt"


# --- (6) a file kept behind leaves ``behind`` once the folder it left is not held at an unlock


def _bobs_move_of(vault: Path, fid: str, links: list, n: int, extra: dict | None = None) -> None:
    """test_trust_places.py's ``_bobs_move`` with bob's device counter ``n`` (and ``extra``
    sealed attributes)."""
    doc = adversary.get(vault, fid)
    alice = _key(vault, "alice", PASSPHRASE)
    _, attrs = open_node_doc(doc, alice)  # read with her key for brevity: bob could write any he likes
    attrs["links"] = links
    attrs["seq"] = ["bobs-device", n]
    attrs.update(extra or {})
    bob = _key(vault, "bob", BOB_SECRET)
    dek = aead.new_key()
    owner = doc["owner"]
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig", "en_file_dek")}
    body["owner_dek"] = b64e(seal_file_key(alice.identity.box.public_key(), owner, owner, fid, 0, dek))
    body["epoch"] = 0
    body["enc"] = b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", fid)))
    adversary.put(vault, sign_doc(bob.user_id, bob.identity.sign, body))


@pytest.mark.parametrize("damaged", [
    True,
    False,  # the control: bob's second document alone keeps it behind
])
def test_a_folder_kept_behind_does_not_escape_when_the_folder_it_left_is_damaged(
        vault: Path, tmp_path: Path, damaged: bool) -> None:
    """alice keeps private/inner/diary.txt and shares team with bob (WRITE).  bob moves inner into team
    (a document of his, a key of his own): at her unlock it is kept behind, bob gets no key of the
    diary (test_trust_places.py's first test).  Then bob signs a second such document (his counter
    2, the same place) and damages private's node document (one flipped byte: a store writer).  alice
    unlocks again.  Safe: still no key of diary.txt is sealed to bob."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB_SECRET)
    bob = _user(vault, "bob")["_id"]
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "team").mkdir()
        (mnt / "private" / "inner").mkdir(parents=True)
        (mnt / "private" / "inner" / "diary.txt").write_text("alice's own")
        (mnt / "team" / "plan.txt").write_text("the plan")
        assert _share(mnt, "team", "bob", "WRITE") is not None
    diary, team, inner, private = (_node_fid(vault, "alice", n)
                                   for n in ("diary.txt", "team", "inner", "private"))
    _bobs_move_of(vault, inner, [[team, "inner"]], 1)
    with mounted(vault, mnt):
        first = fusevault("status", mnt).stdout
        print(first[-2000:])
    assert "no share there gets its key" in first
    assert not _keys_for(vault, bob, diary)
    _bobs_move_of(vault, inner, [[team, "inner"]], 2)
    if damaged:
        flip_enc(vault, private)
    with mounted(vault, mnt):
        print(fusevault("status", mnt).stdout[-2000:])
        print(sorted(os.listdir(mnt)), sorted(os.listdir(mnt / "team")))
    assert not _keys_for(vault, bob, diary), "diary.txt's key was sealed to bob"
