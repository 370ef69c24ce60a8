"""Attack round 46f: the fix of 45t (3) (a7c5e27: export and import keep holes as holes; an export ends
with its client), attacked by whoever writes a watched import folder (in a shared mount, root's mount
process imports it into the vault) and by honest use.  Mostly in-process: the Importer and ``export``
on an unmounted Volume (the harness of tests/mount/test_imports.py), so the runs are short and
certain; one real mount for hole 2.

Hole 1 (medium in a shared mount; low in a personal one): the import still reads a sparse source's
  holes whole, in ONE worker-thread call that nothing can cancel: a re-import of a changed source
  (``Importer.take``: a record names the location, or the vault has a file at its place) hashes it with
  ``hash_file`` (``f.read`` to the end) before ``source_pieces`` is ever used.
  Attack: a writer of the watched folder drops ``x`` (a byte), it is imported; then ``truncate -s 1E x``
  (or any file whose name is already in the vault's import folder).  The next scan runs
  ``vol.in_thread(hash_file, ...)``: read(2) of 1 EiB of zeros plus SHA-256, years of one core, in
  root's process, inside one ``trio.to_thread.run_sync`` call (not abandonable), holding one of the
  tree's ``CapacityLimiter(max(2, cpus))`` slots that every file read and write of every user shares.
  Seen: ``test_a_changed_sparse_source_is_read_for_its_data_alone`` (run, fails: ``hash_file`` read
    256 MiB (where the wrapper stopped it) of a 1 TiB source holding 2 bytes);
    ``test_a_reimport_is_cancelled_promptly_like_a_first_import`` (run, fails: cancelled after
    0.3 s, as an unmount or lock does, ``take`` returned only when the whole read was over: ~4 s of a
    read slowed to 20 ms per MiB; with 1 EiB, never).  Control
    ``test_control_a_first_import_of_a_sparse_source_is_cancelled_promptly`` (passes: ``write_file``
    hashes holes in 64 MiB steps, a cancel takes effect between them).
  Cause: imports/importer.py ``hash_file`` reads with ``f.read`` (no SEEK_DATA) in one thread call;
    the fix changed only ``_chunks`` (the copy).
  Impact: an unmount/lock of root's shared mount hangs until the read ends (years); one worker slot
    of two (on a 2-core host) is gone for every user meanwhile; a core burns.  docs/SECURITY.md's
    "Still open: a sparse source costs the import CPU time to hash its holes" does not say that this
    part cannot be cancelled, nor that it holds a shared slot.
  Fix (suggested): hash in ``hash_file`` with ``source_pieces`` and ``_hash_zeros``-like steps (one
    thread call per bounded step, checking a cancel between), or bound an import by the source's
    apparent size (refuse, and say, a source larger than N x its allocated blocks or than a limit).

Hole 2 (high in a shared mount: every user's mount stops; medium in a personal one, honest use too):
  ``placing.file_digest`` (``read_file``: every 1 MiB of the vault file, holes included) reads and
  hashes a sparse vault file's holes ON THE MOUNT'S TRIO LOOP without one checkpoint (a read of a
  hole is served on the loop, and ``digest.update`` runs in the coroutine): ~1.1-1.4 s of a loop that
  stands still per GiB of hole, so decades for 1 EiB.  The importer runs it in ``_changed_in_vault``,
  ``_already_there`` (same size) and ``_remove_source`` (``delete_file_from_source``).
  Attack (bob, any mapped user of a shared mount, default settings): ``fusevault watch ~/in``;
    ``echo a > ~/in/x`` (imported as ``Imported/x``); ``truncate -s 1E $M/Imported/x`` (his own file,
    0 s, 0 bytes); ``echo bb > ~/in/x``.  The next scan: ``hash_file`` (2 bytes), ``_already_there``
    (sizes differ), ``_changed_in_vault`` -> ``file_digest`` of 1 EiB on the loop.
  Seen: ``test_a_reimport_never_holds_the_mounts_loop_for_a_sparse_vault_file`` (run, fails: the loop
    stood still 1.38 s for a 1 GiB vault file); ``test_a_reimport_never_stops_the_mount`` (run on a
    real personal mount, fails: a file created in the mount waited 14.1 s while the watcher digested an
    8 GiB sparse ``Imported/x``); ``test_the_check_before_removing_a_source_reads_only_
    its_data`` (run, fails: 256 MiB read back through ``volume.read`` after importing a 256 MiB source
    holding 2 bytes, with ``delete_file_from_source``).
  Impact: root's shared mount serves no FUSE request, control-socket request or signal of any user
    (the unmount included) for as long as the digest runs: all processes touching the mount hang; only
    ``kill -9`` ends it, losing every user's unsaved writes.  Honest use: a watched 100 GiB sparse VM
    image, re-imported after a change or removed after its import, freezes the mount ~2 min each time.
  Fix (suggested): ``file_digest`` over ``read_data`` with the gaps hashed as zeros in worker steps (as
    ``write_file`` does), the data chunks hashed in a worker too; or keep the digest ``write_file``
    computed; and bound the import by apparent size.

Hole 3 (low; honest use of the control socket by other clients): a client that half-closes after its
  request line (``shutdown(SHUT_WR)``, as ``nc -N``/``socat`` do) has its export cancelled at once and
  gets no answer: ``control._hangup`` takes "readable, 0 bytes" (EOF on its sending half) for "gone".
  Seen: ``test_a_half_closed_client_still_gets_its_export`` (run, fails: the answer is empty, the
  handler was cancelled).  The fusevault client does not half-close (held).
  Fix (suggested): tell a hangup by POLLHUP/POLLRDHUP-less means: keep waiting after EOF for the
  peer's full close (a send of 0 bytes/SO_ERROR, or ``poll`` for POLLHUP), or document it.

Hole 4 (low-medium; honest use: wrong bytes, silently): an export of a file being written can write
  zeros where the file held data since before the export began.  ``Sealing.data_ranges`` (run in a
  worker thread) takes the manifest's runs first and the dirty blocks second; a flush of dirty blocks
  in another worker thread (``flush_blocks`` past FLUSH_AT, the seal at a close/fsync) between the two
  puts them in the map and drops them from ``dirty`` (``_write_blocks``: "the map first, then the
  dirty blocks go: a concurrent read finds each block in one or the other", true of a reader that looks
  at ``dirty`` first, not of this one): they are in neither list, so ``read_data`` never reads them
  and ``_finish``'s ftruncate leaves zeros.  ``read_file`` (before the fix) read every offset and could
  not miss a block that never changed.
  Seen: ``test_a_block_flushed_while_the_export_looks_for_data_is_exported`` (run, fails: all 48
    blocks of a 3 MiB file open with dirty blocks exported as zeros, the flush run right after
    ``data_ranges`` took the runs, as a thread switch there does; the window is a GIL switch, wider
    for a file of many runs (a Python loop over them), not timed naturally here).
  Fix (suggested): take ``list(self.dirty)`` before the runs (a block leaves ``dirty`` only after it is
    in the map), or compute the ranges under the node's lock on the loop.

Checked, held: an export of a file with a hole at its start and at its end, a block of real zeros then
  overwritten while the file is open (dirty, not yet sealed), a last partial block, a size not a
  multiple of the block size, and a 0-byte file gives the right bytes and sizes
  (``test_control_export_of_holes_dirty_blocks_and_tails_gives_the_right_bytes``, passes); a
  cancelled export removes its temporary file (shielded ``discard``) and releases its handle
  (``release`` pops the handle before any await); ``source_pieces`` ends on a file cut short between
  SEEK_DATA and SEEK_HOLE (ENXIO: an OSError, the import fails and is retried) and on a growing file
  (each step moves on); the fusevault CLI asks ``export`` with no timeout (no honest cancel).
  Read, not run: a client that passes its socket to another process keeps its export going (as a
  live client would: no more than the user may do anyway).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from pathlib import Path

import pytest
import trio
from conftest import PASSPHRASE

from fusevault.fs import control
from fusevault.imports import importer as importer_module
from fusevault.imports.importer import Importer
from fusevault.vault.model.settings import Settings
from fusevault.vault.services import exporting
from fusevault.vault.services.opening import unlock_vault
from fusevault.vault.services.placing import NoKernel
from fusevault.vault.volume import Caller, Volume

MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


def _sparse(path: Path, size: int, data: bytes = b"a") -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.truncate(size)


class _Counting:
    """A source file whose reads are counted (and stopped past ``limit``, or slowed by ``delay``)."""

    def __init__(self, f, limit: int, delay: float = 0.0) -> None:
        self.f, self.limit, self.delay, self.read_bytes = f, limit, delay, 0

    def read(self, n: int = -1) -> bytes:
        if self.read_bytes >= self.limit:
            raise OSError(errno.EIO, "stopped by the test: it has seen enough")
        if self.delay:
            time.sleep(self.delay)
        data = self.f.read(n)
        self.read_bytes += len(data)
        return data

    def fileno(self) -> int:
        return self.f.fileno()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


def _watching(monkeypatch, limit: int, delay: float = 0.0) -> list[_Counting]:
    """Wrap the importer's ``open_source``: the list gets every source opened."""
    opened: list[_Counting] = []
    real = importer_module.open_source

    def counting(host, root, location):
        wrapper = _Counting(real(host, root, location), limit, delay)
        opened.append(wrapper)
        return wrapper

    monkeypatch.setattr(importer_module, "open_source", counting)
    return opened


