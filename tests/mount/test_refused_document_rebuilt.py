"""Issue 22: a refused document of the user's OWN node (not hers, not admitted) hides nothing of hers.

Before, at unlock a node whose newest document was refused was left out (ENOENT), and a refused folder took
everything under it along: a READ recipient of alice's folder who signed any document of it (a rename, a
chmod) hid her folder and all under it from her at every unlock.  Now it is rebuilt from her own material,
as a refused deletion is (vault/tree/undeleting.py), with an alarm naming the file and why.

alice, the owner; bob, a READ recipient of her folder private (or of her file private/notes.txt) who can
write the vault folder.  Each test asserts the SAFE behaviour.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import adversary
from attack_scenes import recipients_dek, resigned_by_bob, scene, share
from conftest import fusevault, laptop_and_desktop, mounted, remount, settled, wait_for

from fusevault import paths
from fusevault.vault.model.nodes import open_node_attrs, open_node_doc
from mount.test_trust_attack_round11 import _notes_read_to_bob
from mount.test_trust_writes import BOB as BOB_SECRET
from mount.test_trust_writes import PASSPHRASE, _key, _node_fid


def _private_read_to_bob(vault: Path, tmp_path: Path) -> tuple[Path, str]:
    """alice's folder private (0750) holding a.txt and sub/b.txt, and a folder other, private shared READ
    with bob.  Returned: the mount point and private's id."""
    mnt = scene(vault, tmp_path, {"private": None, "other": None, "private/a.txt": "alice's a",
                                  "private/sub": None, "private/sub/b.txt": "alice's b"})
    with mounted(vault, mnt):
        os.chmod(mnt / "private", 0o750)
        assert share(mnt, "private", "bob", "READ") is not None
    return mnt, _node_fid(vault, "alice", "private")


def _links(vault: Path, fid: str) -> list[list[str]]:
    return open_node_doc(adversary.get(vault, fid), _key(vault, "alice", PASSPHRASE))[1]["links"]


def _as_hers(mnt: Path) -> None:
    """private, where and as she left it, with everything under it, hers."""
    assert sorted(os.listdir(mnt / "private")) == ["a.txt", "sub"]
    assert stat.S_IMODE(os.stat(mnt / "private").st_mode) == 0o750
    assert (mnt / "private" / "a.txt").read_text() == "alice's a"
    assert (mnt / "private" / "sub" / "b.txt").read_text() == "alice's b"


def _forget_types(vault: Path) -> None:
    """alice's ledger as one from before ``kinds`` (or a state this device never typed): no node's type."""
    key = _key(vault, "alice", PASSPHRASE)
    path = paths.state_dir() / "ledger" / paths.record_name(vault, key.user_id)
    data = json.loads(key.unseal_device("ledger", path.name, path.read_bytes()))
    data["kinds"] = {}
    path.write_bytes(key.seal_device("ledger", path.name, json.dumps(data).encode()))


def test_a_read_recipients_retyping_of_her_file_rebuilt_keeps_her_folders_link_count(
        vault: Path, tmp_path: Path) -> None:
    """bob (READ on private/notes.txt) signs its document as an empty folder, on a device whose ledger
    knows no types.  Refused, and rebuilt a file from her versions (``rebuilt_in_place``).  Safe: it reads
    her text and private's link count is 2 (no folder in it): before, the rebuilt node was unlinked from
    private after it had become a file, so private kept counting it as a subfolder (st_nlink 3)."""
    mnt, notes, _old = _notes_read_to_bob(vault, tmp_path)
    _forget_types(vault)
    resigned_by_bob(vault, notes, {"mode": stat.S_IFDIR | 0o700})
    with mounted(vault, mnt):
        status = fusevault("status", mnt).stdout
        print(status[-1500:])
        assert (mnt / "private" / "notes.txt").read_text() == "second: alice's final text"
        assert os.stat(mnt / "private").st_nlink == 2
    assert notes in status and "rebuilt" in status


