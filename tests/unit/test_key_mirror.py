"""Key files mirrored as documents (sync/key_mirror.py), between two replicas
that exchange revisions the way the replicator does (no server needed: the
wire is tested in test_sync.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64e
from fusevault.store import replica
from fusevault.store.local import LocalStore
from fusevault.sync import key_mirror
from fusevault.sync.key_mirror import KeyMirror, place
from fusevault.vault.format import layout as layouts
from fusevault.vault.model import alarms, sharing
from fusevault.vault.model.grants import record_doc


class Replica:
    def __init__(self, root: Path, vault_id: str) -> None:
        self.layout = layouts.create(root, {"kind": "local"}, vault_id=vault_id)
        self.store = LocalStore(root / "store.sqlite")
        self.keys = KeyMirror(self.store, self.layout)

    def send(self, doc_id: str, to: Replica) -> None:
        arrival = replica.store_revisions(to.store, replica.leaves(self.store, doc_id))
        to.keys.arrived(d["_id"] for d in arrival.current)

    def refresh(self) -> None:
        trio.run(self.keys.refresh)


@pytest.fixture
def pair(tmp_path: Path):
    vault_id = uuid.uuid4().hex
    here, there = Replica(tmp_path / "here", vault_id), Replica(tmp_path / "there", vault_id)
    yield here, there
    here.store.close()
    there.store.close()


def ids() -> list[str]:
    return [uuid.uuid4().hex for _ in range(3)]


def key_made_here(here: Replica, epoch: int, sealed: bytes) -> str:
    """A user's key file written on ``here`` and taken into a document: its id."""
    doc_id = "vfkey-u-{}-{}-{}".format(*ids())
    sharing.write_key(place(here.layout, doc_id), epoch, sealed)
    here.refresh()
    return doc_id


def test_a_key_written_on_one_replica_is_written_on_the_other_and_its_removal_too(pair) -> None:
    here, there = pair
    recipient, owner, fid = ids()
    group, gfid, member = ids()
    user_key = sharing.user_key_path(here.layout, recipient, owner, fid)
    group_key = sharing.group_key_path(here.layout, group, gfid, member)
    sharing.write_key(user_key, 1, b"sealed for the recipient")
    sharing.write_key(group_key, 3, b"sealed for a member")
    here.refresh()
    user_doc, group_doc = f"vfkey-u-{recipient}-{owner}-{fid}", f"vfkey-g-{group}-{gfid}-{member}"
    assert here.store.get(user_doc)["epoch"] == 1 and here.store.get(group_doc)["epoch"] == 3
    for doc_id in (user_doc, group_doc):
        here.send(doc_id, there)
    assert sharing.read_key(place(there.layout, user_doc))[:2] == (1, b"sealed for the recipient")
    assert sharing.read_key(place(there.layout, group_doc))[:2] == (3, b"sealed for a member")

    # Revoked there: the file goes, the document is deleted, and so here.
    sharing.remove_key(place(there.layout, user_doc))
    there.refresh()
    assert there.store.get(user_doc) is None
    there.send(user_doc, here)
    assert not user_key.exists() and group_key.exists()
    here.refresh()  # nothing to do: the deletion is not undone by the file being gone
    assert here.store.get(user_doc) is None and here.store.get(group_doc) is not None


def test_when_both_sides_changed_a_key_the_later_epoch_wins(pair) -> None:
    here, there = pair
    doc_id = key_made_here(here, 1, b"first")
    here.send(doc_id, there)
    # Apart: here the key is rotated (epoch 2); there it is sealed again at epoch 1.
    sharing.write_key(place(here.layout, doc_id), 2, b"rotated")
    sharing.write_key(place(there.layout, doc_id), 1, b"sealed again")
    there.refresh()
    there.send(doc_id, here)  # arrives before here looked at its own file
    assert sharing.read_key(place(here.layout, doc_id))[:2] == (2, b"rotated")
    assert here.store.get(doc_id)["epoch"] == 2
    here.send(doc_id, there)
    assert sharing.read_key(place(there.layout, doc_id))[:2] == (2, b"rotated")


def test_documents_from_a_peer_never_name_another_path_or_break_a_key(pair) -> None:
    here, there = pair
    doc_id = key_made_here(here, 1, b"good")
    forged = [{"_id": "vfkey-u-../../../etc/x", "_rev": "1-" + "a" * 32, "type": "FileKey",
               "epoch": 1, "key": "Zm9v"},
              {"_id": doc_id, "_rev": "9-" + "b" * 32, "type": "FileKey", "epoch": "one", "key": 5}]
    arrival = replica.store_revisions(here.store, forged)
    here.keys.arrived(d["_id"] for d in arrival.current)
    assert sharing.read_key(place(here.layout, doc_id))[:2] == (1, b"good")
    assert not list(here.layout.root.rglob("x"))


