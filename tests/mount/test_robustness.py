"""Crashes, tampering, read-only and full disks: never wrong bytes, never a broken vault."""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import force_unmount, fusevault, is_mounted, mounted, server_pids

STDLIB = Path(os.__file__).parent


def make_archive(tmp_path: Path) -> tuple[Path, Path]:
    """A tar of a few thousand real files (part of the standard library)."""
    archive = tmp_path / "stdlib.tar"
    subprocess.run(["tar", "cf", archive, "--exclude=site-packages", "--exclude=__pycache__",
                    "-C", STDLIB.parent, STDLIB.name], check=True)
    return archive, STDLIB


def kill_server(mnt: Path) -> None:
    pids = server_pids(mnt)
    assert pids, "no server process found"
    force_unmount(mnt)


def test_kill_9_during_tar_x_loses_no_closed_file(vault: Path, tmp_path: Path) -> None:
    archive, source = make_archive(tmp_path)
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        tar = subprocess.Popen(["tar", "xf", archive, "-C", mnt], stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while sum(1 for _ in (mnt / source.name).rglob("*")) < 800:  # well into the archive
                assert time.monotonic() < deadline and tar.poll() is None
                time.sleep(0.1)
            kill_server(mnt)
            tar.wait(30)
        finally:
            tar.kill()  # whatever happened: never left writing
            tar.wait()
    assert not is_mounted(mnt)
    with mounted(vault, mnt):
        files = [p for p in (mnt / source.name).rglob("*") if p.is_file() and not p.is_symlink()]
        assert len(files) >= 500
        unfinished = []
        for path in files:
            original = (source / path.relative_to(mnt / source.name)).read_bytes()
            data = path.read_bytes()
            if data != original:
                unfinished.append(path)
                assert original.startswith(data)  # the file tar was writing: never foreign bytes
        assert len(unfinished) <= 1, unfinished


# Files are made in the mount's root through a descriptor of it, never by path: once the mount is gone
# (killed, then lazily detached) a path names the empty folder under it, and a writer by path went on
# writing there until the disk was full (67 GB on a run where the kill came between two files).
WRITER = textwrap.dedent("""
    import os, sys
    mnt, log = sys.argv[1], sys.argv[2]
    root = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    i = 0
    with open(log, "a") as journal:
        while True:
            name = f"f{i:05d}"
            data = (f"{i}:" * (1 + i % 5000)).encode()
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=root)
            with open(fd, "wb") as f:
                f.write(data)
                if i % 3 == 0:
                    f.flush(); os.fsync(f.fileno())
            journal.write(f"{mnt}/{name}\\n"); journal.flush()
            i += 1
""")


def test_kill_9_keeps_every_closed_or_fsynced_file(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    journal = tmp_path / "journal"
    with mounted(vault, mnt):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(mnt), str(journal)],
                                  stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not journal.exists() or len(journal.read_text().splitlines()) < 300:
                assert time.monotonic() < deadline and writer.poll() is None
                time.sleep(0.05)
            kill_server(mnt)
            writer.wait(30)
        finally:
            writer.kill()  # whatever happened: never left writing
            writer.wait()
    written = journal.read_text().splitlines()
    with mounted(vault, mnt):
        for name in written:
            i = int(Path(name).name[1:])
            assert Path(name).read_bytes() == (f"{i}:" * (1 + i % 5000)).encode(), name


# --- tampering: flip one byte in each kind of stored object


@pytest.fixture
def sample(vault: Path, tmp_path: Path) -> dict:
    with mounted(vault, tmp_path / "mnt") as mnt:
        victim = os.urandom(300_000)
        (mnt / "victim").write_bytes(victim)
        (mnt / "bystander").write_text("unharmed")
    own = next((vault / "users").glob("*/own"))
    return {"vault": vault, "mnt": tmp_path / "mnt", "own": own, "victim": victim}


def _vf_of_largest(own: Path) -> Path:
    return max(own.glob("*.vf"), key=lambda p: p.stat().st_size)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _read_gives_eio(sample: dict) -> None:
    with mounted(sample["vault"], sample["mnt"]) as mnt:
        with pytest.raises(OSError) as info:
            (mnt / "victim").read_bytes()
        assert info.value.errno == errno.EIO
        assert (mnt / "bystander").read_text() == "unharmed"  # the server is still serving
        assert sorted(os.listdir(mnt)) == ["bystander", "victim"]


@pytest.mark.parametrize("where", ["block", "header", "manifest", "length"])
def test_flipped_byte_in_vf_gives_eio(sample: dict, where: str) -> None:
    vf = _vf_of_largest(sample["own"])
    offset = {"block": 5000, "header": 6, "manifest": vf.stat().st_size - 20, "length": 24}[where]
    _flip(vf, offset)
    _read_gives_eio(sample)


def test_truncated_vf_gives_eio(sample: dict) -> None:
    vf = _vf_of_largest(sample["own"])
    os.truncate(vf, vf.stat().st_size // 2)
    _read_gives_eio(sample)


def test_flipped_byte_in_vfmeta_gives_eio(sample: dict) -> None:
    vfmeta = _vf_of_largest(sample["own"]).with_suffix(".vfmeta")
    fields = json.loads(vfmeta.read_text())
    fields["ACL"] = ["00000000000000000000000000000000:WRITE"]
    vfmeta.write_text(json.dumps(fields))
    _read_gives_eio(sample)


def test_swapped_vf_between_files_gives_eio(sample: dict) -> None:
    victim = _vf_of_largest(sample["own"])
    other = min(sample["own"].glob("*.vf"), key=lambda p: p.stat().st_size)
    shutil.copy(other, victim)
    _read_gives_eio(sample)


def _edit_doc(vault: Path, doc_type: str, change) -> None:
    db = sqlite3.connect(vault / "store.sqlite")
    rows = db.execute("SELECT id, body FROM docs WHERE type = ?", (doc_type,)).fetchall()
    doc_id, body = max(rows, key=lambda r: len(r[1]))
    body = json.loads(body)
    change(body)
    db.execute("UPDATE docs SET body = ? WHERE id = ?", (json.dumps(body), doc_id))
    db.commit()
    db.close()


def _flip_b64(body: dict, field: str) -> None:
    raw = bytearray(base64.b64decode(body[field]))
    raw[len(raw) // 2] ^= 0x01
    body[field] = base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("field", ["enc", "en_file_dek"])
def test_a_flipped_node_document_is_refused_and_said_and_the_rest_serves(sample: dict, field: str) -> None:
    # Since documents are signed, one that fails its signature is refused like a forged one
    # (docs/SECURITY.md "Signed writes"), with a warning, and the rest of the drive serves.  Her own
    # file is rebuilt from what she signed (its newest version: tests/mount/test_refused_document_rebuilt.py),
    # never from the damaged document: served, it holds exactly her bytes.
    _edit_doc(sample["vault"], "node", lambda body: _flip_b64(body, field))
    result = fusevault("mount", sample["vault"], sample["mnt"])
    assert "Traceback" not in result.stderr
    if result.returncode != 0:  # the damaged one was the root: nothing to serve
        assert result.returncode == 5 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert not is_mounted(sample["mnt"])
        return
    try:
        names = {p.name for p in sample["mnt"].iterdir()}
        assert names <= {"victim", "bystander"}, names  # nothing the damaged document names
        if "bystander" in names:
            assert (sample["mnt"] / "bystander").read_text() == "unharmed"
        if "victim" in names:
            assert (sample["mnt"] / "victim").read_bytes() == sample["victim"]
        status = fusevault("status", sample["mnt"], passphrase=None).stdout
        assert "WARNING" in status and "refused" in status, status
    finally:
        fusevault("unmount", sample["mnt"], passphrase=None)


def _keys_not_remembered() -> None:
    """This device forgets her key fields (vault/model/key_memory.py): as a device that never saw them,
    it has only the store's body to go by."""
    for kept in (Path(os.environ["FUSEVAULT_STATE_DIR"]) / "confirmed").glob("*.keys"):
        kept.unlink()


@pytest.mark.parametrize("field", ["en_master_kek", "salt", "iv", "en_validation_string"])
def test_flipped_key_material_refuses_to_mount(sample: dict, field: str) -> None:
    _edit_doc(sample["vault"], "UserDetails", lambda body: _flip_b64(body, field))
    _keys_not_remembered()
    result = fusevault("mount", sample["vault"], sample["mnt"])
    assert result.returncode == 5 and "damaged" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_forged_key_material_with_fixed_checksum_is_still_refused(sample: dict) -> None:
    from fusevault.crypto.keys import checksum

    def forge(body: dict) -> None:
        _flip_b64(body, "en_validation_string")
        body["checksum"] = checksum(body)

    _edit_doc(sample["vault"], "UserDetails", forge)
    _keys_not_remembered()
    result = fusevault("mount", sample["vault"], sample["mnt"])
    assert result.returncode in (3, 5) and "Traceback" not in result.stderr
    assert not is_mounted(sample["mnt"])


def test_flipped_key_material_on_a_device_that_remembers_her_keys_is_said_and_not_used(sample: dict) -> None:
    """The device remembers her key fields (signed by her): a store body whose fields were changed is
    not used; her passphrase opens her vault with the remembered ones, and the change is said."""
    _edit_doc(sample["vault"], "UserDetails", lambda body: _flip_b64(body, "en_master_kek"))
    with mounted(sample["vault"], sample["mnt"]) as mnt:
        status = json.loads(fusevault("status", mnt, "--json", passphrase=None).stdout)
        (mount,) = status["mounts"]
        assert any(a["kind"] == "rollback" and a["subject"].startswith("keys ") for a in mount["alarms"]), (
            mount["alarms"])


def test_damaged_vault_json_is_a_clear_error(sample: dict) -> None:
    (sample["vault"] / "vault.json").write_text("{not json")
    result = fusevault("mount", sample["vault"], sample["mnt"])
    assert result.returncode == 5 and "vault.json" in result.stderr and "damaged" in result.stderr


# --- read-only and full disks


def test_read_only_vault_is_refused_clearly(vault: Path, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(["mount", "--bind", vault, ro], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", ro], check=True)
        mnt = tmp_path / "mnt"
        mnt.mkdir()
        result = fusevault("mount", ro, mnt)
        assert result.returncode == 8 and "read-only" in result.stderr.lower(), result.stderr
        assert "Traceback" not in result.stderr and not is_mounted(mnt)
    finally:
        subprocess.run(["umount", ro], check=True)


def test_full_disk_gives_enospc_and_keeps_the_vault(small_disk) -> None:
    small, mnt = small_disk
    vault = small / "vault"
    assert fusevault("init", vault, "--user", "alice").returncode == 0
    keep = os.urandom(2_000_000)
    with mounted(vault, mnt):
        (mnt / "keep").write_bytes(keep)
        with pytest.raises(OSError) as info:
            with open(mnt / "filler", "wb") as f:
                for _ in range(64):
                    f.write(os.urandom(1 << 20))
                f.flush()
                os.fsync(f.fileno())
        assert info.value.errno == errno.ENOSPC
        assert (mnt / "keep").read_bytes() == keep
        with pytest.raises(OSError) as info:
            (mnt / "more").write_bytes(os.urandom(4 << 20))
        assert info.value.errno == errno.ENOSPC
    with mounted(vault, mnt):
        assert (mnt / "keep").read_bytes() == keep
        assert fusevault("info", vault, passphrase=None).returncode == 0


def test_metadata_change_of_a_dirty_file_never_commits_unwritten_size(vault: Path, tmp_path: Path) -> None:
    # tar does this: write, fchmod/futimens on the open file, then close.  A
    # crash before the close must not leave a file of the new size full of zeros.
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "file").write_bytes(b"committed")
        pids = server_pids(mnt)  # before opening: a fork would close (flush) our fd
        f = open(mnt / "file", "r+b")
        f.write(b"dirty, never closed" * 1000)
        f.flush()
        os.fchmod(f.fileno(), 0o600)
        os.utime(f.fileno(), (1, 1))
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            f.close()  # the server is gone: ENOTCONN
        force_unmount(mnt)
    with mounted(vault, mnt):
        assert (mnt / "file").read_bytes() == b"committed"
        assert os.stat(mnt / "file").st_mode & 0o777 == 0o600


def test_a_lock_that_cannot_save_keeps_the_user_unlocked_and_loses_nothing(small_disk) -> None:
    small, mnt = small_disk
    vault = small / "vault"
    assert fusevault("init", vault, "--user", "alice").returncode == 0
    data = os.urandom(3_000_000)
    with mounted(vault, mnt):
        f = open(mnt / "unsaved", "wb")  # written, not closed: only in memory
        f.write(data)
        f.flush()
        filler = small / "filler"
        with open(filler, "wb") as out, contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * (1 << 20))
                out.flush()
        refused = fusevault("lock", mnt, passphrase=None)
        assert refused.returncode == 21, refused.stderr
        assert "could not be saved" in refused.stderr and "still unlocked" in refused.stderr
        assert "Traceback" not in refused.stderr
        status = json.loads(fusevault("status", mnt, "--json", passphrase=None).stdout)
        assert status["mounts"][0]["unlocked"][0]["user"] == "alice"
        filler.unlink()
        assert (mnt / "unsaved").read_bytes() == data  # still in memory, saved at this close
        f.close()
        assert fusevault("lock", mnt, passphrase=None).returncode == 0
        assert fusevault("unlock", mnt).returncode == 0
        assert (mnt / "unsaved").read_bytes() == data
    with mounted(vault, mnt):
        assert (mnt / "unsaved").read_bytes() == data
