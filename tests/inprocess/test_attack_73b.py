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
from fusevault.imports.import_records import Record, Stamp, record_doc
from fusevault.imports.importer import Importer
from fusevault.vault.model.settings import Settings
from fusevault.vault.services.placing import NoKernel
from fusevault.vault.volume import Volume
from inprocess.conftest import on_volume

RECORDS = 50


@pytest.mark.xfail(strict=True, reason="73b (1): her import records are read on the trio loop of root's "
                                       "shared mount (inline store call): seconds of a frozen mount per "
                                       "`config set`")
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