def test_a_later_epoch_on_the_branch_couchdbs_rule_did_not_pick_still_wins(pair) -> None:
    here, there = pair
    doc_id = key_made_here(here, 1, b"first")
    here.send(doc_id, there)
    first = there.store.get(doc_id)["_rev"]
    sharing.write_key(place(here.layout, doc_id), 2, b"rotated")
    here.refresh()  # its document holds epoch 2 now, and so does the file
    # Meanwhile another replica sealed the epoch-1 key again; its revision id
    # is the greatest, so CouchDB's rule makes it current.
    theirs = {"_id": doc_id, "_rev": "2-" + "f" * 32, "type": "FileKey", "epoch": 1,
              "key": b64e(b"sealed again"),
              "_revisions": {"start": 2, "ids": ["f" * 32, first.split("-", 1)[1]]}}
    arrival = replica.store_revisions(here.store, [theirs])
    assert arrival.conflicts == [doc_id] and here.store.get(doc_id)["epoch"] == 1
    here.keys.arrived(d["_id"] for d in arrival.current)
    assert sharing.read_key(place(here.layout, doc_id))[:2] == (2, b"rotated")
    assert here.store.get(doc_id)["epoch"] == 2 and replica.conflicted(here.store) == []


def test_a_key_documents_row_that_does_not_read_is_skipped_alone(pair) -> None:
    """A store writer puts a body that does not read (nested too deep) in the row of one key document
    whose key file is here.  Safe: the next look (before every push) raises nothing, so sync goes on, and
    a key written since is mirrored still.  Failed before: LocalStore.get's CorruptData left refresh: each
    push failed, the device's sync stopped while the row was there (tests/mount/test_trust_attack_round11.py
    (2): a batch is never dropped, nor stopped, for one row)."""
    here, _ = pair
    poisoned = key_made_here(here, 1, b"sealed for the recipient")
    with here.store.transaction() as db:
        db.execute("UPDATE docs SET body = ? WHERE id = ?", ('{"a":' + "[" * 100 + "]" * 100 + "}", poisoned))
    later = "vfkey-u-{}-{}-{}".format(*ids())
    sharing.write_key(place(here.layout, later), 2, b"sealed later")
    here.refresh()
    assert here.store.get(later)["epoch"] == 2


def test_an_older_epoch_served_again_as_the_newest_revision_never_replaces_the_key_file(pair) -> None:
    """Only the document changed, to a key of an earlier epoch than the key file's (a server serving
    an older revision again, attack round 19): the key file stays, and is the document's next revision."""
    here, there = pair
    doc_id = key_made_here(here, 1, b"first")
    sharing.write_key(place(here.layout, doc_id), 2, b"rotated")
    here.refresh()
    here.send(doc_id, there)
    current = there.store.get(doc_id)
    generation, rev_id = current["_rev"].split("-", 1)
    after = int(generation) + 1
    replayed = {"_id": doc_id, "_rev": f"{after}-" + "c" * 32, "type": "FileKey", "epoch": 1,
                "key": b64e(b"first"), "_revisions": {"start": after, "ids": ["c" * 32, rev_id]}}
    arrival = replica.store_revisions(there.store, [replayed])
    assert there.store.get(doc_id)["epoch"] == 1 and not arrival.conflicts
    there.keys.arrived(d["_id"] for d in arrival.current)
    assert sharing.read_key(place(there.layout, doc_id))[:2] == (2, b"rotated")
    assert there.store.get(doc_id)["epoch"] == 2


# --- a key's deletion that comes before its reason (attack round 41b (3))


class Clock:
    """The key mirror's ``time.monotonic``, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(key_mirror, "time", clock, raising=False)
    return clock


class Owner:
    """A file's owner with a signing key, her self-signed user document in a store."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex
        self.key = Ed25519PrivateKey.generate()
        raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
        public = self.key.public_key().public_bytes(*raw)
        self.user = self.sign({"_id": self.id, "type": "UserDetails", "public_sign": b64e(public)})

    def sign(self, doc: dict) -> dict:
        return sign_doc(self.id, self.key, doc)

    def node(self, fid: str, epoch: int) -> dict:
        return self.sign({"_id": fid, "type": "node", "owner": self.id, "epoch": epoch})

    def key_file(self, r: Replica, fid: str, recipient: str, epoch: int) -> str:
        """Her signed key of ``fid`` for ``recipient`` written on ``r`` and mirrored: its document's id."""
        sealed = b"sealed for %d" % epoch
        sig = self.sign(record_doc(self.id, fid, recipient, epoch, sealed))["sig"]
        doc_id = f"vfkey-u-{recipient}-{self.id}-{fid}"
        sharing.write_key(place(r.layout, doc_id), epoch, sealed,
                          signed={"owner": self.id, "fid": fid, "recipient": recipient, "sig": sig})
        r.refresh()
        return doc_id


