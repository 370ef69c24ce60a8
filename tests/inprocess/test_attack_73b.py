"""Attack round 73b (in-process part): a local user of root's shared mount freezes it for every user.

(1) medium: her import records are read and opened on the trio loop that serves every user's files.
    Attacker: erin, a mapped user of root's shared mount (`--allow-other`), nothing more.
    Steps: she imports many files through her watched folder (empty files will do; folders of long
    names make each record bigger): each leaves an import record, kept as long as its source and its
    vault file stay (up to the walk's 100,000 names).  Then she changes a setting back and forth
    (`fusevault config set settle_seconds 0.3`, then `0.4`, ...), or locks and unlocks: each change
    restarts her import service, whose start (`Importer.load`) reads every record.
    Seen: `load_records` runs as `Volume.store_call`, which for the local store (`inline = True`, the
    shared mount's `WatchedStore` passes it on) calls it on the trio thread itself: every
    `ImportRecord` document of the store (every user's) is parsed there, and each of hers is unsealed
    and checked.  Measured in-process (`Importer.load` beside a trio task ticking every 10 ms, this
    machine, 2 shared cores): 20,000 records with ~3,800-byte paths: load 3.8 s, the loop stood still
    3.81 s; 20,000 records with short paths: 0.45 s.  Through the real shared mount (a probe, not
    kept: its figures are timings): erin's watched folder of 2,000 empty files under 17 folders of
    200-byte names was imported in 18-27 s (~75 files a second); then, while she sent four
    `config set settle_seconds 0.4/0.3`, a `stat` in the mount took up to 0.28 s (0.016-0.08 s
    without them), the loop frozen by each restart.  Linear: at the walk's bound (100,000 names,
    ~22 minutes of her imports), ~19 s of a frozen mount (every user's `ls`, `cat`, saves, the
    control socket) per `config set` she sends, and she may send the next at once (her requests
    wait their turn, the restart does not).
    Expected (docs/SECURITY.md, 24c: "what stays on the loop are short store calls (one commit, one
    document)"; the threat table: another local user must never take the mount down): a long read of
    the store runs on a worker thread from a snapshot (`Inodes.read_call`), as the trash, a history
    and gc's reads do since round 24c.
    Cause: fusevault/imports/importer.py:241 (`Importer.load`: `self.vol.store_call(load_records, ...)`),
    fusevault/vault/tree/inodes.py:656 (`store_call`: inline for the local store);
    fusevault/store/sealed.py:35 (`sealed_bodies` iterates every user's documents of the kind).
    Impact: a mapped user stops the shared mount for everyone, repeatedly, for seconds at a time.
    Suggested fix: read the records with `read_call` (a snapshot on a worker thread: `load_records`
    without its write, the drop of records past PATH_MAX done after it by `store_call`); or an index
    of the records by owner, and `sealed_bodies` unsealing hers in a worker thread.
    Test: `test_73b_1_her_import_records_are_read_off_the_loop` (deterministic: where the read runs,
    not how long it takes).

Fixed (round 73b's fixer): every read of the store whose length its contents set runs through
``read_call`` (a worker thread, a snapshot): the import records (``Importer.load``), the link records
(``Links._records``), the Rotation requests (``rotation._requests_of``), gc's look at a batch
(``_deleted_here``); a drop of records deletes ``DROP_BATCH`` a store call, the loop's other tasks
between; and a scan made inside an inline ``store_call`` is refused (store/short_calls.py), so a call
site left on the loop fails at once.  The tests after the attacker's say where each runs.

Tried, held (this file's layer): nothing else in-process; the real-mount probes and controls are in
tests/mount/test_attack_73b.py (its docstring lists what held there).
Not tried: the other long calls still made by `store_call` on the loop (`rotation._rotation_pass`'s
`iter_type(ROTATION)` over every user's requests, `Importer.drop_unseen`'s deletion of up to twice the
kept records plus 1,000 in one call, gc's `_deleted_here`): each looks like the same pattern, none was
measured.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from fusevault.imports import importer as importing
from fusevault.imports.import_records import Record, Stamp, record_doc, record_id
from fusevault.imports.importer import Importer
from fusevault.imports.locations import Location
from fusevault.imports.watcher import walk
from fusevault.store.local import LocalStore
from fusevault.store.short_calls import LongCallOnLoop
from fusevault.vault.model.nodes import NODE
from fusevault.vault.model.settings import Settings
from fusevault.vault.model.sharing import ROTATION
from fusevault.vault.services import gc, rotation
from fusevault.vault.services.placing import NoKernel
from fusevault.vault.volume import Volume
from inprocess.conftest import on_volume

RECORDS = 50


def test_73b_1_her_import_records_are_read_off_the_loop(vault_copy: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    on_loop: list[bool] = []
    real = importing.load_records

    def watched(*args: object) -> object:
        on_loop.append(trio.lowlevel.in_trio_task())  # False in a worker thread
        return real(*args)

    monkeypatch.setattr(importing, "load_records", watched)

    async def body(volume: Volume) -> int:
        docs = [record_doc(volume.key, Record(f"in/f{i}", Stamp(0, 0, i, 1, 0), "0" * 64, "x" * 32,
                                              f"Imported/in/f{i}", 0)) for i in range(RECORDS)]
        await volume.store_call(volume.store.put_many, docs)
        importer = Importer(volume, Settings(source_dir_to_watch=str(inbox)), NoKernel())
        try:
            await importer.load()
        finally:
            importer.close()
        return len(importer.records)

    assert volume_is_local_and_inline(vault_copy)
    assert on_volume(vault_copy, body) == RECORDS  # the control: every record of hers is loaded
    assert on_loop == [False], "her import records were read and opened on the loop that serves every user"


def volume_is_local_and_inline(vault: Path) -> bool:
    """The store of the scene is the local one (the default, and the shared mount's): it says its calls
    may run on the trio loop."""
    async def inline(volume: Volume) -> bool:
        return bool(volume.store.inline)

    return on_volume(vault, inline)


def test_73b_1_a_scan_in_a_store_call_on_the_loop_is_refused_and_read_call_makes_it(vault_copy: Path) -> None:
    """The rule, whatever the caller: inline (the local store), ``store_call`` runs short work only; a
    read of every document of a kind made inside it raises, and the same read through ``read_call``
    is made (on a worker thread).  A look by id stays a ``store_call``."""
    async def body(volume: Volume) -> tuple[int, bool]:
        with pytest.raises(LongCallOnLoop):
            await volume.store_call(lambda: list(volume.store.iter_type(NODE)))
        nodes = await volume.read_call(lambda: list(volume.store.iter_type(NODE)))
        return len(nodes), await volume.store_call(volume.store.get, volume.key.user_id) is not None

    nodes, got = on_volume(vault_copy, body)
    assert nodes >= 1 and got


def _watch_iter_type(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Every scan of the local store, its kind and whether it ran in a trio task (the loop)."""
    seen: list[tuple[str, bool]] = []
    real = LocalStore.iter_type

    def watched(self: LocalStore, doc_type: str) -> object:
        seen.append((doc_type, trio.lowlevel.in_trio_task()))
        return real(self, doc_type)

    monkeypatch.setattr(LocalStore, "iter_type", watched)
    return seen


def test_73b_1_the_rotation_pass_reads_every_users_requests_off_the_loop(
        vault_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``_rotation_pass`` reads the Rotation documents of every user: on a worker thread; of them it
    keeps hers (and those of no clear owner, said as malformed), another user's never looked at."""
    async def body(volume: Volume) -> list[str]:
        me = volume.key.user_id
        await volume.store_call(volume.store.put_many, [
            {"_id": f"rotate-{i}", "type": ROTATION, "owner": owner, "fid": "0" * 32, "epoch": 0}
            for i, owner in enumerate(("someone-else", me, None))])
        seen.clear()
        await rotation._rotation_pass(volume, False)
        return sorted(d["_id"] for d in await volume.read_call(rotation._requests_of, volume.store, me))

    seen = _watch_iter_type(monkeypatch)
    assert on_volume(vault_copy, body) == ["rotate-1", "rotate-2"]
    rotations = [on_loop for kind, on_loop in seen if kind == ROTATION]
    assert rotations and not any(rotations), "every user's Rotation requests were read on the loop"


def test_73b_1_a_drop_of_records_deletes_a_batch_a_store_call_the_loop_serving_others_between(
        vault_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``drop_unseen`` deletes up to twice the records kept plus ``SLACK`` at once: never in one call on
    the loop; ``DROP_BATCH`` a store call, another task of the loop running between two.  Every record
    due goes (the control), the one whose source is still there stays."""
    monkeypatch.setattr(importing, "SLACK", 0)  # a drop due at once
    monkeypatch.setattr(importing, "DROP_BATCH", 1)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    gone = [f"g{i}.txt" for i in range(5)]
    for name in ["kept.txt", *gone]:
        (inbox / name).write_bytes(name.encode())
    settings = Settings(source_dir_to_watch=str(inbox))
    ticks = [0]
    calls: list[tuple[int, int]] = []  # (documents deleted, the other task's ticks then)
    real = importing.dropped_docs

    def counted(store: object, docs: list[tuple[str, str]]) -> None:
        calls.append((len(docs), ticks[0]))
        real(store, docs)  # type: ignore[arg-type]

    monkeypatch.setattr(importing, "dropped_docs", counted)
    parsed: list[bool] = []  # whether each location drop_unseen judged was parsed on the loop

    class Watched(Location):
        @classmethod
        def of(cls, location: str) -> Location:
            parsed.append(trio.lowlevel.in_trio_task())
            return Location.of(location)

    monkeypatch.setattr(importing, "Location", Watched)

    async def ticking() -> None:
        while True:
            ticks[0] += 1
            await trio.sleep(0)

    async def body(volume: Volume) -> tuple[list[str], bool]:
        importer = Importer(volume, settings, NoKernel())
        await importer.load()
        for name in ["kept.txt", *gone]:
            assert (await importer.take(name))[0] == "new"
        importer.close()
        folder = volume.resolve(b"Imported")
        for name in gone:
            await volume.unlink(folder.ino, name.encode())
            (inbox / name).unlink()
        fresh = Importer(volume, settings, NoKernel())
        await fresh.load()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticking)
            found = await fresh.in_source(walk)
            await fresh.drop_unseen(found, found.passed_over)
            nursery.cancel_scope.cancel()
        fresh.close()
        return sorted(fresh.records), all(volume.store.get(record_id(volume.key, n)) is None for n in gone)

    records, docs_gone = on_volume(vault_copy, body)
    assert records == ["kept.txt"] and docs_gone  # the control: every record due dropped, its document too
    assert sum(n for n, _ in calls) == len(gone)
    assert parsed and not any(parsed), "the records' locations were parsed on the loop"
    assert max(n for n, _ in calls) <= 1, f"{calls}: the records were deleted in one call on the loop"
    # trio runs the tasks ready at a checkpoint in a random order: the other task runs once after one
    # batch and before the batch after the next, never surely before the next one.
    assert all(before < after for (_, before), (_, after) in zip(calls, calls[2:])), \
        f"{calls}: no other task of the loop ran while the records were deleted"


def test_73b_1_gcs_look_at_a_batch_after_a_conflict_runs_off_the_loop(
        vault_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """gc's deletion of a batch met a conflict (a document deleted meanwhile, by a peer's gc): which of
    the batch are gone is looked up on a worker thread, then the rest deleted (the control)."""
    on_loop: list[bool] = []
    real = gc._deleted_here

    def watched(store: object, ids: list[str]) -> set[str]:
        on_loop.append(trio.lowlevel.in_trio_task())
        return real(store, ids)  # type: ignore[arg-type]

    monkeypatch.setattr(gc, "_deleted_here", watched)

    async def body(volume: Volume) -> bool:
        docs = [{"_id": f"v{i}", "type": "probe"} for i in range(3)]
        revs = await volume.store_call(volume.store.put_many, docs)
        await volume.store_call(volume.store.put_many, [{"_id": "v0", "_rev": revs[0], "_deleted": True}])
        done = await gc._delete(volume, [(f"v{i}", rev) for i, rev in enumerate(revs)])
        return done and all(volume.store.deleted(f"v{i}") for i in range(3))

    assert on_volume(vault_copy, body)
    assert on_loop == [False], "gc's look at its batch ran on the loop"