def test_a_read_recipients_rename_and_chmod_of_her_folder_hides_nothing(vault: Path, tmp_path: Path) -> None:
    """bob signs private's document renamed "bobs" and 0777.  Refused (READ).  Safe: at alice's next mount
    private is there under its name, 0750, with a.txt and sub/b.txt hers, and an alarm names it (it was
    left out, with everything under it)."""
    mnt, private = _private_read_to_bob(vault, tmp_path)
    links = _links(vault, private)
    resigned_by_bob(vault, private, {"links": [[parent, "bobs"] for parent, _ in links],
                                     "mode": stat.S_IFDIR | 0o777})
    with mounted(vault, mnt):
        status = fusevault("status", mnt).stdout
        print(status[-1500:], os.listdir(mnt))
        assert not (mnt / "bobs").exists()
        _as_hers(mnt)
    assert private in status and "rebuilt" in status


def test_a_read_recipients_rename_and_chmod_of_her_file_hides_nothing(vault: Path, tmp_path: Path) -> None:
    """bob (READ on private/notes.txt) signs its document renamed "gone.txt" and 0666.  Safe: notes.txt is
    there, 0600 as she left it, reading her last text, with an alarm."""
    mnt, notes, _old = _notes_read_to_bob(vault, tmp_path)
    with mounted(vault, mnt):
        before = stat.S_IMODE(os.stat(mnt / "private" / "notes.txt").st_mode)
    resigned_by_bob(vault, notes, {"links": [[parent, "gone.txt"] for parent, _ in _links(vault, notes)],
                                   "mode": stat.S_IFREG | 0o666})
    with mounted(vault, mnt):
        status = fusevault("status", mnt).stdout
        print(status[-1500:])
        assert sorted(os.listdir(mnt / "private")) == ["notes.txt"]
        assert (mnt / "private" / "notes.txt").read_text() == "second: alice's final text"
        assert stat.S_IMODE(os.stat(mnt / "private" / "notes.txt").st_mode) == before
    assert notes in status and "rebuilt" in status


def test_a_refused_rename_naming_her_other_folder_takes_nothing_of_it(vault: Path, tmp_path: Path) -> None:
    """Abuse: bob's refused document of private names it "other" (her other folder's name) inside other,
    then a dot name.  Safe: both her folders are where they were, neither inside the other nor hidden."""
    mnt, private = _private_read_to_bob(vault, tmp_path)
    other = _node_fid(vault, "alice", "other")
    resigned_by_bob(vault, private, {"links": [[other, "other"], [other, ".hidden"]]})
    with mounted(vault, mnt):
        assert sorted(p for p in os.listdir(mnt) if p in ("private", "other")) == ["other", "private"]
        assert os.listdir(mnt / "other") == []
        _as_hers(mnt)


def test_a_refused_rename_to_a_dot_name_hides_nothing(vault: Path, tmp_path: Path) -> None:
    """Abuse: bob's refused document names private ".private" where it is.  Safe: "private" as she left it."""
    mnt, private = _private_read_to_bob(vault, tmp_path)
    resigned_by_bob(vault, private, {"links": [[parent, ".private"] for parent, _ in _links(vault, private)]})
    with mounted(vault, mnt):
        assert not (mnt / ".private").exists()
        _as_hers(mnt)


def test_a_refused_replay_of_her_own_older_rename_puts_nothing_back(vault: Path, tmp_path: Path) -> None:
    """Abuse: alice moves private into other as "old", then back as "private".  bob signs her older
    document's attributes (its names and her placement stamp of then, which he kept from the store) as
    private's document.  Refused.  Safe: "private" where she left it, other empty, nothing hidden."""
    mnt, private = _private_read_to_bob(vault, tmp_path)
    with mounted(vault, mnt):
        (mnt / "private").rename(mnt / "other" / "old")
    older = open_node_attrs(adversary.get(vault, private), recipients_dek(vault, "bob", BOB_SECRET, private))
    with mounted(vault, mnt):
        (mnt / "other" / "old").rename(mnt / "private")
    resigned_by_bob(vault, private, older)
    with mounted(vault, mnt):
        status = fusevault("status", mnt).stdout
        print(status[-1500:])
        assert os.listdir(mnt / "other") == []
        _as_hers(mnt)
    assert private in status and "rebuilt" in status


