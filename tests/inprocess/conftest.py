"""The in-process layer: fs/operations.py's ``Operations`` and the Volume
under it, driven as the kernel would drive them, with no kernel and no mount.

Everything that composes a mount in-process happens in ``_compose``, the
one place to change when the mount's composition changes: the vault is
opened and the user unlocked as fs/server.py does, the Volume loaded, and
the ``Operations`` given the unlocked session as agent/sessions.py's
``Agent`` does (without its background services: gc, imports, drop boxes,
which have tests of their own).  Two users of one vault get seats in a
``Drive`` (fs/drive.py) over one store, each taking in what the other
commits, as fs/shared.py does.

Tests here are ``async def``; each runs in its own ``trio.run`` (the hook
below: pytest-trio is not a dependency).  The vault is made once per
session by the real ``fusevault init`` and ``user add`` and copied per test.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import shutil
import stat
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pyfuse3
import pytest
import trio
from conftest import PASSPHRASE, fusevault

from fusevault.agent.sessions import Session
from fusevault.fs.drive import Drive
from fusevault.fs.operations import Operations
from fusevault.host_access import Direct
from fusevault.store import open_store
from fusevault.store.watched import WatchedStore
from fusevault.tasks import Tasks
from fusevault.vault.model import users
from fusevault.vault.model.meta_files import reconcile
from fusevault.vault.services.absorbing import absorb
from fusevault.vault.services.opening import hold, unlock_vault
from fusevault.vault.services.placing import NoKernel
from fusevault.vault.volume import Volume

T = TypeVar("T")

BOB = "bob's own passphrase"
ALICE_UID, BOB_UID, STRANGER_UID = 2201, 2202, 2203


class Ctx:
    """What pyfuse3.RequestContext carries (its attributes are read-only,
    so tests make their own, as S3QL's t3_fs_api does)."""

    def __init__(self, uid: int = 0, gid: int = 0, pid: int = 4242, umask: int = 0o022) -> None:
        self.uid, self.gid, self.pid, self.umask = uid, gid, pid, umask


ME = Ctx()


ROOT = 1
FILE = stat.S_IFREG | 0o644
DIR = stat.S_IFDIR | 0o755


class Fields:
    """pyfuse3.SetattrFields (read-only in pyfuse3, so duck-typed)."""

    def __init__(self, **given: bool) -> None:
        for name in ("mode", "uid", "gid", "size", "atime", "mtime", "ctime"):
            setattr(self, f"update_{name}", given.get(name, False))


def code_of(excinfo: pytest.ExceptionInfo) -> int:
    return excinfo.value.errno


async def make(ops, name: bytes, data: bytes = b"", parent: int = ROOT) -> pyfuse3.EntryAttributes:
    info, entry = await ops.create(parent, name, FILE, os.O_RDWR | os.O_CREAT, ME)
    if data:
        assert await ops.write(info.fh, 0, data) == len(data)
    await ops.flush(info.fh)
    await ops.release(info.fh)
    return entry


async def read_all(ops, ino: int) -> bytes:
    info = await ops.open(ino, os.O_RDONLY, ME)
    try:
        return await ops.read(info.fh, 0, 1 << 20)
    finally:
        await ops.release(info.fh)


async def rewrite(ops, ino: int, data: bytes) -> None:
    """A program saving the whole file: open with O_TRUNC, write, close (one version)."""
    info = await ops.open(ino, os.O_WRONLY | os.O_TRUNC, ME)
    await ops.write(info.fh, 0, data)
    await ops.release(info.fh)


@pytest.fixture
def listing(monkeypatch):
    """``await listing(ops, ino)``: the names readdir gives, as the kernel receives them."""

    def reply(token, name, attr, next_id):
        token.append((name, attr, next_id))
        return True

    monkeypatch.setattr(pyfuse3, "readdir_reply", reply)

    async def names(ops, ino: int, ctx: Ctx = ME) -> list[bytes]:
        fh = await ops.opendir(ino, ctx)
        got: list = []
        await ops.readdir(fh, 0, got)
        await ops.releasedir(fh)
        return [name for name, _, _ in got]

    return names


@dataclass
class Composed:
    """What a test drives: ``ops`` (a personal mount's Operations, alice's),
    or ``drive`` with a seat per user (a shared mount)."""

    ops: Operations | None
    drive: Drive | None
    volumes: dict[str, Volume]
    store: object
    vault: Path
    _closers: list = field(default_factory=list)

    @property
    def volume(self) -> Volume:
        return self.volumes["alice"]


def _compose(vault: Path, seats: dict[str, tuple[str, int]] | None = None) -> Composed:
    """The one place the in-process mount is put together.

    ``seats``: None for a personal mount of alice; else username ->
    (passphrase, uid) for a shared mount's Drive, each user unlocked."""
    held = None
    if seats is None:
        # fs/server.py serve_mount and _serve, then fs/mount.py serve and Agent._open.
        unlocked = unlock_vault(vault, "alice", PASSPHRASE.encode())
        unlocked.user = users.ensure_identity(unlocked.store, unlocked.user, unlocked.key,
                                              unlocked.layout.root)
        unlocked.store.close()
        held = hold(unlocked.layout)
        store = open_store(unlocked.layout.root, unlocked.layout.store)
        reconcile(unlocked.layout, store)
        volume = Volume.load(unlocked.layout, store, unlocked.key, unlocked.root())
        ops = Operations(None)
        ops.gate.open(Session(volume, NoKernel(), Tasks(), Direct()))
        composed = Composed(ops, None, {"alice": volume}, store, vault)
    else:
        # fs/server.py _serve_shared, fs/shared.py SharedMount._seat_for and _committed.
        from fusevault.vault.services.opening import open_vault

        layout, store = open_vault(vault)
        held = hold(layout)
        reconcile(layout, store)
        drive = Drive(lambda uid: uid in {uid for _, uid in seats.values()}, lambda: os.stat(layout.root),
                      lambda: os.statvfs(layout.root))
        composed = Composed(None, drive, {}, store, vault)
        by_seat = {}

        def committed(writer, docs: list[dict]) -> None:
            for seat in drive.unlocked():
                absorb(seat.ops.session.volume, docs, own=seat is writer, here=True)

        for name, (secret, uid) in seats.items():
            user = users.find_user(store, name)
            key = users.unlock(user, secret.encode())
            user = users.ensure_identity(store, user, key, layout.root)
            seat = drive.add_seat(uid, uid, user["_id"])
            # Loaded in a worker thread, as Agent.unlock does: loading may write, and
            # a watched store tells the other seats on the loop.
            load = functools.partial(Volume.load, layout, WatchedStore(store, seat, committed), key,
                                     users.root_of(layout.root, user, key, store))
            volume = trio.run(trio.to_thread.run_sync, load)
            seat.ops.gate.open(Session(volume, NoKernel(), Tasks(), Direct()))
            composed.volumes[name] = volume
            by_seat[name] = seat
    composed._closers.append(held)
    return composed


def agent_for(composed: Composed):
    """An ``Agent`` over the personal mount's Operations, as fs/mount.py's serve
    makes it (a test runs it: ``await nursery.start(agent.run, fs.volume, ttl)``)."""
    from fusevault.agent.sessions import Agent

    volume = composed.volume
    user = composed.store.get(volume.key.user_id)
    return Agent(user, composed.ops.gate, NoKernel(), Tasks(), volume.layout, composed.store, host=Direct())


async def _close(composed: Composed) -> None:
    """The unmount: every unlocked user's files saved (fs/mount.py's close, SharedMount.close)."""
    failures = 0
    if composed.ops is not None:
        operations = [composed.ops]
    else:
        operations = [seat.ops for seat in composed.drive.seats.values()]
    for ops in operations:
        if ops.session is not None:
            failures += await ops.session.volume.close()  # a watched store's close leaves the store open
    composed.store.close()
    for fd in composed._closers:
        os.close(fd)
    assert failures == 0, "the in-process mount could not save everything"


def on_volume(vault: Path, body: Callable[[Volume], Awaitable[T]]) -> T:
    """``body`` run on the first user's volume of ``vault`` (unlocked with ``PASSPHRASE``, no mount),
    the volume closed after it whatever happens."""
    unlocked = unlock_vault(vault, None, PASSPHRASE.encode())

    async def main() -> T:
        volume = Volume.load(unlocked.layout, unlocked.store, unlocked.key, unlocked.user["root"])
        try:
            return await body(volume)
        finally:
            await volume.close()

    return trio.run(main)


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    """An empty folder to watch (an importer's source)."""
    path = tmp_path / "inbox"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def template_vault(tmp_path_factory) -> Path:
    """alice (the first user) and bob, made by the real commands once."""
    path = tmp_path_factory.mktemp("template") / "vault"
    made = fusevault("init", path, "--user", "alice")
    assert made.returncode == 0, made.stderr
    added = fusevault("user", "add", "bob", "--uid", str(BOB_UID), env={
        "FUSEVAULT_VAULT": str(path), "FUSEVAULT_NEW_PASSPHRASE": BOB})
    assert added.returncode == 0, added.stderr
    return path


@pytest.fixture
def vault_copy(template_vault: Path, tmp_path: Path) -> Path:
    path = tmp_path / "vault"
    shutil.copytree(template_vault, path, symlinks=True)
    return path


@contextlib.contextmanager
def _composed(vault: Path, seats=None) -> Iterator[Composed]:
    composed = _compose(vault, seats)
    try:
        yield composed
    finally:
        trio.run(_close, composed)


@pytest.fixture
def fs(vault_copy: Path) -> Iterator[Composed]:
    """alice's personal mount, in-process: ``fs.ops``."""
    with _composed(vault_copy) as composed:
        yield composed


@pytest.fixture
def shared(vault_copy: Path) -> Iterator[Composed]:
    """A shared mount with alice and bob unlocked in it, in-process: ``shared.drive``."""
    with _composed(vault_copy, {"alice": (PASSPHRASE, ALICE_UID), "bob": (BOB, BOB_UID)}) as composed:
        yield composed


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    """``async def`` tests run in a trio loop of their own."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    trio.run(functools.partial(pyfuncitem.obj, **{n: pyfuncitem.funcargs[n] for n in names}))
    return True