def _run(vault: Path, source: Path, body, **settings) -> None:
    unlocked = unlock_vault(vault, None, PASSPHRASE.encode())
    config = Settings(source_dir_to_watch=str(source), **settings)

    async def main() -> None:
        volume = Volume.load(unlocked.layout, unlocked.store, unlocked.key, unlocked.user["root"])
        try:
            importer = Importer(volume, config, NoKernel())
            await importer.load()
            try:
                await body(volume, importer)
            finally:
                importer.close()
        finally:
            await volume.close()

    trio.run(main)


# --- Hole 1


def test_a_changed_sparse_source_is_read_for_its_data_alone(vault: Path, source: Path, monkeypatch) -> None:
    x = source / "x"
    x.write_bytes(b"a")

    async def body(volume, importer) -> None:
        outcome, _, _ = await importer.take("x")
        assert outcome == "new"
        # 2 bytes of data, 1 GiB long: changed since its import.  1 GiB proves what 1 EiB would (a
        # read of the holes passes 16 MiB, where the wrapper stops it at 256 MiB), and its holes,
        # still hashed as zeros, take a second of CPU, not the minutes of a 1 TiB source.
        _sparse(x, GiB, b"ab")
        opened = _watching(monkeypatch, limit=256 * MiB)
        with trio.move_on_after(120), contextlib.suppress(Exception):
            await importer.take("x")  # fails where the wrapper stops the read
        read = sum(w.read_bytes for w in opened)
        assert read < 16 * MiB, f"hash_file read {read >> 20} MiB (and would read 1 GiB) of holes for 2 bytes"

    _run(vault, source, body)


