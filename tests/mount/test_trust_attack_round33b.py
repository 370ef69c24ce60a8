"""Attack round 33b: the signed lineage and rollback detection (rounds 28b, 30a, 31b fixes).

Both holes are fixed (docs/SECURITY.md "Attack round 33"): their tests pass now.  Hole 1: a state
taken as the file's only live state (no other live branch in the store) supersedes every state seen
before of another device or writer (vault/model/ledger.py ``superseded``, at arrival and at load);
her devices' numbers go on in the ``over`` she signs next.  Hole 2: a device id is at most 32 letters
or digits (vault/model/nodes.py ``device_ok``), and a file's entry keeps at most ``DEVICES`` devices
(ledger.py ``_fewer``; tests/unit/test_ledger_devices.py).

Holes
=====

1. A WRITE grantee's edit (or deletion) of her file is undone silently on her own device: the server
   puts her own preceding state back as the newest revision.
   Scene: alice's laptop makes proj/plan.txt, shares proj with bob (WRITE), writes "alice v1" (seq
   (laptop, n)) and unmounts.  bob, an honest grantee on another device, writes "bob v2" (``[bob]``), renames
   plan.txt to renamed.txt (``[bob-rename]``) or deletes it (``[bob-delete]``).
   The laptop mounts and takes bob's change (no alarm).
   Attacker: the CouchDB server (no key), which puts alice's own "alice v1" document back as the
   newest revision (``adversary.Server.put``).
   Seen: the laptop shows "alice v1" again (the renamed or deleted file is back under its old
   name, with v1), and ``status`` lists no
   rollback alarm.  Control: the same scene with alice's desktop making the second edit instead of
   bob: refused with a rollback alarm, "desktop v2" kept (``[desktop]``, passes).
   Cause: fusevault/vault/model/ledger.py:331-345 ``Ledger.older``/``_covers``: the replayed (laptop, n)
   is exactly the newest number of the laptop seen here, and nothing covers it.  bob's state is
   recorded apart (:110-131 ``writer_seq``/``apart``, ``<device>/<signer>``), his ``over`` is dropped at
   reading (vault/model/nodes.py:373-374, rightly: his word), and on taking his state the ledger never
   notes that the state it held (her own (laptop, n)) is now superseded here (:535-536 ``admit``
   records his seq and covers only ``fresh.over``, None for a writer; the same at load,
   ``check_loaded``).  Another device of hers that saw (laptop, n) before bob's change should by
   reading be open to it as well, until its own next commit of the file (the one scene run on her
   desktop held for that reason: below).
   bob's own device refuses the replay (his commit signs ``over`` of her state,
   ``made_over``).
   Impact: whatever a grantee writes, renames or deletes after her last save, the server
   can take back on her device with no alarm (the bytes she reads are old, a deleted file returns), despite
   "rollback is detected"; it needs only her old revision, which the server keeps anyway.
   Fix: when a device takes a newer state of a file over the state it held (``admit``, and
   ``check_loaded`` against the ledger's entry), ``cover`` the seq of the state held, capped at what
   this device itself recorded from that device (so a writer covers no number of hers not yet seen
   here); ``made_over`` then signs it onward (as round 30a).  Or: take a writer's ``over`` entries
   naming her devices, capped at the numbers this device recorded.
   The same at load, by a writer of her vault folder: bob edits on the same vault folder, alice mounts
   once (takes his state, reads nothing), the writer puts her "alice v1" document back as current in
   store.sqlite (``adversary.put``); her next mount shows "alice v1", no alarm (``check_loaded``:
   not ``older``, and ``own_replay`` needs ``older`` too).
   Test: ``test_a_grantees_edit_is_not_rolled_back_by_her_own_preceding_state_replayed[bob]``,
   ``[bob-rename]``, ``[bob-delete]`` (xfail: "the laptop shows b'alice v1' (alarms: [])");
   ``test_a_grantees_edit_is_not_rolled_back_at_load_by_her_own_preceding_document_put_in_the_store[True]``
   (control ``[False]`` passes; xfail: "alice shows b'alice v1', no rollback alarm").

2. A grantee grows her ledger without bound: every device name he signs in a ``seq`` is kept for ever.
   Scene: bob (WRITE on team/notes.txt) re-signs alice's notes.txt document 4 times, each naming a new
   device in ``seq`` (a 256 KiB name: nothing bounds it); alice mounts after each (the document was put
   in her vault folder's store; by reading, the server can do the same through sync while she is
   mounted).
   Seen: her sealed ledger grows by 1,048,744 bytes, while the current document is 350 KB: each name
   stays after the document naming it is superseded; nothing refuses the name.
   Cause: fusevault/vault/model/nodes.py:108-109 and ledger.py:100-107 ``seq_of`` check only that the
   device is a str without "/" (no length, no form: a client's device id is 16 hex digits,
   ledger.py ``uuid4().hex[:16]``); ledger.py:363-372 ``record`` adds a key per device to the file's
   entry and nothing ever removes one (``fids`` keeps every file ever seen, by design, but also every
   device ever named).  The whole ledger is sealed and rewritten (fsync) at load, every 5 s while it
   changes, and at unmount (:283-310), so its size is paid again at each of her edits.
   Impact: a grantee (any user who may write one of her files, or who shares his own file with her:
   then his ``seq`` is kept as is) makes her ledger, memory and every ledger write as large as he
   likes, a document at a time, on each of her devices; an unbounded cost, never reclaimed.  (By
   reading: ``branches`` grows likewise with the live leaves of an unsettled conflict of a file whose
   owner is the attacker.)
   Fix: refuse a ``seq`` (and ``over``) device that is not 16 lower-case hex digits (nodes.py, where
   the "/" is refused); keep at most a few writer entries per file (the newest few per signer), or
   none once his state is superseded by the owner's.
   Test: ``test_a_grantees_seq_device_names_do_not_grow_her_ledger_without_bound`` (xfail: "her ledger
   grew by 1048744 bytes").

What held
=========

- Her other device's superseded state replayed after her desktop's edit: refused with an alarm, the
  newer edit kept (``[desktop]`` control of hole 1, passes): her signed ``over`` covers it.
- The same replay of her laptop's v1 to her DESKTOP (which saw v1 at one mount, then bob's v2 made on
  that same vault folder by his mount): refused with a rollback alarm, "bob v2" kept
  (``[bob-on-desktop]``, passes).  Why (seen in a diagnostic run, opening the documents with her key):
  the desktop's first mount committed plan.txt itself (seq (desktop, 1), ``over: {laptop: 3}``: bob's
  later document names both in its own ``over``), presumably the lazy commit of the read (atime) at
  unmount; that covers the laptop's state.  So hole 1's window on a device is from taking the
  grantee's change until that device's next own commit of the file (its counter then passes n, or its
  ``over`` covers it); a file he deleted gets no such commit.  A desktop that took v1 with no commit
  of its own was not run.
- Read only (no test): a writer's ``over`` is dropped at reading (nodes.py:373); a writer's ``seq``
  naming her device is kept apart and reaches ``made_over`` only up to numbers this device recorded;
  ``check_loaded`` raises the counter only from ``over`` of her own nodes, and within ``MAX_LAG``, so
  no server or grantee number raises or freezes her counter.

Not tried
=========

(A half-hour round.)  Hole 1 on a desktop that took her laptop's state with no commit of its own (by
reading, open too); whether her lazy commit after the replay spreads
"alice v1" to her other devices; a grantee's raw ``seq`` naming her laptop at the number the desktop
recorded, concurrent with the laptop's state of that number (a conflict); a restore of her state
folder together with an old store.sqlite; ``kill -9`` mid-commit then remount; a share document, group
membership or settings body rolled back; a fresh device (documented: it knows nothing).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import adversary
import pytest
from attack_scenes import resigned_by_bob, share
from conftest import (
    PouchServer,
    first_device,
    fusevault,
    mounted,
    new_device,
    settled,
    wait_for,
)

from fusevault.crypto.signing import signer_of
from mount.test_trust_attack_round28b import _rollbacks, changed
from mount.test_trust_writes import BOB, _admin, _node_fid, _user


def _grantee_edit_then_replay(tmp_path: Path, second: str) -> tuple[bytes, bytes, list[dict]]:
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        couch = adversary.Server(url)
        laptop = first_device(url, tmp_path)
        _admin(laptop, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
        with mounted(laptop, tmp_path / "a") as a:
            (a / "proj").mkdir()
            (a / "proj" / "plan.txt").write_bytes(b"as it was")
            shared = fusevault("share", a / "proj", "--with", "bob", "--perm", "WRITE")
            assert shared.returncode == 0, shared.stderr
            wait_for(lambda: settled(a), "the first push")
            roots = {u.get("root") for u in adversary.docs(laptop, "UserDetails")}
            before = {d["_id"]: d for d in couch.all("node")}
            (a / "proj" / "plan.txt").write_bytes(b"alice v1")
            wait_for(lambda: settled(a), "alice's v1 pushed")
            old = {d["_id"]: d for d in couch.all("node")}
            (fid,) = [f for f in changed(before, old, "") if f not in roots]
        other = new_device(url, tmp_path, "desktop")
        victim = laptop
        if second == "bob-on-desktop":  # her desktop sees her laptop's v1 first, then bob's v2
            victim = other
            with mounted(other, tmp_path / "b") as b:
                wait_for(lambda: settled(b) and (b / "proj" / "plan.txt").exists()
                         and (b / "proj" / "plan.txt").read_bytes() == b"alice v1", "v1 on the desktop")
        if second.startswith("bob"):
            with mounted(other, tmp_path / "c", "--user", "bob", passphrase=BOB) as c:
                plan = c / "shared" / "alice" / "proj" / "plan.txt"
                wait_for(lambda: plan.exists() and settled(c) and plan.read_bytes() == b"alice v1",
                         "bob's view of proj")
                if second == "bob-rename":
                    plan.rename(plan.with_name("renamed.txt"))
                    newer = b"gone"
                elif second != "bob-delete":
                    plan.write_bytes(b"bob v2")
                    newer = b"bob v2"
                else:
                    plan.unlink()
                    newer = b"gone"
                wait_for(lambda: settled(c), "bob's change pushed")
        else:
            with mounted(other, tmp_path / "b") as b:
                plan = b / "proj" / "plan.txt"
                wait_for(lambda: plan.exists() and settled(b) and plan.read_bytes() == b"alice v1",
                         "the desktop's view of proj")
                plan.write_bytes(b"desktop v2")
                wait_for(lambda: settled(b), "the desktop's v2 pushed")
                newer = b"desktop v2"
        with mounted(victim, tmp_path / ("a" if victim == laptop else "b")) as a:
            plan = a / "proj" / "plan.txt"

            def shows() -> bytes:
                return plan.read_bytes() if plan.exists() else b"gone"

            wait_for(lambda: settled(a) and shows() == newer, "the second change on the laptop")
            assert _rollbacks(a) == []
            couch.put(old[fid])  # the server serves alice's own v1 as the newest revision
            wait_for(lambda: bool(_rollbacks(a)) or shows() != newer,
                     "the replay to reach the laptop (taken in, or refused with an alarm)")
            wait_for(lambda: settled(a), "the laptop to settle")
            return newer, shows(), _rollbacks(a)
    finally:
        server.stop()


@pytest.mark.parametrize("second", ["bob", "bob-rename", "bob-delete", "desktop", "bob-on-desktop"])
def test_a_grantees_edit_is_not_rolled_back_by_her_own_preceding_state_replayed(
        tmp_path: Path, second: str) -> None:
    newer, shown, said = _grantee_edit_then_replay(tmp_path, second)
    assert shown == newer, f"the laptop shows {shown!r} (alarms: {said})"
    assert said, "no rollback alarm"


# --- 2. a grantee's device names: her ledger grows without bound

SIZE = 256 * 1024  # the length of each device name bob signs
FLOOD = 4  # how many of his documents she loads


def _ledger_of(vault: Path) -> Path:
    """alice's ledger file of ``vault`` (vault/model/ledger.py ``ledger_path``)."""
    alice = _user(vault, "alice")["_id"]
    name = hashlib.sha256(f"{os.path.realpath(vault)}\0{alice}".encode()).hexdigest()[:32]
    return Path(os.environ["FUSEVAULT_STATE_DIR"]) / "ledger" / name


