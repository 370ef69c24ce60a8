"""Attack round 63c: the shared mount's watched folder after round 58's fixes (58c (1): a walk keeps a
file as its folder's ``Place`` and its own name, 32 MiB of names at most), in-process, a real vault.

(1) medium (memory of root's shared mount, unbounded, and its store on disk): every import keeps a
  record naming the file's whole location and its whole vault path, for good
Attacker: bob, a user of the shared mount with a watched folder (his own, ``delete_file_from_source``).
Steps: in his watched folder, a chain of folders (here 100 deep, 200-byte names; at worst ``MAX_DEPTH``
  256 of 255 bytes) and, one after the other, empty files in its deepest folder: each is imported
  (an empty file in his vault, all in one folder there) and removed from the source, so the walk
  never holds more than a few names (58c (1)'s bounds never come into play).
Seen: ``test_63c_1_an_import_record_costs_the_mount_bytes_in_proportion_to_its_own_names``: the
  records of 20 such imports, as ``Importer.load`` holds them (a watch's start, every restart, and
  ``Importer.records`` grows the same way at each import): 41,364 bytes a record (tracemalloc). At
  256 folders of 255 bytes: 132,042 bytes a record in memory and ~203 KB a record in the store
  (200 imports: store +40.7 MB), at ~78 imports a second (200 in 2.6 s on this machine): 10,000 empty
  files, two minutes of his, hold 1.3 GB of root's mount for as long as it runs his seat, again at
  each restart, and nothing ever drops them. Control (not kept, the same script): files at the top
  of the watched folder with 20-byte names, 1,012 bytes a record.
Expected: a record costs in proportion to its own names (as a walk's location does since 58c (1)),
  or the records held (or their bytes) are bounded like a walk's names.
Cause: imports/import_records.py ``Record`` (``file_location`` and ``vault_path``: whole paths,
  58c (1) left the stored format alone: "import records still name the whole path"),
  imports/importer.py ``Importer.records`` (every record of the user, loaded at ``load`` and added
  to at ``_save``; none dropped when its source is gone, only ``_move`` pops one), and the sealed
  record per file in the store. The walk's bound (``MAX_NAME_BYTES``) counts only what one walk
  sees; a removed source is seen by none, its record stays.
Impact: one user of the shared mount grows root's process (and the store on disk) without bound,
  ~400 times faster than by the files themselves (an empty file in one folder of the vault costs
  the tree a few hundred bytes): the mount killed by the OOM killer for every user, or the disk filled.
Fix (suggested): records held by the folder (a ``Place``-like tree of names, as locations.py keeps
  the walk), or keyed by their id (``record_id`` is a keyed hash of the location) with the path
  loaded only for a file taken; and a bound on the records a watch keeps (the oldest whose source is
  gone dropped, said), or a cap on a location's bytes (a path past PATH_MAX is refused, said).

(2) low (CPU of root's shared mount, quadratic in a chain's depth): an export hands each folder's
  whole path to its way down, built and taken apart again at every folder
Attacker: bob, a user of the shared mount (or a writer of a folder shared with alice, which she exports).
Steps: a chain of D folders in his vault (long names), then ``export`` of it to a folder of his.
Seen: ``test_63c_2_an_export_of_a_deep_chain_hands_the_way_work_in_proportion_to_the_names``: 300
  folders of 250-byte names (75 KB of names): the paths handed to ``Destination.folder`` sum to
  11.3 MB (150 times the names). ``exporting.Tree`` (fb25c57) keeps the names once, but ``__iter__``
  joins each entry's whole path (on the mount's loop, ``export``'s ``for``), twice an export (``check``
  then the copy), and ``Way.to`` splits it and compares it name by name from the root (in his thread,
  the GIL held): a probe of those two alone (no system call) took 3.5 s of CPU for one pass of a
  chain 8,000 deep of 255-byte names (7.6 GiB joined) and 8.5 s for the pass with ``Way.to``: ~12 s
  an export, ~190 s at 32,000 deep by the square (not run; x16: ``MAX_PER_UID`` exports at once),
  every other user's calls slowed meanwhile (one GIL).
Expected: work in proportion to the names (each folder one step from the one before).
Cause: vault/services/exporting.py ``Tree.__iter__`` ("/".join of the whole way per entry), ``export``
  (``out.folder(rel)``, ``out.create(rel)``), host_access/way.py ``Way.to`` (``rel.split``, the common
  prefix compared from the root).
Impact: a cost bounded only by the depth he makes: the shared mount slowed for every user for as
  long as his exports run.
Fix (suggested): ``Tree`` yields (depth, name, node) and ``Way`` goes to (depth, name) (up to depth,
  then one step down).

(3) low (honest data refused): an export of a tree holding a file whose path passes PATH_MAX is
  refused unless ``--overwrite`` is given
Attacker: a writer of a folder shared with alice (or honest use: deep long names).
Steps: a chain of 20 folders of 250-byte names and a file in the deepest (its path from the
  destination: ~5,000 bytes); ``export`` of the folder to an empty folder.
Seen: ``test_63c_3_an_export_of_a_file_past_path_max_is_refused_without_overwrite``: "cannot write
  .../000ddd.../001ddd...: File name too long", nothing exported; the same export with ``overwrite``
  writes it (the copy goes folder by folder through descriptors).
Expected: exported (nothing is there to replace).
Cause: vault/services/exporting.py ``Destination._check``: ``host.lstat(rel, dir_fd=self._way.root)``
  looks the whole path up from the destination (ENAMETOOLONG past 4,096 bytes), and only ENOENT and
  ENOTDIR mean "nothing there".
Impact: a member of her shared folder who plants such a chain keeps her from exporting the folder
  (or has her use ``--overwrite``, which replaces what is there).
Fix (suggested): ``check`` walks the tree with the way (the name only, from its folder's
  descriptor), or takes ENAMETOOLONG for a folder on the way not there yet.

Tried that held (throwaway probes, not kept): the export's way down (``Way.to`` driven by 4,000
random steps down, up and to siblings, depth up to 99: each folder handed back was the right one by
/proc/self/fd, root's descriptors never past bit_length(depth) + a few); ``Held.lent`` after the way's
close still holds its folder and is closed once (closed twice: a no-op, as after a failed ``place``).
Read, with their unit tests: ``Place``/``Location`` compared at once for places taken again (hashes
from str: no chosen collisions), ``FailuresSaid`` (20 a minute a watch, 16-byte keys, 10,000 kept),
``DefusedFormatter`` (one line, 4,000 characters), the watched folder's check (as the user: his own
rights only). Control kept: ``test_control_63c_3_the_same_export_with_overwrite_writes_the_file``.
A real shared mount run of (1): tests/mount/test_attack_63c.py (+138 MB of root's mount for 1,000
files, control 8 MB).  Not tried: a real shared mount run of (2) (in-process runs the same ``export``
request a shared mount runs per seat); log flooding by lines that are not failures (an
import batch's summary, one a tick, bounded in disk by the log's rotation).
"""

