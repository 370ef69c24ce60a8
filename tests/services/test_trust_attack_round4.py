"""Issue 22, attack round 4 (sync): the server replays an owner's own, validly signed, older revision
of a node, not as the newest revision (the ledger sees that: test_trust_rollback.py) but as a
concurrent branch (a CouchDB conflict), which vault/services/conflicts.py settles.

The attacker is the CouchDB server: no key, no passphrase; it only keeps what it was given and
writes it back with ``_bulk_docs`` / ``new_edits: false`` under a revision id of its own choosing
(``_rev`` is not signed: it cannot be).  Each test asserts the SAFE behaviour: the replayed state
is not taken in (no deleted file brought back, no rename undone), and it is reported.

Found at commit 2ede38f (main): vault/services/conflicts.py settles the replayed branch after
``Authorship.leaf_ok`` (its signature is alice's own, so it passes) without asking the rollback
ledger whether it is older than what this device has seen.  Both holes were closed the same day
(conflicts.py asks the ledger first; the tests pass):
- HOLE: rule 3 (one side's contents descend from the other's) gives the current contents the
  replayed revision's names: a rename is undone, with no alarm.
- HOLE: the same moves a file back into the folder it was in before that folder was shared:
  at the owner's next unlock her client seals its key to the recipient.
- held: a deleted file is not brought back by its replayed older revision (rollback alarm).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import adversary
import httpx
from conftest import first_device, fusevault, mount_status, mounted, settled, wait_for

from fusevault.store import replica
from fusevault.store.local import LocalStore


def _with_history(couch: adversary.Server, doc_id: str) -> dict:
    doc = couch.get(doc_id, revs="true")
    assert doc is not None
    return doc


def _replay_as_branch(couch: adversary.Server, old: dict) -> str:
    """Put ``old`` (a genuine revision with its ``_revisions``) back as a new leaf next to the
    current one: one generation on from it, a revision id the server picks (low, so the device's
    own revision stays CouchDB's winner and the replayed one is the "other" branch)."""
    revs = old["_revisions"]
    rev_id = "0" * 8 + secrets.token_hex(12)
    body = {k: v for k, v in old.items() if k not in ("_rev", "_revisions")}
    body["_rev"] = f"{revs['start'] + 1}-{rev_id}"
    body["_revisions"] = {"start": revs["start"] + 1, "ids": [rev_id, *revs["ids"]]}
    r = httpx.post(f"{couch.url}/_bulk_docs", content=json.dumps({"docs": [body], "new_edits": False}),
                   headers={"Content-Type": "application/json"}, timeout=30)
    r.raise_for_status()
    return body["_rev"]


def _known_here(vault: Path, doc_id: str, rev: str) -> bool:
    store = LocalStore(vault / "store.sqlite")
    try:
        return rev in replica._known(store, doc_id)
    finally:
        store.close()


def _fid_of(couch: adversary.Server, before: set[str]) -> str:
    (fid,) = {d["_id"] for d in couch.all("node")} - before
    return fid


def _alarms(mnt: Path) -> list[dict]:
    return mount_status(mnt)["alarms"]


def test_a_deleted_file_is_not_brought_back_by_its_older_revision_replayed_as_a_branch(
        couch: tuple[str, adversary.Server], tmp_path: Path) -> None:
    url, server = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        wait_for(lambda: settled(a), "the first push")
        before = {d["_id"] for d in server.all("node")}
        (a / "secret-plan.txt").write_bytes(b"to be deleted")
        wait_for(lambda: settled(a), "the file pushed")
        fid = _fid_of(server, before)
        old = _with_history(server, fid)  # the server keeps this genuine, signed revision
        (a / "secret-plan.txt").write_bytes(b"edited, then deleted")  # the deletion is generations on
        wait_for(lambda: settled(a) and server.get(fid)["_rev"] != old["_rev"], "the edit pushed")
        os.unlink(a / "secret-plan.txt")
        wait_for(lambda: settled(a) and server.get(fid)["_rev"] != old["_rev"], "the deletion pushed")
        assert "secret-plan.txt" not in os.listdir(a)

        rev = _replay_as_branch(server, old)
        wait_for(lambda: _known_here(laptop, fid, rev), "the replayed branch to arrive")
        wait_for(lambda: settled(a), "the sync to settle")
        (a / "marker.txt").write_bytes(b"after the replay")  # a round trip through the mount
        wait_for(lambda: settled(a), "the marker pushed")
        assert "secret-plan.txt" not in os.listdir(a), "the deleted file came back from a replayed revision"
        assert any(fid in json.dumps(x) for x in _alarms(a)), "no alarm for the replayed revision"


def test_a_rename_is_not_undone_by_an_older_revision_replayed_as_a_branch(
        couch: tuple[str, adversary.Server], tmp_path: Path) -> None:
    url, server = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        wait_for(lambda: settled(a), "the first push")
        before = {d["_id"] for d in server.all("node")}
        (a / "draft.txt").write_bytes(b"first words")
        wait_for(lambda: settled(a), "the file pushed")
        fid = _fid_of(server, before)
        old = _with_history(server, fid)
        os.rename(a / "draft.txt", a / "final.txt")
        (a / "final.txt").write_bytes(b"the final words")
        wait_for(lambda: settled(a) and server.get(fid)["_rev"] != old["_rev"], "the rename pushed")

        rev = _replay_as_branch(server, old)
        wait_for(lambda: _known_here(laptop, fid, rev), "the replayed branch to arrive")
        wait_for(lambda: settled(a), "the sync to settle")
        (a / "marker.txt").write_bytes(b"after the replay")
        wait_for(lambda: settled(a), "the marker pushed")
        assert sorted(os.listdir(a)) == ["final.txt", "marker.txt"], os.listdir(a)
        assert (a / "final.txt").read_bytes() == b"the final words"
        assert any(fid in json.dumps(x) for x in _alarms(a)), "no alarm for the replayed revision"


def test_a_file_moved_out_before_a_share_is_not_moved_back_into_it_by_a_replayed_branch(
        couch: tuple[str, adversary.Server], tmp_path: Path) -> None:
    """alice moves secret.txt out of proj into private/ and edits it; later she shares proj with bob.
    The server (colluding with bob, or bob who can write it) replays secret.txt's revision from when
    it was in proj as a concurrent branch.  Safe: secret.txt stays in private/, and bob gets no key
    for it."""
    from mount.test_trust_attack_round4 import _alice_dek, _bobs_dek
    from mount.test_trust_writes import BOB, _admin

    url, server = couch
    laptop = first_device(url, tmp_path)
    _admin(laptop, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    with mounted(laptop, tmp_path / "a") as a:
        (a / "proj").mkdir()
        (a / "private").mkdir()
        wait_for(lambda: settled(a), "the first push")
        before = {d["_id"] for d in server.all("node")}
        (a / "proj" / "secret.txt").write_bytes(b"a draft, in the project for a moment")
        wait_for(lambda: settled(a), "the file pushed")
        fid = _fid_of(server, before)
        old = _with_history(server, fid)
        os.rename(a / "proj" / "secret.txt", a / "private" / "secret.txt")
        (a / "private" / "secret.txt").write_bytes(b"the secret, never for bob")
        assert fusevault("share", a / "proj", "--with", "bob", "--perm", "READ").returncode == 0
        wait_for(lambda: settled(a) and server.get(fid)["_rev"] != old["_rev"], "the move pushed")

        rev = _replay_as_branch(server, old)
        wait_for(lambda: _known_here(laptop, fid, rev), "the replayed branch to arrive")
        wait_for(lambda: settled(a), "the sync to settle")
        (a / "proj" / "marker.txt").write_bytes(b"after the replay")
        wait_for(lambda: settled(a), "the marker pushed")
        in_proj = sorted(os.listdir(a / "proj"))
    with mounted(laptop, tmp_path / "a") as a:  # alice's next unlock: keys of her shares are filled in
        wait_for(lambda: settled(a), "the sync after the unlock")
    try:
        bob_has = _bobs_dek(laptop, fid) == _alice_dek(laptop, fid)
    except Exception:
        bob_has = False
    assert not bob_has, f"alice's client sealed secret.txt's key to bob (proj holds {in_proj})"
    assert in_proj == ["marker.txt"], f"secret.txt was moved back into the shared folder: {in_proj}"