async def _take_cancelled(importer, location: str, after: float) -> float:
    started = time.monotonic()
    with trio.move_on_after(after), contextlib.suppress(Exception):
        await importer.take(location)  # (a read stopped by the test fails it)
    return time.monotonic() - started


def test_a_reimport_is_cancelled_promptly_like_a_first_import(vault: Path, source: Path, monkeypatch) -> None:
    x = source / "x"
    x.write_bytes(b"a")

    async def body(volume, importer) -> None:
        await importer.take("x")
        _sparse(x, TiB, b"ab")
        # Reading 1 EiB of holes takes years; here the read is slowed to 20 ms per MiB and stopped
        # after 200 MiB (4 s), which is what a cancel has to wait for.
        _watching(monkeypatch, limit=200 * MiB, delay=0.02)
        took = await _take_cancelled(importer, "x", 0.3)
        assert took < 2.0, f"cancelled after 0.3 s, take returned after {took:.1f} s (the whole read)"

    _run(vault, source, body)


def test_control_a_first_import_of_a_sparse_source_is_cancelled_promptly(vault: Path, source: Path) -> None:
    _sparse(source / "y", TiB, b"ab")  # new: copied (and hashed) by write_file, holes in steps

    async def body(volume, importer) -> None:
        took = await _take_cancelled(importer, "y", 0.3)
        assert took < 2.0, f"cancelled after 0.3 s, take returned after {took:.1f} s"

    _run(vault, source, body)