from __future__ import annotations

import os
import stat
import subprocess
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from fusevault.agent.sessions import Session
from fusevault.errors import InvalidInput
from fusevault.host_access import Direct
from fusevault.host_access.threads import HostThreads
from fusevault.imports.importer import Importer
from fusevault.tasks import Tasks
from fusevault.vault.model.settings import Settings
from fusevault.vault.services import exporting
from fusevault.vault.services.placing import NoKernel
from fusevault.vault.volume import Volume
from inprocess.conftest import ME, ROOT, make, on_volume

DEPTH, NAME, FILES = 100, 200, 20
NEAR = 19  # folders of the chain a file within PATH_MAX is put in (19 x 201 bytes)


@pytest.fixture(autouse=True)
def _removed_after(tmp_path: Path) -> Iterator[None]:
    """A deep tree: removed by rm (no recursion), not left to pytest's clean-up."""
    yield
    subprocess.run(["rm", "-rf", "--", *map(str, tmp_path.iterdir())], check=True)


def _chain(top: Path) -> tuple[list[str], int]:
    """``DEPTH`` folders of ``NAME``-byte names (made from descriptors: no PATH_MAX): (their names,
    the deepest one's descriptor)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    names = []
    for step in range(DEPTH):
        name = f"{step:03d}" + "d" * (NAME - 3)
        os.mkdir(name, dir_fd=fd)
        inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
        names.append(name)
    return names, fd


def test_63c_1_an_import_record_costs_the_mount_bytes_in_proportion_to_its_own_names(
        vault: Path, tmp_path: Path) -> None:
    """Fixed: a file whose path passes PATH_MAX is not imported (said, never recorded); one within it
    is, and its record costs the mount what its path (at most PATH_MAX twice) costs."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    names, deepest = _chain(inbox)
    settings = Settings(source_dir_to_watch=str(inbox), delete_file_from_source=True)
    within = names[:NEAR]  # ~3,900 bytes: the deepest a file is imported from

    async def main(volume: Volume) -> tuple[list[str], int, int, int]:
        importer = Importer(volume, settings, NoKernel())
        await importer.load()
        refused = []
        for number in range(FILES):
            name = f"{number:05d}.txt"
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=deepest))
            with pytest.raises(InvalidInput) as said:
                await importer.take("/".join([*names, name]))
            refused.append(str(said.value))
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=near))
            outcome, _, removed = await importer.take("/".join([*within, name]))
            assert outcome == "new" and removed  # the control: imported (and removed)
        importer.close()
        fresh = Importer(volume, settings, NoKernel())  # a watch's start: every record loaded
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            await fresh.load()
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        fresh.close()
        return refused, len(os.listdir(deepest)), len(fresh.records), held

    near = os.open(inbox / "/".join(within), os.O_RDONLY | os.O_DIRECTORY)
    try:
        refused, left, records, held = on_volume(vault, main)
    finally:
        os.close(deepest)
        os.close(near)
    print(f"{records} records, {held} bytes held, {held // max(1, records)} a record; {left} left")
    assert "past the 4,096 a path may have" in refused[0]  # seen: imported, removed, its record kept
    assert left == FILES  # not imported: nothing lost, each file stays where he put it
    assert records == FILES  # only those within PATH_MAX recorded
    # A record's own names: its location and vault path (~3,900 bytes each) and a few hundred bytes of
    # fields; seen before the fix: 41,364 bytes a record of the deep chain.
    assert held / records < 3 * 4096


