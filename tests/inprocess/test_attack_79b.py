"""Attack round 79b, controls of d37fc17 (the ledger's ``links`` of her hard-linked nodes, put back by
rebuilding.py ``_where_it_was``): the holes and what was tried are in tests/unit/test_attack_79b.py.

In-process, as tests/inprocess/test_attack_77c.py: her D shared READ with bob, her file h.txt with a
second link; a change of its links by her, then a refused state of bob's (a touch, a deletion) or the
server's replay of her older state; her lock, unlock and save: D (and S) list as mounted.  Each held.
"""

from __future__ import annotations

import json
import stat

import pytest
import trio
from attack_scenes import ALICE, ask, bobs_node_doc, planted

from fusevault.crypto import aead
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64e
from fusevault.vault.model.nodes import open_node_attrs
from inprocess.conftest import ROOT, shared  # noqa: F401  (fixture)
from inprocess.test_attack_77c import _bobs_deletion, _by_name, _unlock_save_unlock
from inprocess.test_two_users import _write


def _bobs_folder_deletion(shared, fid: str, path: str) -> dict:  # noqa: F811
    bob = shared.volumes["bob"]
    dek = bob.find(fid).dek
    doc = shared.store.get(fid)
    attrs = {**open_node_attrs(doc, dek), "links": [], "trashed": [path, 1]}
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig")}
    body["delete"] = True
    body["enc"] = b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", fid)))
    return sign_doc(bob.key.user_id, bob.key.identity.sign, body)


@pytest.mark.parametrize("how", [
    "unlink", "rename_link", "rename_onto_her_other_link", "rename_other_over",
    "replay_of_her_two_link_state_after_unlink", "link_in_subfolder_both_deleted",
    "link_in_subfolder_touched",
])
def test_79b_control_her_links_as_mounted_at_her_unlock(shared, how: str) -> None:  # noqa: F811
    async def scene() -> tuple[list[dict], list[dict], list[dict]]:
        drive, alice = shared.drive, shared.volumes["alice"]
        d = await drive.mkdir(ROOT, b"D", stat.S_IFDIR | 0o755, ALICE)
        s = await drive.mkdir(d.st_ino, b"S", stat.S_IFDIR | 0o755, ALICE)
        entry = await _write(drive, d.st_ino, b"h.txt", b"her h\n", ALICE)
        second = s if how.startswith("link_in_subfolder") or how.startswith("replay") else d
        await drive.link(entry.st_ino, second.st_ino, b"h2.txt", ALICE)
        await _write(drive, d.st_ino, b"g.txt", b"her g\n", ALICE)
        h, dfid, sfid = alice.resolve(b"D/h.txt").fid, alice.resolve(b"D").fid, alice.resolve(b"D/S").fid
        await ask(shared, "share", "D", "READ")  # bob reads D
        if how == "replay_of_her_two_link_state_after_unlink":
            older = shared.store.get(h)
            await drive.unlink(s.st_ino, b"h2.txt", ALICE)
            body = {k: v for k, v in older.items() if k != "_rev"}
            shared.store.put_many([{**body, "_rev": shared.store.get(h)["_rev"]}])
        elif how == "link_in_subfolder_both_deleted":
            planted(shared, _bobs_deletion(shared, h))
            planted(shared, _bobs_folder_deletion(shared, sfid, "D/S"))
        elif how == "link_in_subfolder_touched":
            planted(shared, bobs_node_doc(shared, h, {"mtime": 7}))
            planted(shared, bobs_node_doc(shared, sfid, {"mtime": 7}))
        else:
            if how == "unlink":
                await drive.unlink(d.st_ino, b"h2.txt", ALICE)
            elif how == "rename_link":
                await drive.rename(d.st_ino, b"h2.txt", d.st_ino, b"h3.txt", 0, ALICE)
            elif how == "rename_onto_her_other_link":  # POSIX: both names stay
                await drive.rename(d.st_ino, b"h2.txt", d.st_ino, b"h.txt", 0, ALICE)
            else:
                await drive.rename(d.st_ino, b"g.txt", d.st_ino, b"h2.txt", 0, ALICE)
            planted(shared, bobs_node_doc(shared, h, {"mtime": 7}))  # his "touch": refused, READ
        mounted = [_by_name(alice, dfid), _by_name(alice, sfid)]
        unlocked, saved = await _unlock_save_unlock(alice, [dfid, sfid], [h])
        return mounted, unlocked, saved

    mounted, unlocked, saved = trio.run(scene)
    assert (unlocked, saved) == (mounted, mounted), (
        f"mounted: {mounted}; unlocked: {unlocked}; saved: {saved}")