# --- Hole 2


def test_the_check_before_removing_a_source_reads_only_its_data(vault: Path, source: Path) -> None:
    _sparse(source / "z", 256 * MiB, b"ab")

    async def body(volume, importer) -> None:
        real = volume.read
        counted = [0]

        async def read(fh, offset, size):
            data = await real(fh, offset, size)
            counted[0] += len(data)
            return data

        volume.read = read
        outcome, _, removed = await importer.take("z")
        assert outcome == "new" and removed
        assert counted[0] < 8 * MiB, f"{counted[0] >> 20} MiB read back (and hashed on the loop) of holes"

    _run(vault, source, body, delete_file_from_source=True)


# --- Hole 3


def test_a_half_closed_client_still_gets_its_export(tmp_path: Path) -> None:
    path = tmp_path / "ctl" / "control.sock"
    path.parent.mkdir(mode=0o700)
    finished = []

    async def handler(request: dict, uid: int) -> dict:
        await trio.sleep(0.5)  # an export under way
        finished.append(request["cmd"])
        return {"exported": "x", "files": 1, "bytes": 1}

    def client() -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(path))
            sock.sendall(b'{"cmd": "export"}\n')
            sock.shutdown(socket.SHUT_WR)  # nothing more to say; still waiting for the answer
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            return data

    async def main() -> bytes:
        async with trio.open_nursery() as nursery:
            await nursery.start(lambda task_status: control.serve(
                path, handler, until_hangup=frozenset({"export"}), task_status=task_status))
            answer = await trio.to_thread.run_sync(client)
            nursery.cancel_scope.cancel()
        return answer

    answer = trio.run(main)
    assert answer.startswith(b"{") and finished == ["export"], f"answer {answer!r}, finished {finished}"


# --- What held