def test_a_grantees_seq_device_names_do_not_grow_her_ledger_without_bound(
        vault: Path, tmp_path: Path) -> None:
    """bob (WRITE on team/notes.txt) re-signs alice's notes.txt FLOOD times, each time naming a new
    device in ``seq`` (a SIZE-long name); alice mounts after each.  Safe: her ledger keeps no more than
    a bounded record per writer (or refuses a device name no client makes)."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "team").mkdir()
        (mnt / "team" / "notes.txt").write_text("shared with bob")
        assert share(mnt, "team/notes.txt", "bob", "WRITE") is not None
    fid = _node_fid(vault, "alice", "notes.txt")
    ledger = _ledger_of(vault)
    base = ledger.stat().st_size
    good = adversary.get(vault, fid)
    for i in range(FLOOD):
        adversary.put(vault, good)  # each of bob's documents made over her state, not over his last
        resigned_by_bob(vault, fid, {"seq": [f"{i:04d}" + "x" * SIZE, 1]})
        with mounted(vault, mnt):
            assert (mnt / "team" / "notes.txt").read_text() == "shared with bob"
    doc = len(json.dumps(adversary.get(vault, fid)))
    grown = ledger.stat().st_size - base
    assert grown < 64 * 1024, (f"her ledger grew by {grown} bytes ({FLOOD} documents of bob's, the current "
                               f"one {doc} bytes): every device name he signs is kept for ever")


# --- 1, by a writer of her vault folder, at load


@pytest.mark.parametrize("attack", [True, False])
def test_a_grantees_edit_is_not_rolled_back_at_load_by_her_own_preceding_document_put_in_the_store(
        vault: Path, tmp_path: Path, attack: bool) -> None:
    """alice writes team/plan.txt "alice v1" (team WRITE to bob); bob writes "bob v2" on the same vault
    folder; alice mounts once (takes bob's state, reads nothing); a writer of the vault folder puts her
    own "alice v1" document back as current (``adversary.put``); alice mounts.  Safe: "bob v2", or an
    alarm.  ``attack=False``: the control, nothing put back: "bob v2"."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "team").mkdir()
        (mnt / "team" / "plan.txt").write_bytes(b"as it was")
        assert share(mnt, "team", "bob", "WRITE") is not None
        (mnt / "team" / "plan.txt").write_bytes(b"alice v1")
    fid = _node_fid(vault, "alice", "plan.txt")
    old = adversary.get(vault, fid)
    with mounted(vault, tmp_path / "bob", "--user", "bob", passphrase=BOB) as b:
        (b / "shared" / "alice" / "team" / "plan.txt").write_bytes(b"bob v2")
    with mounted(vault, mnt):
        assert _rollbacks(mnt) == []  # bob's state taken; plan.txt not read
    assert signer_of(adversary.get(vault, fid)) == _user(vault, "bob")["_id"], "bob's edit is not current"
    if attack:
        adversary.put(vault, old)
    with mounted(vault, mnt):
        shown, said = (mnt / "team" / "plan.txt").read_bytes(), _rollbacks(mnt)
    assert shown == b"bob v2" or said, f"alice shows {shown!r}, no rollback alarm"
