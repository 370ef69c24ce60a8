"""A re-key is owed to the peers until its recipients' key files are written (vault/files/rekeying.py,
sync/key_mirror.py ``unmirrored``): its node's new epoch is committed first, and a sync status that said
nothing was pending in between was taken at its word: a device that joined then held the file at an
epoch it had no key for, and showed nothing of it, until her next mount pushed the keys (seen once in a
CI run of tests/mount/test_trust_attack_round25a.py, her restore's re-key)."""

from __future__ import annotations

import stat

import trio
from attack_scenes import ALICE, ask

from fusevault.sync.key_mirror import KeyMirror
from inprocess.conftest import ROOT, shared  # noqa: F401  (fixture)
from inprocess.test_two_users import _write


def test_a_re_key_is_pending_up_from_its_commit_until_its_recipients_key_files_are_mirrored(
        shared) -> None:  # noqa: F811
    seen: list[tuple[int, int]] = []

    async def scene() -> None:
        drive, alice = shared.drive, shared.volumes["alice"]
        d = await drive.mkdir(ROOT, b"D", stat.S_IFDIR | 0o755, ALICE)
        await _write(drive, d.st_ino, b"h.txt", b"her h\n", ALICE)
        await ask(shared, "share", "D", "READ")
        mirror = KeyMirror(shared.store, alice.layout)
        await mirror.refresh()
        assert mirror.unmirrored() == 0, "the scene: every key file mirrored"
        node = alice.resolve(b"D/h.txt")
        guests = alice.tree.sharing
        seal_keys = guests.seal_keys

        def spied(*args, **kwargs):  # the moment after the node's commit, before the key files
            seen.append((node.epoch, mirror.unmirrored()))
            return seal_keys(*args, **kwargs)

        guests.seal_keys = spied
        before = node.epoch
        await alice.rekey(node)
        assert node.epoch > before and seen and seen[0][0] == node.epoch, f"the scene: {seen}"
        assert mirror.unmirrored() == 1, "the key files written since the last look"
        await mirror.refresh()
        assert mirror.unmirrored() == 0

    trio.run(scene)
    assert all(owed >= 1 for _, owed in seen), (
        f"a re-key's node committed at its new epoch and its key files not written: owed {seen}")