def test_control_export_of_holes_dirty_blocks_and_tails_gives_the_right_bytes(vault: Path,
                                                                              tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    unlocked = unlock_vault(vault, None, PASSPHRASE.encode())
    caller = Caller(os.getuid(), os.getgid())

    async def main() -> dict[str, bytes]:
        volume = Volume.load(unlocked.layout, unlocked.store, unlocked.key, unlocked.user["root"])
        expected: dict[str, bytes] = {}
        try:
            root = volume.resolve(b"")

            async def make(name: str, writes: list[tuple[int, bytes]], size: int | None = None,
                           keep_open: bool = False) -> None:
                fh, node = await volume.create(root.ino, name.encode(), 0o644, caller)
                image = bytearray()
                for offset, data in writes:
                    await volume.write(fh, offset, data)
                    image[len(image):offset] = bytes(max(0, offset - len(image)))
                    image[offset:offset + len(data)] = data
                if size is not None:
                    await volume.setattr(node.ino, size=size)
                    image = image[:size] + bytes(max(0, size - len(image)))
                expected[name] = bytes(image)
                if not keep_open:
                    await volume.release(fh)

            bs = 64 * 1024
            await make("empty", [])
            await make("holes-both-ends", [(3 * MiB + 17, b"middle" * 1000)], size=9 * MiB + 5)
            # Real zeros sealed, then overwritten (dirty, never flushed) while open.
            fh, node = await volume.create(root.ino, b"rewritten", 0o644, caller)
            await volume.write(fh, 0, bytes(4 * MiB))
            await volume.flush(fh)
            await volume.write(fh, 2 * MiB + 3, b"late" * 5000)
            expected["rewritten"] = bytes(2 * MiB + 3) + b"late" * 5000 + bytes(4 * MiB - 2 * MiB - 3 - 20000)
            await make("tail", [(0, os.urandom(5 * bs + 123))], keep_open=True)
            await make("sparse-tail", [(7 * bs - 1, b"Z")], keep_open=True)
            for name in expected:
                await exporting.export(volume, name.encode(), out)
            await volume.release(fh)
        finally:
            await volume.close()
        return expected

    expected = trio.run(main)
    for name, data in expected.items():
        got = (out / name).read_bytes()
        assert len(got) == len(data) and got == data, f"{name}: {len(got)} bytes exported, {len(data)} meant"


def test_control_import_of_holes_zeros_and_tails_gives_the_right_bytes(vault: Path, source: Path) -> None:
    """A hole at the start and at the end, a chunk of real zeros between data, a size not a multiple of
    a block or a chunk, and an empty file: imported equal, with the digest of what the source reads as."""
    import hashlib

    from fusevault.vault.services.placing import file_digest

    with open(source / "mixed", "wb") as f:
        f.seek(3 * MiB + 5)  # a hole first
        f.write(b"data" * 300_000)
        f.write(bytes(2 * MiB))  # real zeros, written (not a hole)
        f.write(b"x" * 77)
        f.truncate(11 * MiB + 3)  # a hole last, an odd size
    (source / "empty").write_bytes(b"")
    (source / "odd").write_bytes(os.urandom(MiB + 65_537))
    expected = {name: (source / name).read_bytes() for name in ("mixed", "empty", "odd")}

    async def body(volume, importer) -> None:
        for name, data in expected.items():
            outcome, _, _ = await importer.take(name)
            assert outcome == "new", name
            node = volume.resolve(f"Imported/{name}".encode())
            assert node.size == len(data), name
            assert await file_digest(volume, node) == hashlib.sha256(data).hexdigest(), name
            assert importer.records[name][0].sha256 == hashlib.sha256(data).hexdigest(), name

    _run(vault, source, body)


# --- Hole 4


def test_a_block_flushed_while_the_export_looks_for_data_is_exported(vault: Path, tmp_path: Path,
                                                                     monkeypatch) -> None:
    """The flush of dirty blocks (``Sealing._write_blocks``, in a worker thread: a writer past
    FLUSH_AT, or the commit at a close/fsync) puts them in the map, then drops them from ``dirty``
    ("a concurrent read finds each block in one or the other": a reader that looks at ``dirty``
    first).  ``Sealing.data_ranges`` (in another worker thread) looks at the map's runs first, then at
    ``dirty``: a flush between the two is in neither.  The window is made certain here by running
    the flush right after ``data_ranges`` took the runs (as a thread switch there does)."""
    from fusevault.vault.format import manifest as manifest_module

    out = tmp_path / "out"
    out.mkdir()
    unlocked = unlock_vault(vault, None, PASSPHRASE.encode())
    data = os.urandom(3 * MiB)

    async def main() -> None:
        volume = Volume.load(unlocked.layout, unlocked.store, unlocked.key, unlocked.user["root"])
        try:
            root = volume.resolve(b"")
            fh, node = await volume.create(root.ino, b"open.bin", 0o644, Caller(os.getuid(), os.getgid()))
            await volume.write(fh, 0, data)  # dirty: held in memory, not sealed yet (under FLUSH_AT)
            content = node.content
            assert content.dirty
            runs = manifest_module.BlockMap.runs
            armed = [True]

            def runs_then_a_flush(blocks):
                taken = runs.fget(blocks)
                if armed and armed.pop() and blocks is content.manifest.blocks:
                    content.flush_blocks(node.size, keep_last=False)  # the other thread, right now
                return taken

            monkeypatch.setattr(manifest_module.BlockMap, "runs", property(runs_then_a_flush))
            await exporting.export(volume, b"open.bin", out)
            monkeypatch.setattr(manifest_module.BlockMap, "runs", runs)
            await volume.release(fh)
            assert not armed, "the flush ran"
        finally:
            await volume.close()

    trio.run(main)
    got = (out / "open.bin").read_bytes()
    bad = sum(1 for i in range(0, len(data), 65536) if got[i:i + 65536] != data[i:i + 65536])
    assert got == data, f"{bad} blocks of 64 KiB exported as zeros, of {len(data) // 65536}"


def test_a_reimport_never_holds_the_mounts_loop_for_a_sparse_vault_file(vault: Path, source: Path) -> None:
    """Hole 2's worst scene, with the default settings: bob's import of ``x`` is in the vault, he makes
    the vault's copy sparse and long (``truncate -s 1E $M/Imported/x``: 0 s, his own file), and changes
    the source (``echo b > ~/in/x``).  The next scan: ``hash_file`` (2 bytes), ``_already_there`` (sizes
    differ), then ``_changed_in_vault`` -> ``file_digest`` of the vault file: its holes are read and
    hashed on the trio loop without a single checkpoint (a hole's read never leaves the loop).  Here
    1 GiB; the loop that serves every FUSE request, the control socket and the unmount of every user
    of the shared mount stops for the whole of it (~1 s per GiB: 1 EiB is decades)."""
    x = source / "x"
    x.write_bytes(b"a")

    async def body(volume, importer) -> None:
        assert (await importer.take("x"))[0] == "new"
        node = volume.resolve(b"Imported/x")
        await volume.setattr(node.ino, size=1 << 30)  # his truncate through the mount
        x.write_bytes(b"bb")
        gaps = [0.0]
        done = trio.Event()

        async def ticker() -> None:
            last = time.monotonic()
            while not done.is_set():
                await trio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            await trio.sleep(0.05)
            try:
                await importer.take("x")
            finally:
                done.set()
        assert max(gaps) < 0.3, f"the loop stood still {max(gaps):.2f} s (for a 1 GiB file of holes)"

    _run(vault, source, body)


def test_a_reimport_never_stops_the_mount(vault: Path, mnt: Path, tmp_path: Path) -> None:
    """Hole 2 on a real mount: while the watcher digests a 4 GiB sparse vault file, a file created in
    the mount (a FUSE request the kernel cannot answer itself) waits for the whole digest."""
    from mount.test_imports import idle, wait_for, watch

    watched = tmp_path / "watched"
    watched.mkdir()
    (watched / "x").write_bytes(b"a")
    watch(mnt, watched)
    wait_for("the first import", lambda: (mnt / "Imported" / "x").exists() and idle(mnt))
    # 4 GiB: 5-7 s of a loop that stands still with the digest on it (1.1-1.8 s per GiB), a few
    # seconds of worker steps with the fix; 8 GiB proved no more.
    os.truncate(mnt / "Imported" / "x", 4 << 30)  # the owner's own file: 0 s, 0 bytes
    (watched / "x").write_bytes(b"bb")  # changed: re-imported at the next scan
    # Probed from the change until the re-import is over (its copy beside ``x``, made after the
    # digest of the vault's ``x``), or until a probe waited long enough to tell.  The look for the
    # copy is a FUSE request (a readdir) too, timed with the create.
    worst, deadline, i, over = 0.0, time.monotonic() + 40, 0, False
    while time.monotonic() < deadline and worst < 3 and not over:
        started = time.monotonic()
        (mnt / f"probe-{i}").write_bytes(b"p")
        over = len(os.listdir(mnt / "Imported")) == 2
        worst = max(worst, time.monotonic() - started)
        i += 1
        time.sleep(0.05)
    wait_for("the re-import", lambda: idle(mnt) and len(os.listdir(mnt / "Imported")) == 2)
    assert worst < 1.0, f"a create in the mount waited {worst:.1f} s (the digest of 4 GiB of holes)"