def test_a_document_of_her_folder_not_admitted_hides_nothing(vault: Path, tmp_path: Path) -> None:
    """bob's document of private renamed "bobs", its signature made to say alice's (a forgery: it does not
    hold).  Not admitted.  Safe: private as she left it, with everything under it, and an alarm."""
    mnt, private = _private_read_to_bob(vault, tmp_path)
    resigned_by_bob(vault, private, {"links": [[parent, "bobs"] for parent, _ in _links(vault, private)]})
    forged = adversary.get(vault, private)
    forged["sig"] = {**forged["sig"], "by": _key(vault, "alice", PASSPHRASE).user_id}
    adversary.put(vault, forged)
    with mounted(vault, mnt):
        status = fusevault("status", mnt).stdout
        print(status[-1500:])
        assert not (mnt / "bobs").exists()
        _as_hers(mnt)
    assert private in status and "rebuilt" in status


def test_a_replay_of_her_own_older_document_signed_by_her_puts_nothing_back(vault: Path,
                                                                            tmp_path: Path) -> None:
    """Abuse (issue 22, "rollback is silent"): alice moves private into other as "old", then back as
    "private", on this device.  A store writer puts her own older document of private back (validly
    signed by her, its seq this device's, lower than the one it stamped since) as the store's newest
    row.  Safe: at her next unlock "private" is where she left it, other empty, nothing hidden, and a
    rollback alarm names it (vault/tree/rebuilding.py ``replays_refused``).  Before, "old" showed in
    other (said, but taken: only a document another signed was rebuilt)."""
    mnt, private = _private_read_to_bob(vault, tmp_path)
    with mounted(vault, mnt):
        (mnt / "private").rename(mnt / "other" / "old")
    older = adversary.get(vault, private)
    with mounted(vault, mnt):
        (mnt / "other" / "old").rename(mnt / "private")
    adversary.put(vault, older)  # her own older body, as the newest revision
    with mounted(vault, mnt):
        status = fusevault("status", mnt).stdout
        print(status[-1500:], os.listdir(mnt), os.listdir(mnt / "other"))
        assert os.listdir(mnt / "other") == []
        _as_hers(mnt)
    assert private in status and "rollback" in status


def test_a_move_of_her_folder_made_on_her_other_device_is_taken_without_alarm(tmp_path: Path) -> None:
    """False alarm guard for the test above: the laptop moves private away and back (its own numbers
    grow), then her desktop moves it into other as "moved" (the desktop's numbers, lower).  Safe: at the
    laptop's next unlock other/moved is hers, with a.txt, and no rollback is said."""
    with laptop_and_desktop(tmp_path, ()) as (_server, laptop, a, desktop):
        (a / "private").mkdir()
        (a / "other").mkdir()
        (a / "private" / "a.txt").write_text("alice's a")
        (a / "private").rename(a / "other" / "old")
        (a / "other" / "old").rename(a / "private")
        wait_for(lambda: settled(a), "the laptop's push")
        with mounted(desktop, tmp_path / "b") as b:
            wait_for(lambda: (b / "private" / "a.txt").exists(), "the desktop's pull")
            (b / "private").rename(b / "other" / "moved")
            wait_for(lambda: settled(b), "the desktop's push")
        wait_for(lambda: (a / "other" / "moved").exists(), "the laptop's pull")
        with remount(laptop, a):
            status = fusevault("status", a, passphrase=None).stdout
            print(status[-1500:])
            assert sorted(os.listdir(a)) == ["other"]
            assert (a / "other" / "moved" / "a.txt").read_text() == "alice's a"
        assert "rollback" not in status
