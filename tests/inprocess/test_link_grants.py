"""A WRITE grantee's node documents are judged per folder (vault/tree/authorship.py ``may_write``):
taking a name out of a folder needs WRITE on that folder, as putting one in does; a grant on the
file itself puts or takes no name.  In-process, as tests/mount/test_trust_attack_round7.py does:
alice and bob unlocked in one shared mount's ``Drive``, a document bob signs handed over as the
store watcher does."""

from __future__ import annotations

import stat

import trio
from attack_scenes import names_found
from mount.test_trust_attack_round7 import ALICE, BOB, _ask, _bobs_node_doc, _planted, _walk, _write

from inprocess.conftest import (  # noqa: F401  (fixtures)
    ROOT,
    shared,
    template_vault,
    vault_copy,
)


def test_a_writer_of_the_file_alone_cannot_move_it_out_of_the_owners_folder(shared) -> None:  # noqa: F811
    """alice shares her root file notes.txt with bob (WRITE) and her folder team (WRITE).  bob signs a
    node document of notes.txt that names it in team only: its name leaves alice's root, where he holds
    no WRITE.  Safe: notes.txt stays in alice's root, and team lists no notes.txt."""

    async def attack() -> tuple[bool, bool]:
        drive = shared.drive
        alice = shared.volumes["alice"]
        folder = await drive.mkdir(ROOT, b"team", stat.S_IFDIR | 0o755, ALICE)
        await _write(drive, ROOT, b"notes.txt", b"v1", ALICE)
        await _ask(shared, "share", "notes.txt", "WRITE")
        await _ask(shared, "share", "team", "WRITE")
        await _walk(drive, b"shared/alice/notes.txt", BOB)
        root = alice.tree.node(ROOT)
        notes, team = (alice.tree.node(root.children[name]) for name in (b"notes.txt", b"team"))
        assert not alice.tree.vouched
        _planted(shared, _bobs_node_doc(shared, notes.fid, {"links": [[team.fid, "notes.txt"]]}))
        await trio.sleep(0)
        in_root, in_team = await names_found(drive, (ROOT, folder.st_ino), b"notes.txt", ALICE)
        return in_root, in_team

    assert trio.run(attack) == (True, False), "bob took alice's notes.txt out of her root folder"
