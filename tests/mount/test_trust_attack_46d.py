"""Round 46d (1), (2) at a mount (tests/unit/test_attack_46d.py: attack, cause, impact, fix).

(2): her unshare re-keys in place a file a member moved, and that commit signs her first stamp of where it
sits; beside it, her laptop's later move (made apart) is undone.  Scene: proj/ shared WRITE with bob,
proj/notes.txt hers, proj/sub/ and proj/archive/ hers.  bob moves notes.txt into proj/sub (his state
carries her stamp of proj).  Both her devices mounted; the server goes away; the desktop unshares bob
(notes.txt re-keyed in place, its contents sealed again: rule 3; its commit signs a stamp of proj/sub);
later the laptop moves proj/sub/notes.txt -> proj/archive/notes.txt.  The server comes back.
Seen (1 run, 08:54 UTC): both devices show proj/sub/notes.txt (the laptop's later move undone, nothing
said of it).  Control: the same with her laptop making the move into proj/sub (her stamp of proj/sub, the
unshare signs none): the later move stands.
Tests: ``test_her_later_move_beside_her_unshare_of_a_file_bob_moved_is_kept`` (passes since the fix: the
unshare's commit keeps the stamp it had, ``inodes._places_it``),
``test_control_her_later_move_beside_her_unshare_of_a_file_she_moved_is_kept``.

(1): priv/ and proj/ each shared WRITE with bob; bob moves priv/x -> proj/x; she unshares priv from bob;
server away; the desktop moves proj/x -> priv/x (out of bob's share, re-keyed, no new stamp: priv is her
stamp's folder) and writes "private now"; later the laptop renames proj/x -> proj/y.  Seen (1 run, 08:58
UTC): both devices show proj/y, reading "private now", and bob's key file opens the current document.
Control (the desktop moves it to the top: a new stamp): x stays out, bob opens nothing.
Tests: ``test_her_move_out_to_the_folder_her_stamp_names_stays_out_of_the_share`` (passes since the fix),
``test_control_her_move_out_to_another_folder_stays_out_of_the_share``.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import adversary
import pytest
from attack_scenes import recipients_dek
from conftest import PouchServer, fusevault, mounted, new_device, settled, wait_for

from fusevault.vault.model.nodes import open_node_attrs
from mount.test_trust_attack_39b import _proj_with_bob
from mount.test_trust_attack_42b import _said
from mount.test_trust_writes import BOB, _node_fid

# The scenes stop the server and start it again: the devices retry it every second (conftest.py).
pytestmark = pytest.mark.usefixtures("quick_retry")


def _unshare_beside_her_later_move_of_bobs_move(tmp_path: Path, by_bob: bool = True) -> dict[str, object]:
    """``by_bob`` False (the control): her laptop makes the move into proj/sub, not bob."""
    seen: dict[str, object] = {}
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop, bobs = _proj_with_bob(url, tmp_path, "WRITE")
        a, b, m = tmp_path / "a", tmp_path / "b", tmp_path / "m"
        with mounted(laptop, a):
            (a / "proj" / "sub").mkdir()
            (a / "proj" / "archive").mkdir()
            if not by_bob:
                os.rename(a / "proj" / "notes.txt", a / "proj" / "sub" / "notes.txt")
            wait_for(lambda: settled(a), "folders pushed")
        if by_bob:
            with mounted(bobs, m, "--user", "bob", passphrase=BOB):
                theirs = m / "shared" / "alice" / "proj"
                wait_for(lambda: (theirs / "sub").exists() and (theirs / "notes.txt").exists(), "bob sees")
                os.rename(theirs / "notes.txt", theirs / "sub" / "notes.txt")
                wait_for(lambda: settled(m), "bob's move pushed")
        fid = _node_fid(laptop, "alice", "notes.txt")
        old = adversary.Server(url).get(fid)
        assert old is not None
        desktop = new_device(url, tmp_path, "desktop")
        with mounted(laptop, a), mounted(desktop, b):
            wait_for(lambda: settled(a) and settled(b) and (a / "proj" / "sub" / "notes.txt").exists()
                     and (b / "proj" / "sub" / "notes.txt").exists(), "both see bob's move")
            server.kill()
            unshared = fusevault("unshare", b / "proj", "--with", "bob")
            assert unshared.returncode == 0, unshared.stderr
            wait_for(lambda: (adversary.get(desktop, fid) or {}).get("epoch", 0) > old.get("epoch", 0),
                     "the unshare's re-key")
            time.sleep(1.5)
            os.rename(a / "proj" / "sub" / "notes.txt", a / "proj" / "archive" / "notes.txt")
            time.sleep(1.5)
            server.start()

            def where(mnt: Path) -> list[str]:
                return sorted(str(p.relative_to(mnt)) for p in mnt.rglob("*"))

            with contextlib.suppress(pytest.fail.Exception):  # what each shows is the verdict
                wait_for(lambda: settled(a) and settled(b) and where(a) == where(b), "agreed", timeout=40)
            time.sleep(2)
            seen["laptop"] = where(a), _said(a)
            seen["desktop"] = where(b), _said(b)
    finally:
        server.stop()
    return seen


def test_her_later_move_beside_her_unshare_of_a_file_bob_moved_is_kept(tmp_path: Path) -> None:
    seen = _unshare_beside_her_later_move_of_bobs_move(tmp_path)
    print(seen)
    for device in ("laptop", "desktop"):
        shown, _ = seen[device]  # type: ignore[misc]
        assert "proj/archive/notes.txt" in shown and "proj/sub/notes.txt" not in shown, (device, seen)


def test_control_her_later_move_beside_her_unshare_of_a_file_she_moved_is_kept(tmp_path: Path) -> None:
    seen = _unshare_beside_her_later_move_of_bobs_move(tmp_path, by_bob=False)
    print(seen)
    for device in ("laptop", "desktop"):
        shown, _ = seen[device]  # type: ignore[misc]
        assert "proj/archive/notes.txt" in shown and "proj/sub/notes.txt" not in shown, (device, seen)


# --- 46d (1): her move out of bob's share to the folder her stamp still names


def _moved_back_out_beside_her_rename(tmp_path: Path, dest: str = "priv") -> dict[str, object]:
    """priv/x hers, priv/ and proj/ each shared WRITE with bob; bob moves priv/x -> proj/x (his state
    carries her stamp of priv); she unshares priv from bob.  Both her devices mounted; the server goes
    away; the desktop moves proj/x -> priv/x (out of bob's share: re-keyed; no new stamp, priv being the
    stamp's own folder); later the laptop renames proj/x -> proj/y.  The server comes back.  ``dest``
    "top" (the control): the desktop moves it to the top instead (a folder her stamp does not name)."""
    seen: dict[str, object] = {}
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop, bobs = _proj_with_bob(url, tmp_path, "WRITE")
        a, b, m = tmp_path / "a", tmp_path / "b", tmp_path / "m"
        with mounted(laptop, a):
            (a / "priv").mkdir()
            (a / "priv" / "x").write_text("hers")
            shared = fusevault("share", a / "priv", "--with", "bob", "--perm", "WRITE")
            assert shared.returncode == 0, shared.stderr
            wait_for(lambda: settled(a), "priv shared")
        with mounted(bobs, m, "--user", "bob", passphrase=BOB):
            theirs = m / "shared" / "alice"
            wait_for(lambda: (theirs / "priv" / "x").exists() and (theirs / "proj").exists(), "bob sees")
            os.rename(theirs / "priv" / "x", theirs / "proj" / "x")
            wait_for(lambda: settled(m), "bob's move pushed")
        fid = _node_fid(laptop, "alice", "x")
        desktop = new_device(url, tmp_path, "desktop")
        with mounted(laptop, a), mounted(desktop, b):
            wait_for(lambda: settled(a) and settled(b) and (a / "proj" / "x").exists()
                     and (b / "proj" / "x").exists(), "both see bob's move")
            unshared = fusevault("unshare", b / "priv", "--with", "bob")
            assert unshared.returncode == 0, unshared.stderr
            time.sleep(2)
            wait_for(lambda: settled(a) and settled(b), "the unshare taken")
            old = adversary.get(desktop, fid) or {}
            server.kill()
            out = b / "priv" / "x" if dest == "priv" else b / "x"
            os.rename(b / "proj" / "x", out)
            wait_for(lambda: (adversary.get(desktop, fid) or {}).get("epoch", 0) > old.get("epoch", 0),
                     "the move out's re-key")
            out.write_text("private now")
            time.sleep(1.5)
            os.rename(a / "proj" / "x", a / "proj" / "y")
            time.sleep(1.5)
            server.start()

            def where(mnt: Path) -> list[str]:
                return sorted(str(p.relative_to(mnt)) for p in mnt.rglob("*"))

            with contextlib.suppress(pytest.fail.Exception):  # what each shows is the verdict
                wait_for(lambda: settled(a) and settled(b) and where(a) == where(b), "agreed", timeout=40)
            time.sleep(2)
            seen["laptop"] = where(a), _said(a)
            seen["desktop"] = where(b), _said(b)
            with contextlib.suppress(OSError):
                seen["proj/y reads"] = (a / "proj" / "y").read_text()
        try:
            current = adversary.Server(url).get(fid) or {}
            open_node_attrs(current, recipients_dek(laptop, "bob", BOB, fid))
            seen["bob opens"] = True
        except Exception:  # noqa: BLE001  (no key of his, or not this one: he opens nothing)
            seen["bob opens"] = False
    finally:
        server.stop()
    return seen


def test_her_move_out_to_the_folder_her_stamp_names_stays_out_of_the_share(tmp_path: Path) -> None:
    seen = _moved_back_out_beside_her_rename(tmp_path)
    print(seen)
    for device in ("laptop", "desktop"):
        shown, _ = seen[device]  # type: ignore[misc]
        assert "priv/x" in shown and not any(p.startswith("proj/x") or p == "proj/y" for p in shown), \
            (device, seen)
    assert not seen["bob opens"], seen


def test_control_her_move_out_to_another_folder_stays_out_of_the_share(tmp_path: Path) -> None:
    seen = _moved_back_out_beside_her_rename(tmp_path, "top")
    print(seen)
    for device in ("laptop", "desktop"):
        shown, _ = seen[device]  # type: ignore[misc]
        assert "x" in shown and not any(p.startswith("proj/x") or p == "proj/y" for p in shown), \
            (device, seen)
    assert not seen["bob opens"], seen
