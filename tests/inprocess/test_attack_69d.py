"""Attack round 69d, in-process: a local user of root's shared mount.

(2) Every change of a Share, Group or user document makes every unlocked seat read and check again
    every Share, Group and user document of the vault, on the trio loop that serves every user's
    files.
    Attacker: bob, a mapped user of the shared mount (alice unlocked beside him), nothing more.
    Steps: bob shares S files of his own with alice (one `share` each: ordinary use; any vault
    whose users share much holds as many); then he asks `config set settle_seconds 3` (or `share`
    of one file again) in a loop.
    Seen: each such request writes one document (his user document, or one Share), and the commit's
    listener (store/watched.py: on the loop) has every unlocked seat run `Guests.reload`
    (vault/services/absorbing.py:103, `absorb`; vault/tree/guests.py:90): all S Shares read, shape
    checked, their signature and freshness checked, the grants indexed, every node of the seat's
    tree walked (`_drop_unreached`) - synchronously, for each seat.  Counted here: with S = 60, one
    `config set` checks 120 Shares on the loop (2 seats x S).  Measured (in-process, the Shares made
    with the listener off, then one reload): 2,000 Shares, 2 seats: 0.25 and 0.28 s of the loop per
    `config set` (~0.065 ms per Share per seat; the first one 6.4 s, alice's seat admitting the
    2,000 new guests); by extrapolation 5,000 Shares with 10 users unlocked ~3 s of the loop per
    request: bob's `config set` in a loop (one request at a time suffices: `Requests.turn` does not
    bound it) holds every user's file requests for seconds
    each time.  Building the Shares is itself quadratic: each `share` pays the reloads for the ones
    before, and `share` grows with S even with the listener off (2,000 made in 235 s; not looked
    into: which part, and whether on the loop).
    Expected (docs/SECURITY.md "The control socket cannot be used to take a mount down": "a long
    request ... is read on a worker thread from a snapshot of the store, never on the loop that
    serves every user's files"): a change costs the loop in proportion to what changed.
    Cause: `absorb` reloads the whole `Guests` for any document of the SHARING_TYPES, for every seat,
    whoever wrote it, and on the loop (`WatchedStore._tell` runs the listener there).
    Impact: medium-low (a flood that stalls the mount for every user, in proportion to the vault's
    shares and the users unlocked; honest vaults pay it too at each `share`, `config set`, `passwd`).
    Suggested fix: take in only the documents that changed (a Share's grant added or dropped in the
    index, a user's document re-observed), the signatures checked once per revision; or reload in a
    worker thread from a snapshot and swap the index on the loop.
"""

from __future__ import annotations

import threading

import pytest

from fusevault.host_access import Direct
from fusevault.vault.model import grants
from fusevault.vault.services.requests import Requests
from inprocess.conftest import BOB_UID, FILE, ROOT, Ctx

BOB = Ctx(BOB_UID, BOB_UID)
SHARES = 60


@pytest.mark.xfail(strict=True, reason="69d (2): one change of a user or Share document makes every "
                                       "seat check every Share of the vault again, on the loop")
async def test_69d_2_one_config_set_costs_the_loop_what_changed_not_every_share_for_every_seat(
        shared, monkeypatch) -> None:
    drive, bob = shared.drive, shared.volumes["bob"]
    requests = Requests(bob, host=Direct())
    for i in range(SHARES):
        info, _ = await drive.create(ROOT, f"f{i}".encode(), FILE, 0o101, BOB)
        await drive.release(info.fh)
        answer = await requests.handle({"cmd": "share", "path": f"f{i}", "with": "alice", "perm": "read"})
        assert "error" not in answer, answer
    loop = threading.current_thread()
    on_loop = []
    checked = grants.signed_by_owner

    def counting(*args, **kwargs):
        if threading.current_thread() is loop:
            on_loop.append(args[1].get("_id"))
        return checked(*args, **kwargs)

    monkeypatch.setattr(grants, "signed_by_owner", counting)
    answer = await requests.handle({"cmd": "config", "set": {"settle_seconds": "3"}})
    assert answer["settings"]["settle_seconds"] == 3.0, answer
    shares = sum(1 for doc_id in on_loop if str(doc_id).startswith("share"))
    assert shares <= 10, f"one config set checked {shares} Shares on the loop ({SHARES} in the vault)"
