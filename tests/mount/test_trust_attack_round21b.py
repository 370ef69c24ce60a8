"""Attack round 21b on issue 22 (the authenticated vault): a broad, fresh attack on the whole promise.

Real mounts, the real ``fusevault`` command and the store writer (tests/adversary.py).

Holes
-----
1. A READ RECIPIENT CHOOSES WHAT THE OWNER'S TRASHED FILE COMES BACK AS.  bob holds READ on alice's
   notes.txt and WRITE on her folder docs (any WRITE of hers will do).  alice deletes notes.txt (it
   goes to her trash).  bob, as a writer of the vault folder, takes alice's older version document of
   notes.txt ("first"), re-seals its sealed fields under the file's DEK (his READ key file opens it)
   with a time newer than her last save, and signs it in his own name.  While the file is in the tree
   a READ recipient's version is refused (authorship.py ``version_ok`` -> ``may_write`` on the node),
   but out of the tree the rule is "WRITE on ANYTHING of the owner's" (authorship.py:492-493
   ``version_ok`` -> ``writer_of``, :307-309: "a deleted node's place is not known"), and the records
   judge (store/places.py ``admits`` -> loading.py:208 -> the same ``version_ok``) asks the same rule
   while the node is out of the tree.  So bob's version is the newest of the trashed file's history
   and ``fusevault restore notes.txt --to notes-back.txt`` (recovery.py ``_copy_out``, the node stays
   in the trash; history.py:315 ``pick(latest=True)``) writes bob's choice (her older text) as her file,
   signed by her next commit, instead of her last save.  Seen: notes-back.txt reads "first", exit 0.
   (An in-place ``restore`` relinks the node first, so the records judge then refuses bob's version:
   exit 5 "not signed by who may write it": her trashed file cannot be restored in place by default,
   the two judges disagreeing about the same document.)  Bob re-signing a version with a manifest he
   appended for that version id (he holds the DEK and signs the digests) would put contents of his own
   there the same way (not tried).
   The promise (SECURITY.md "Signed writes": "the signer is the node's owner or holds WRITE on the node
   (a Share of the owner's on it or a folder above it)"; "READ is read-only on every replica") does not
   hold for the trash, although the trashed node's place IS known: her signed ``trashed`` path and the
   ledger's ``was_at`` name the folder it left.
   Cause: vault/tree/authorship.py:492-493 (``writer_of``: WRITE on any grant of the owner's, for a
   version of a file out of the tree), used by history/``restore``/``.versions``/gc (``accepts``) and
   by the records judge.
   Fix: judge a trashed or replaced file's version by the grants on the place it left (the folder this
   device's ledger last saw it in, or the owner-signed ``trashed`` path), or by a grant on the file id
   itself; failing both, only the owner's signature.  Same for ``detached_ok`` (its node document).
   Test: test_a_read_recipient_cannot_choose_what_her_trashed_file_is_restored_as.

2. A READ RECIPIENT MAKES THE OWNER'S GC DELETE A GENUINE VERSION HER POLICY KEEPS (DATA LOSS), SAME
   CAUSE.  alice's notes.txt has three versions in three different minutes; bob holds READ on it and
   WRITE on her folder docs; she deletes it (trash, 30 days).  Her ``gc`` (``--as-of`` an hour on,
   the built-in policy: one version per minute for 7 days) keeps all three.  bob re-dates her first
   version document into the second version's minute, just after it, and signs it (as in 1).  gc
   reads the trashed file's versions through ``accepts`` (gc.py ``collect`` -> ``lineage`` ->
   ``versions_of``), which takes bob's document (authorship.py:492-493 ``writer_of``); the kept
   versions' manifests check out under the same judge (``_checked_with``), so retention.py
   ``to_drop`` sees two versions in the second minute and drops the older: her genuine second
   version's document is deleted and its records punched out of the ``.vf`` (gc.py ``_thin``):
   gone for good, on every replica the deletion reaches.  gc exits 0 (whether any alarm is raised was
   not checked).  With more re-dated copies bob could choose which of her versions go, all but the
   head (inferred from ``to_drop``, not tried).
   Cause: vault/tree/authorship.py:492-493 (as in 1), read by gc.py:170 (``accept``,
   passed to every ``lineage``).
   Fix: as in 1; and gc should count only versions signed by the owner or a writer of the file's own
   place (a version whose signer the judge of the place cannot name is kept, never a reason to drop
   another).
   Test: test_a_read_recipients_redated_version_does_not_make_gc_drop_her_trashed_files_kept_version
   [True] (the hole; [False] is the passing control).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import adversary
import pytest
from attack_scenes import recipients_dek
from conftest import PASSPHRASE, fusevault, mounted

from fusevault.crypto import aead
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64d, b64e
from mount.test_trust_writes import BOB, _admin, _key, _node_fid


def _versions(vault: Path, fid: str, dek: bytes) -> list[tuple[int, dict, dict]]:
    """(time, plain, doc) of every version document of ``fid``, oldest first."""
    out = []
    for doc in adversary.docs(vault, "FilesMetaData"):
        if doc.get("fid") != fid:
            continue
        plain = json.loads(aead.unseal(dek, b64d(doc["enc"]), aead.ad("version", fid, doc["_id"])))
        out.append((plain["file_entry_ts"], plain, doc))
    return sorted(out, key=lambda t: t[0])


def _first_again_by_bob(vault: Path, fid: str, dek: bytes) -> None:
    """The file's first version again, dated after its last, signed by bob (sealed under ``dek``)."""
    found = _versions(vault, fid, dek)
    assert len(found) >= 2
    _, plain, doc = found[0]
    plain = {**plain, "file_entry_ts": found[-1][0] + 10**9}
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig")}
    body["enc"] = b64e(aead.seal(dek, json.dumps(plain).encode(), aead.ad("version", fid, doc["_id"])))
    bob = _key(vault, "bob", BOB)
    adversary.put(vault, sign_doc(bob.user_id, bob.identity.sign, body))