def put(r: Replica, *docs: dict) -> None:
    """Documents as a peer sends them (stored over whatever ``r`` holds at their ids)."""
    for doc in docs:
        current = r.store.get(doc["_id"])
        r.store.put_many([{**doc, **({"_rev": current["_rev"]} if current else {})}])


def said(owner: Owner, doc_id: str) -> bool:
    return any(a["subject"] == f"deletion {doc_id}" for a in alarms.listed([owner.id]))


@pytest.fixture
def shared(pair, clock):
    """Her file ``fid`` (epoch 1) shared with bob: his key on both replicas, then removed ``there``
    (her move out of the share, her signed request for the re-key written) and the deletion sent
    ``here`` before any new epoch.  Yields (here, there, her, fid, the key document's id)."""
    here, there = pair
    her, fid, bob = Owner(), uuid.uuid4().hex, uuid.uuid4().hex
    for r in pair:
        put(r, her.user, her.node(fid, 1))
    doc_id = her.key_file(there, fid, bob, 1)
    there.send(doc_id, here)
    put(there, her.sign(sharing.rotation_doc(her.id, fid, 1)))
    sharing.remove_key(place(there.layout, doc_id), keep_folder=True)
    there.refresh()
    assert there.store.get(doc_id) is None
    there.send(doc_id, here)
    yield here, there, her, fid, doc_id


def test_her_re_key_coming_after_the_keys_deletion_takes_it_unsaid(shared, clock) -> None:
    """Her other device meets the member's key's deletion (key documents are pushed first), catches
    up, and only then her re-key (the node's later epoch).  Failed before: said forged-key at the
    first ``caught_up``, before the re-key came."""
    here, _, her, fid, doc_id = shared
    here.keys.caught_up()
    assert place(here.layout, doc_id).exists() and not said(her, doc_id)
    clock.now += 3
    put(here, her.node(fid, 2))  # the re-key arrives
    here.keys.caught_up()
    assert not place(here.layout, doc_id).exists() and not said(her, doc_id)
    clock.now += 2 * key_mirror.SAY_REFUSED_AFTER
    here.keys.caught_up()
    assert not said(her, doc_id)


def test_a_deletion_whose_re_key_never_comes_is_said_and_the_key_kept(shared, clock) -> None:
    """The server withholds her re-key for good (her signed request stands): said once the while
    is over, the key kept; taken if the re-key comes after all."""
    here, _, her, fid, doc_id = shared
    here.keys.caught_up()
    clock.now += key_mirror.SAY_REFUSED_AFTER
    here.keys.caught_up()
    assert place(here.layout, doc_id).exists() and said(her, doc_id)
    put(here, her.node(fid, 2))
    here.keys.caught_up()
    assert not place(here.layout, doc_id).exists()


@pytest.mark.parametrize("served", ["her old request", "a request for another file",
                                    "a request for her own new key", "an unsigned later epoch",
                                    "her older node"])
def test_what_the_server_serves_beside_a_forged_deletion_never_takes_the_key(pair, clock, served) -> None:
    """The server deletes bob's key document (bare, unsigned) and serves beside it what it holds of
    hers: her signed request for this file's re-key made at an epoch passed since (replayed), her
    standing request for another file, one at this epoch for her own grant (no member's), a node
    with a later epoch nobody signed, her node from before.  None is a re-key of the key held: kept,
    and said once the while is over (never before: her own re-key may still be coming)."""
    here, _ = pair
    her, fid, bob = Owner(), uuid.uuid4().hex, uuid.uuid4().hex
    put(here, her.user, her.node(fid, 2))
    doc_id = her.key_file(here, fid, bob, 2)
    beside = {"her old request": her.sign(sharing.rotation_doc(her.id, fid, 1)),
              "a request for another file": her.sign(sharing.rotation_doc(her.id, uuid.uuid4().hex, 2)),
              "a request for her own new key": her.sign(sharing.rotation_doc(her.id, fid, 2)),
              "an unsigned later epoch": {"_id": fid, "type": "node", "owner": her.id, "epoch": 3},
              "her older node": her.node(fid, 1)}[served]
    put(here, beside)
    generation, rev_id = here.store.get(doc_id)["_rev"].split("-", 1)
    bare = {"_id": doc_id, "_deleted": True, "_rev": f"{int(generation) + 1}-" + "d" * 32,
            "_revisions": {"start": int(generation) + 1, "ids": ["d" * 32, rev_id]}}
    arrival = replica.store_revisions(here.store, [bare])
    assert here.store.get(doc_id) is None
    here.keys.arrived(d["_id"] for d in arrival.current)
    here.keys.caught_up()
    assert place(here.layout, doc_id).exists() and not said(her, doc_id)
    clock.now += key_mirror.SAY_REFUSED_AFTER
    here.keys.caught_up()
    assert place(here.layout, doc_id).exists() and said(her, doc_id)
