"""Attack round 73d (draft)."""

from __future__ import annotations

import stat
import time

import pytest
import trio
from attack_scenes import BOB

from fusevault.vault.model import names
from fusevault.vault.services.absorbing import absorb_arrivals
from fusevault.vault.tree import namespace
from fusevault.vault.volume import Volume
from inprocess.conftest import BOB_UID, ROOT, shared  # noqa: F401  (fixture)
from inprocess.test_attack_70a import _signed_by
from inprocess.test_two_users import _write


async def _bob_shares(shared, path: str, perm: str = "READ") -> None:  # noqa: F811
    requests = shared.drive.seat_of(BOB_UID).ops.session.requests
    answer = await requests.handle({"cmd": "share", "path": path, "with": "alice", "perm": perm})
    assert "error" not in answer, answer


def _clashes(shared, monkeypatch, n: int, prefix: bool, at_load: bool) -> tuple[int, float, int]:  # noqa: F811
    async def scene():
        drive, alice, bob = shared.drive, shared.volumes["alice"], shared.volumes["bob"]
        p = await drive.mkdir(ROOT, b"P", stat.S_IFDIR | 0o755, BOB)
        await _bob_shares(shared, "P")
        fids = [("deadbeef" if prefix else format(k, "08x")) + format(k, "024x") for k in range(n)]
        for k, fid in enumerate(fids):
            monkeypatch.setattr(namespace, "new_id", lambda fid=fid: fid)
            await _write(drive, p.st_ino, b"f%d" % k, b"x", BOB)
        monkeypatch.undo()
        pfid = bob.resolve(b"P").fid
        docs = []
        for fid in fids:
            doc = _signed_by(shared, "bob", fid, {"links": [[pfid, "x"]]})
            doc["_rev"] = shared.store.get(fid)["_rev"]
            docs.append(doc)
        revs = shared.store.put_many(docs)
        arrived = [{**doc, "_rev": rev} for doc, rev in zip(docs, revs, strict=True)]
        calls = [0]
        real = names.ending

        def counted(*args):
            calls[0] += 1
            return real(*args)

        monkeypatch.setattr(names, "ending", counted)
        began = time.process_time()
        if at_load:
            seat = Volume.load(alice.layout, alice.store, alice.key, alice.tree.get(1).fid)
        else:
            seat = alice
            absorb_arrivals(alice, arrived)
        spent = time.process_time() - began
        monkeypatch.undo()
        try:
            shown = len(seat.resolve(b"shared/bob/P").children)
        finally:
            if at_load:
                await seat.close()
        return calls[0], spent, shown

    return trio.run(scene)


N = 200  # files of bob's in his folder P, all named "x" by his own documents


@pytest.mark.parametrize("at_load", [
    pytest.param(True, id="at_her_unlock"),
    pytest.param(False, id="on_arrival"),
])
@pytest.mark.xfail(strict=True, reason="73d (1): a name clash looks at every name beside before it "
                   "whose node's id shares 8 hex digits: n files of one name cost n^2/2 looks")
def test_73d_1_files_of_one_name_and_id_prefix_cost_linear_looks(shared, monkeypatch, at_load) -> None:  # noqa: F811
    looks, _, shown = _clashes(shared, monkeypatch, N, prefix=True, at_load=at_load)
    assert shown == N, "the scene: every file of P is shown, N - 1 beside the one holding x"
    assert looks <= 20 * N, f"{looks} names looked at to show {N} files of one name (N^2/2 = {N * N // 2})"


@pytest.mark.parametrize("at_load", [
    pytest.param(True, id="at_her_unlock"),
    pytest.param(False, id="on_arrival"),
])
def test_73d_control_1_files_of_one_name_and_ids_apart_cost_one_look_each(
        shared, monkeypatch, at_load) -> None:  # noqa: F811
    looks, _, shown = _clashes(shared, monkeypatch, N, prefix=False, at_load=at_load)
    assert shown == N and looks < N, (looks, shown)