CHAIN, LONG = 300, 250


async def test_63c_2_an_export_of_a_deep_chain_hands_the_way_work_in_proportion_to_the_names(
        fs, tmp_path, monkeypatch) -> None:
    parent = ROOT
    for step in range(CHAIN):
        name = b"%03d" % step + b"d" * (LONG - 3)
        parent = (await fs.ops.mkdir(parent, name, stat.S_IFDIR | 0o700, ME)).st_ino
    handed = [0]
    folder = exporting.Destination.folder

    def counted(self, where) -> None:  # a whole path (before the fix) or a step: its name
        handed[0] += len(where) if isinstance(where, str) else len(where.name)
        folder(self, where)

    def joined(self) -> str:
        raise AssertionError("a whole path joined for an export that fails nowhere")

    monkeypatch.setattr(exporting.Destination, "folder", counted)
    monkeypatch.setattr("fusevault.host_access.way.Step.path", joined)  # for a message only
    dest = tmp_path / "his-folder"
    dest.mkdir()
    session = Session(fs.volume, NoKernel(), Tasks(), Direct(), HostThreads())
    with trio.fail_after(120):
        answer = await session.requests.handle({"cmd": "export", "path": "/", "dest": str(dest)})
    assert "error" not in answer, answer
    names = CHAIN * LONG
    print(f"paths handed to the way: {handed[0]:,} characters for {names:,} of names")
    assert handed[0] > 0  # the scene: every folder went through the way
    assert handed[0] < 4 * names  # seen: 11.3 MB for 75 KB of names


async def test_63c_3_an_export_of_a_file_past_path_max_is_refused_without_overwrite(fs, tmp_path) -> None:
    parent = ROOT
    for step in range(20):
        name = b"%03d" % step + b"d" * (LONG - 3)
        parent = (await fs.ops.mkdir(parent, name, stat.S_IFDIR | 0o700, ME)).st_ino
    await make(fs.ops, b"deep.txt", b"hello", parent=parent)
    dest = tmp_path / "his-folder"
    dest.mkdir()
    session = Session(fs.volume, NoKernel(), Tasks(), Direct(), HostThreads())
    with trio.fail_after(60):
        answer = await session.requests.handle({"cmd": "export", "path": "/", "dest": str(dest)})
    assert answer.get("files") == 1, str(answer)[-300:]  # seen: "...: File name too long"


async def test_63c_3_a_file_there_past_path_max_is_refused_before_anything_is_written(fs, tmp_path) -> None:
    """The check looks each name up in its own folder (through the way, making nothing): the file
    there is found, and refused, before the first file is written or a folder made."""
    new = (await fs.ops.mkdir(ROOT, b"000.new", stat.S_IFDIR | 0o700, ME)).st_ino  # first in order
    await make(fs.ops, b"x.txt", b"new", parent=new)
    await make(fs.ops, b"000.txt", b"new")
    parent = ROOT
    for step in range(20):
        name = b"%03d" % step + b"d" * (LONG - 3)
        parent = (await fs.ops.mkdir(parent, name, stat.S_IFDIR | 0o700, ME)).st_ino
    await make(fs.ops, b"deep.txt", b"hello", parent=parent)
    dest = tmp_path / "his-folder"
    dest.mkdir()
    fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    for step in range(20):  # his own copy of the chain, and of deep.txt in it
        name = f"{step:03d}" + "d" * (LONG - 3)
        os.mkdir(name, dir_fd=fd)
        inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
    try:
        os.close(os.open("deep.txt", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
        session = Session(fs.volume, NoKernel(), Tasks(), Direct(), HostThreads())
        with trio.fail_after(60):
            answer = await session.requests.handle({"cmd": "export", "path": "/", "dest": str(dest)})
        assert "deep.txt exists (use --overwrite" in answer.get("error", ""), str(answer)[-300:]
        assert os.listdir(dest) == ["000" + "d" * (LONG - 3)]  # neither 000.new nor 000.txt
        assert os.stat("deep.txt", dir_fd=fd).st_size == 0  # his, kept
    finally:
        os.close(fd)


async def test_control_63c_3_the_same_export_with_overwrite_writes_the_file(fs, tmp_path) -> None:
    parent = ROOT
    for step in range(20):
        name = b"%03d" % step + b"d" * (LONG - 3)
        parent = (await fs.ops.mkdir(parent, name, stat.S_IFDIR | 0o700, ME)).st_ino
    await make(fs.ops, b"deep.txt", b"hello", parent=parent)
    dest = tmp_path / "his-folder"
    dest.mkdir()
    session = Session(fs.volume, NoKernel(), Tasks(), Direct(), HostThreads())
    with trio.fail_after(60):
        answer = await session.requests.handle({"cmd": "export", "path": "/", "dest": str(dest),
                                                "overwrite": True})
    assert answer.get("files") == 1, str(answer)[-300:]