def test_a_read_recipient_cannot_choose_what_her_trashed_file_is_restored_as(vault: Path,
                                                                             tmp_path: Path) -> None:
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "notes.txt").write_text("first")
        (mnt / "notes.txt").write_text("genuine notes")
        (mnt / "docs").mkdir()
        (mnt / "docs" / "plan.txt").write_text("the plan")
        assert fusevault("share", mnt / "notes.txt", "--with", "bob", "--perm", "READ").returncode == 0
        assert fusevault("share", mnt / "docs", "--with", "bob", "--perm", "WRITE").returncode == 0
    fid = _node_fid(vault, "alice", "notes.txt")
    dek = recipients_dek(vault, "bob", BOB, fid)  # bob's READ key file
    with mounted(vault, tmp_path / "mnt") as mnt:
        os.unlink(mnt / "notes.txt")  # to her trash
    _first_again_by_bob(vault, fid, dek)  # her older text, "first"
    with mounted(vault, tmp_path / "mnt") as mnt:
        restored = fusevault("restore", mnt / "notes.txt", "--to", mnt / "notes-back.txt")
        assert restored.returncode == 0, restored.stderr
        assert (mnt / "notes-back.txt").read_text() == "genuine notes", "bob chose what her file came back as"


def test_a_writer_where_the_file_was_still_writes_the_history_of_her_trashed_file(vault: Path,
                                                                                 tmp_path: Path) -> None:
    """The fix of hole 1 refuses no genuine writer: bob holds WRITE on docs, where notes.txt was when
    she deleted it, so his version (here made by hand, as his device would) stays in its history."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "docs").mkdir()
        (mnt / "docs" / "notes.txt").write_text("first")
        (mnt / "docs" / "notes.txt").write_text("her notes")
        assert fusevault("share", mnt / "docs", "--with", "bob", "--perm", "WRITE").returncode == 0
    fid = _node_fid(vault, "alice", "notes.txt")
    dek = recipients_dek(vault, "bob", BOB, fid)
    with mounted(vault, tmp_path / "mnt") as mnt:
        os.unlink(mnt / "docs" / "notes.txt")
    _first_again_by_bob(vault, fid, dek)
    with mounted(vault, tmp_path / "mnt") as mnt:
        restored = fusevault("restore", mnt / "docs" / "notes.txt", "--to", mnt / "back.txt")
        assert restored.returncode == 0, restored.stderr
        assert (mnt / "back.txt").read_text() == "first", "a writer of docs' version was refused"


def _in_minutes_before(vault: Path, fid: str, dek: bytes) -> None:
    """Her versions of ``fid`` dated a minute apart, ending in the minute of the last: each re-dated and
    signed again by her (her passphrase; the scene, not the attack), as if written a minute apart."""
    found = _versions(vault, fid, dek)
    alice = _key(vault, "alice", PASSPHRASE)
    last = found[-1][0]
    for back, (_, plain, doc) in zip(range(len(found) - 1, 0, -1), found[:-1], strict=False):
        plain = {**plain, "file_entry_ts": last - back * 60 * 10**9}
        body = {k: v for k, v in doc.items() if k not in ("_rev", "sig")}
        body["enc"] = b64e(aead.seal(dek, json.dumps(plain).encode(), aead.ad("version", fid, doc["_id"])))
        adversary.put(vault, sign_doc(alice.user_id, alice.identity.sign, body))


@pytest.mark.parametrize("forged", [True, False])
def test_a_read_recipients_redated_version_does_not_make_gc_drop_her_trashed_files_kept_version(
        vault: Path, tmp_path: Path, forged: bool) -> None:
    """Three versions of notes.txt in three minutes; gc as of an hour on keeps one per minute, so all
    three (``forged=False``, the control: without bob's document her second version stays).  bob
    re-dates her first version into the second's minute, after it: the second is then "not the first
    of its minute" and dropped."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "docs").mkdir()
        assert fusevault("share", mnt / "docs", "--with", "bob", "--perm", "WRITE").returncode == 0
        (mnt / "notes.txt").write_text("first")
        assert fusevault("share", mnt / "notes.txt", "--with", "bob", "--perm", "READ").returncode == 0
        (mnt / "notes.txt").write_text("second, kept by her policy")
        (mnt / "notes.txt").write_text("genuine notes")
    fid = _node_fid(vault, "alice", "notes.txt")
    dek = recipients_dek(vault, "bob", BOB, fid)
    _in_minutes_before(vault, fid, dek)  # three versions in three minutes
    with mounted(vault, tmp_path / "mnt") as mnt:
        os.unlink(mnt / "notes.txt")  # to her trash
    found = _versions(vault, fid, dek)
    assert len(found) == 3, found
    second = found[1][2]["_id"]
    _, plain, doc = found[0]
    plain = {**plain, "file_entry_ts": found[1][0] + 1}  # her first, in the second's minute, after it
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig")}
    body["enc"] = b64e(aead.seal(dek, json.dumps(plain).encode(), aead.ad("version", fid, doc["_id"])))
    bob = _key(vault, "bob", BOB)
    if forged:
        adversary.put(vault, sign_doc(bob.user_id, bob.identity.sign, body))
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    with mounted(vault, tmp_path / "mnt") as mnt:
        collected = fusevault("gc", mnt, "--as-of", later)
        print("gc:", collected.returncode, collected.stdout[-1500:], collected.stderr[-500:])
    kept = adversary.get(vault, second)
    assert kept is not None and not kept.get("_deleted"), "gc dropped her second version for bob's document"
