"""vault/files/rekeying.py: a re-key whose commit finds the store ahead of the node.

Another writer's change can be stored and not taken in yet (its version document or records still on
their way from the peer: the tree holds it back), so the node's revision is behind the store's and
the re-key's commit is refused by the store (Conflict).  Nothing is committed; the re-key waits and
tries again once the change is taken in, and the revoke succeeds.  It failed, before, with "document
... was changed by someone else" (exit 13): a revoke of a member while a writer's device pushed."""

from __future__ import annotations

import stat
from pathlib import Path

import trio
from conftest import PASSPHRASE
from mount.test_trust_attack_39a import _ask, _paused_re_seal, three  # noqa: F401  (fixture)

from fusevault.errors import Conflict
from fusevault.vault.files import open_files
from fusevault.vault.services.absorbing import absorb
from inprocess.conftest import ALICE_UID, ROOT, _composed
from inprocess.test_two_users import ALICE, _read, _write


def test_a_re_key_whose_commit_finds_a_newer_stored_revision_waits_for_it(
        three: Path,  # noqa: F811  (the fixture)
        monkeypatch) -> None:
    seats = {"alice": (PASSPHRASE, ALICE_UID)}
    real, refused = open_files.Files.commit_version, trio.Event()

    async def commit_version(self, node, *args, **kwargs):
        try:
            return await real(self, node, *args, **kwargs)
        except Conflict:
            refused.set()
            raise

    monkeypatch.setattr(open_files.Files, "commit_version", commit_version)
    with _composed(three, seats) as shared:
        async def scene() -> None:
            drive = shared.drive
            docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
            notes = await _write(drive, docs.st_ino, b"notes.txt", b"hers", ALICE)
            assert "error" not in await _ask(shared, "share", "docs", "carol", "READ")
            volume = drive.seat_of(ALICE_UID).ops.session.volume
            node = volume.resolve(b"docs/notes.txt")
            old = (node.dek, node.epoch)
            there, go = _paused_re_seal(monkeypatch, node.fid)
            answer: dict = {}
            async with trio.open_nursery() as nursery:
                async def unshare() -> None:
                    answer.update(await _ask(shared, "unshare", "docs", "carol"))

                nursery.start_soon(unshare)
                await there.wait()
                # A newer revision stored and not taken in (as one held back for its version is).
                store = volume.store.inner
                current = store.get(node.fid)
                (rev,) = store.put_many([current])
                go.set()
                await refused.wait()  # the re-key's commit met it
                absorb(volume, [{**current, "_rev": rev}], own=False)  # its version came: taken in
            assert "error" not in answer, answer
            assert (node.dek, node.epoch) != old, "not re-keyed"
            assert await _read(drive, notes.st_ino, ALICE) == b"hers"

        trio.run(scene)
