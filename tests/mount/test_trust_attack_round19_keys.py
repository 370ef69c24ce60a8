"""Attack round 19 on issue 22 (the authenticated vault): round 18's "Seen, not tested" key mirror.

Two users (alice shares notes.txt with bob), each on a device of their own, meeting on a pouchdb-server
of the test's own; the server (no key) deletes or replays FileKey documents (sync/key_mirror.py).

Holes
-----
1. THE SERVER DELETES BOB'S KEY DOCUMENT: HIS KEY FILE IS REMOVED, THE SHARE NO LONGER OPENS.
   ``DELETE /vault/vfkey-u-<bob>-<alice>-<fid>`` (a bare ``_deleted`` revision, unsigned).  The key
   mirror's three-way merge saw "only the document changed" (``_document_wins``) and removed the key
   file on every device (bob's, and alice's copy of it): bob's live mount kept the key it had loaded,
   but at his next mount notes.txt was gone from his tree, until alice's next unlock sealed it again.
   Impact: a no-key server takes away any recipient's access to any share (availability; nothing is
   sealed to anyone new).  Cause: key_mirror.py ``_settle_one``: a deletion taken as it comes.
   Fix: a deletion removes a signed key file only once its grant is gone as someone signed it: the
   file's owner signed a later epoch (``unshare`` rotates), or the group's owner signed the group
   without the member (not the file's deletion: the trash and gc leave keys, and an older deletion
   of hers may be served again); else the key file stays, and a deletion still refused
   once the pull has caught up is said (alarm kind ``forged-key``, subject ``deletion <doc id>``).
   Test: test_the_server_deleting_bobs_key_document_leaves_his_share_open.
   FIXED (sync/key_mirror.py ``_removal_taken``, ``caught_up``).  Not done: an unsigned key (its
   owner's from before signatures) is removed as before: nothing vouches for it.

2. THE SERVER SERVES BOB'S OLDER KEY DOCUMENT AGAIN: HIS CURRENT KEY FILE IS OVERWRITTEN WITH IT.
   Alice shared notes.txt with bob and carol, then took carol's share back: the file has a new key
   (epoch 1) and bob's key file holds it.  The server kept bob's key document of epoch 0 (genuinely
   signed by alice) and PUTs it back as the newest revision: ``_document_wins`` wrote it over bob's
   key file, which no longer opens the file's current contents: at bob's next mount notes.txt gave
   EIO (or was not shown) until alice's next unlock.  Cause: key_mirror.py ``_document_wins``
   ("only the document changed": no epoch compared).  Fix: a key file is replaced only by a key of
   an epoch not older than its own; the newer key becomes the document's next revision (so the
   server's copy is put right) and the replay is said (subject ``older <doc id>``).
   Test: test_the_server_replaying_bobs_older_key_document_does_not_take_his_current_key.
   FIXED (sync/key_mirror.py ``_settle_one``).

What held
---------
- A share taken back (``unshare``, which gives the file a new epoch) still removes the key file on
  the recipient's device, and nothing is said there: part of
  test_the_server_deleting_bobs_key_document_leaves_his_share_open (and tests/services/test_sync.py
  test_a_share_made_on_one_device_opens_on_the_recipients_device).
- A member taken out of a group by its owner (signed after the body seen with him in it: round 42a
  (4)'s fix) loses his group keys on his device before any re-key, unsaid:
  test_her_removal_of_bob_from_a_group_takes_his_group_keys_before_any_re_key (fails with the group
  branch of ``_removal_taken`` off: the keys stay).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import adversary
from conftest import first_device, fusevault, mounted, settled, wait_for
from services.test_trust_attack_round4 import _alarms

from fusevault.store import replica
from fusevault.sync.couch_api import LONGPOLL_SECONDS
from fusevault.sync.key_mirror import SAY_REFUSED_AFTER
from fusevault.vault.model.sharing import FILE_KEY, read_key

BOB = "bob's own passphrase"


def _add_user(laptop: Path, name: str, uid: int) -> str:
    added = fusevault("user", "add", name, "--uid", str(uid),
                      env={"FUSEVAULT_VAULT": str(laptop), "FUSEVAULT_NEW_PASSPHRASE": BOB})
    assert added.returncode == 0, added.stderr
    (user,) = [u for u in adversary.docs(laptop, "UserDetails") if u.get("username") == name]
    return user["_id"]


def _share(path: Path, who: str) -> None:
    shared = fusevault("share", path, "--with", who, "--perm", "READ")
    assert shared.returncode == 0, shared.stderr


@contextmanager
def _shared_with_bob(url: str, server: adversary.Server, tmp_path: Path,
                     also: str | None = None) -> Iterator[tuple[Path, Path, Path, str]]:
    """Alice's laptop mounted at ``a`` with notes.txt shared with bob (and ``also``), pushed; bob's own
    device joined.  Yields (alice's mount, bob's vault, his key file there, the key document's id)."""
    laptop = first_device(url, tmp_path)
    bob = _add_user(laptop, "bob", 2001)
    if also:
        _add_user(laptop, also, 2002)
    with mounted(laptop, tmp_path / "a", "--user", "alice") as a:
        (a / "notes.txt").write_text("hello bob")
        for who in ("bob", also):
            if who:
                _share(a / "notes.txt", who)
        wait_for(lambda: settled(a), "the share pushed")
        (doc_id,) = [d["_id"] for d in server.all(FILE_KEY) if d["_id"].startswith(f"vfkey-u-{bob}-")]
        joined = fusevault("init", tmp_path / "bobs", "--join", url, "--user", "bob", passphrase=BOB)
        assert joined.returncode == 0, joined.stderr
        key_file = next((tmp_path / "bobs" / "users" / bob / "shared").glob("*.vfkey"))
        yield a, tmp_path / "bobs", key_file, doc_id


def _said(mnt: Path, subject: str) -> bool:
    """An alarm about ``subject`` shows in ``fusevault status`` (within a few seconds: it is said once
    the pull has caught up; a key's deletion once refused a while, at a ``caught_up`` after that, which
    the pull's long poll brings: round 41b (3))."""
    deadline = time.monotonic() + 10 + SAY_REFUSED_AFTER + LONGPOLL_SECONDS
    while not any(x["subject"] == subject for x in _alarms(mnt)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _known(vault: Path, doc_id: str, rev: str) -> bool:
    with adversary.store_of(vault) as store:
        return rev in replica._known(store, doc_id)


def _bobs_mount(bobs: Path, tmp_path: Path, env: dict | None = None):
    return mounted(bobs, tmp_path / "b", "--user", "bob", passphrase=BOB, env=env)


# For a mount that waits for a refused key deletion to be said, its reason never coming: said after
# 3 s refused, not 15 (FUSEVAULT_SAY_REFUSED_SECONDS, sync/key_mirror.py), at a caught-up pull within
# 2 s, not 20 (FUSEVAULT_LONGPOLL_SECONDS).  The deletion is refused and the key kept the same way (the
# while only says when it is told); never for a scene where a reason does come (a genuine re-key).
SAY_SOON = {"FUSEVAULT_SAY_REFUSED_SECONDS": "3", "FUSEVAULT_LONGPOLL_SECONDS": "2"}


def _reads_at_next_mount(bobs: Path, tmp_path: Path) -> str:
    with _bobs_mount(bobs, tmp_path) as b:
        try:
            return (b / "shared" / "alice" / "notes.txt").read_text()
        except OSError as err:
            return f"{type(err).__name__}: {err}"


def test_the_server_deleting_bobs_key_document_leaves_his_share_open(
        couch: tuple[str, adversary.Server], tmp_path: Path) -> None:
    url, server = couch
    with _shared_with_bob(url, server, tmp_path) as (a, bobs, key_file, doc_id):
        with _bobs_mount(bobs, tmp_path, SAY_SOON) as b:
            assert (b / "shared" / "alice" / "notes.txt").read_text() == "hello bob"
            server.delete(doc_id)
            wait_for(lambda: adversary.get(bobs, doc_id) is None, "the deletion to reach bob's device")
            wait_for(lambda: settled(b), "bob's sync to settle")
            kept = key_file.exists()
            said = _said(b, f"deletion {doc_id}")
        wait_for(lambda: settled(a), "alice's sync to settle")
        alices_copy = next((tmp_path / "laptop" / "users").glob(f"*/shared/{key_file.name}"), None)
        assert kept and alices_copy is not None, "the server's bare deletion removed the key file"
        assert _reads_at_next_mount(bobs, tmp_path) == "hello bob"
        assert said, "the refused deletion went unsaid on bob's device"

        # The share taken back for real: the key goes on bob's device, and nothing is said there.
        with _bobs_mount(bobs, tmp_path) as b:
            assert fusevault("unshare", a / "notes.txt", "--with", "bob").returncode == 0
            wait_for(lambda: not key_file.exists(), "the revoked key to go from bob's device")
            wait_for(lambda: settled(b), "bob's sync to settle")
            said = [x for x in _alarms(b) if x["subject"] != f"deletion {doc_id}"]
        assert said == [], said


def test_the_server_replaying_bobs_older_key_document_does_not_take_his_current_key(
        couch: tuple[str, adversary.Server], tmp_path: Path) -> None:
    url, server = couch
    with _shared_with_bob(url, server, tmp_path, also="carol") as (a, bobs, key_file, doc_id):
        old = server.get(doc_id)
        assert old is not None and old["epoch"] == 0
        # Carol's share taken back: the file gets a new key, bob's is sealed again at epoch 1.
        assert fusevault("unshare", a / "notes.txt", "--with", "carol").returncode == 0
        wait_for(lambda: settled(a) and server.get(doc_id)["epoch"] == 1, "the new epoch pushed")
        with _bobs_mount(bobs, tmp_path) as b:
            assert (b / "shared" / "alice" / "notes.txt").read_text() == "hello bob"
            wait_for(lambda: adversary.get(bobs, doc_id)["epoch"] == 1, "bob's device at epoch 1")
            rev = server.put(old)  # alice's genuine signature, an older epoch
            wait_for(lambda: _known(bobs, doc_id, rev) and settled(b), "the replay to reach bob's device")
            held = read_key(key_file)
            said = _said(b, f"older {doc_id}")
        assert held is not None and held.epoch == 1, f"bob's key file was overwritten: epoch {held}"
        assert _reads_at_next_mount(bobs, tmp_path) == "hello bob"
        assert said, "the replayed older key went unsaid"
        wait_for(lambda: server.get(doc_id)["epoch"] == 1, "the newer key put back on the server")


def test_her_removal_of_bob_from_a_group_takes_his_group_keys_before_any_re_key(
        couch: tuple[str, adversary.Server], tmp_path: Path) -> None:
    """The genuine side of round 42a (4)'s fix (a group key's deletion taken only on a body of the group
    signed after the newest seen with the member in it): her ``group member remove`` made while her
    laptop is not mounted (its re-key waits for her unlock), the group as she signed it and bob's key
    documents' deletions sent first (as her laptop's next sync does).  His device takes them, with no
    new epoch, and says nothing."""
    url, server = couch
    laptop = first_device(url, tmp_path)
    bob = _add_user(laptop, "bob", 2001)
    admin = {"FUSEVAULT_VAULT": str(laptop), "FUSEVAULT_NEW_PASSPHRASE": "unused"}
    for args in (("group", "add", "team", "--owner", "alice"),
                 ("group", "member", "add", "team", "bob", "--perm", "READ")):
        done = fusevault(*args, env=admin)
        assert done.returncode == 0, done.stderr
    (team,) = [g["_id"] for g in adversary.docs(laptop, "Group") if g.get("groupname") == "team"]
    with mounted(laptop, tmp_path / "a", "--user", "alice") as a:
        (a / "proj").mkdir()
        (a / "proj" / "plan.txt").write_text("step one\n")
        _share(a / "proj", "@team")
        wait_for(lambda: settled(a), "the share pushed")
    joined = fusevault("init", tmp_path / "bobs", "--join", url, "--user", "bob", passphrase=BOB)
    assert joined.returncode == 0, joined.stderr
    keys = sorted((tmp_path / "bobs" / "groups" / team).rglob(f"{bob}.vfkey"))
    assert keys, "bob's device holds no group key"
    epochs = {d["_id"]: d.get("epoch") for d in server.all("node")}
    with _bobs_mount(tmp_path / "bobs", tmp_path) as b:
        assert (b / "groups" / "team" / "proj" / "plan.txt").read_text() == "step one\n"
        wait_for(lambda: settled(b), "bob's sync to settle")
        removed = fusevault("group", "member", "remove", "team", "bob", env=admin)
        assert removed.returncode == 0, removed.stderr
        server.put(adversary.get(laptop, team))  # her signed group without bob
        for doc in server.all(FILE_KEY):
            if doc["_id"].startswith(f"vfkey-g-{team}-") and doc["_id"].endswith(f"-{bob}"):
                server.delete(doc["_id"])  # his keys' deletions, as her laptop sends them
        wait_for(lambda: not any(k.exists() for k in keys), "bob's group keys to go from his device",
                 timeout=30 + SAY_REFUSED_AFTER)
        wait_for(lambda: settled(b), "bob's sync to settle")
        said = [(x["subject"], x["text"][:120]) for x in _alarms(b) if x["subject"].startswith("deletion ")]
    assert {d["_id"]: d.get("epoch") for d in server.all("node")} == epochs, "re-keyed meanwhile"
    assert said == [], said
