"""Attack round 71c, in-process: round 69d (2)'s ``grants.SharesChecked`` (a Share's check kept per
seat, only the Shares that changed read again).

(1) A Share replaced in the store by a document of another kind stays counted by every seat that
    checked it, past any later change of sharing documents and past its owner's unshare made on her
    other device: her new files in the shared folder are sealed to the revoked member.
    Attacker: bob, a member alice shared ``docs/`` with (READ), writing to the vault's CouchDB as every
    syncing peer does (or the server itself).
    Steps: bob writes, at his Share's id, a revision of another kind (``{"type": "note"}``; in CouchDB a
    non-deleted leaf wins over a deleted one, so it wins over her later deletion too).  Any change of a
    sharing document follows (his `config set`, a share of anyone's).  alice unshares bob on her other
    device (a Volume loaded apart, writing through the store as a peer does).  Her long-lived seat (the
    shared mount, or her desktop left unlocked) then writes ``docs/new.txt``.
    Seen: her seat's grants still hold bob's Share (a whole read of the store gives none), and
    ``docs/new.txt``'s key is sealed to bob: the plaintext of a file made after his revocation is his.
    Worse, when the unshare's Rotation request reaches her seat (fs/arrivals.py ``_reshare`` ->
    ``rotation.resume`` -> ``fill_missing``, run here by hand: the in-process fixture starts no
    ``_reshare``), the *new* key her other device gave ``docs/a.txt`` is sealed to bob: the re-key
    itself is undone on every device of hers left unlocked.
    Expected: a Share the store no longer holds is not counted once a sharing change is taken in (before
    69d (2) every such change read all Shares again: his grant went at his own `config set`); her
    unshare on another device ends his grant on this one.
    Cause: vault/services/absorbing.py:101 reloads the grants only for a document whose *body* is of a
    sharing type, and vault/tree/guests.py:102-104 (``Guests.reload``) hands ``verified_grants`` only the
    ids of changed Shares, deletions and ids already in ``checked.by_id`` *among the documents of a
    reload's batch*: the revision of another kind arrives in a batch that reloads nothing, so its id is
    never read again, and ``SharesChecked`` keeps the grant checked from the older body for the life
    of the seat (until an unlock).  Her unshare's tombstone carries the junk's type (store.tombstone),
    so it reloads nothing either; fs/arrivals.py ``_typed`` types only bare deletions.
    Impact: high (a revocation undone for as long as her device stays unlocked: keys of her new files,
    and fill_missing's of re-keyed ones, sealed to the revoked member).
    Suggested fix: in ``absorb``, take any arriving document whose id is one ``Guests.kinds()`` knows
    (``checked.by_id`` included) as a change of sharing documents, whatever its body's type, and pass
    it to ``Guests.reload``; ``SharesChecked.fetched`` then drops it (not a Share).

(2) Each share that reaches her while she is unlocked costs her seat, on the loop, a look at every
    entry of its view folder for every share already shown there: quadratic in the shares one member
    gives her (or a group gathers).
    Attacker: bob, any user who shares with her (a member of a group of hers, for ``groups/<g>/``).
    Steps: bob shares many files with alice (his own client may sign Shares and seal keys by the
    thousand: nothing bounds them), then keeps sharing one more now and then.
    Seen: each arrival runs ``_admit_new_shares`` -> ``linking.admit_guests`` -> ``_place_shares``
    (vault/tree/loading.py:958), which walks every reach of hers and, for each, tests ``ino in
    inner.children.values()`` (loading.py:998): a scan of the folder's entries.  Counted here: 60
    shares shown, one more costs 1,890 entry looks (n(n+1)/2 + n).  Measured (synthetic grants and
    nodes on her seat, one ``_place_shares`` call): 1,000 shares 0.009 s, 3,000 0.078 s, 7,000 0.48 s
    of the loop per new share, for every device and seat that counts them (all members of a group).
    Expected: 70c (3)'s own words, "each share costs at most 17 looks": a share placed costs its own
    looks, not one per share already shown.
    Cause: loading.py:998 (``if ino in inner.children.values(): continue``) is a linear scan, run for
    every reach at every call; ``_place_shares`` is called whole at each new share (absorbing.py
    ``_admit_new_shares``).  Older than 70c; next to ``names.made``, whose bound it undoes.
    Impact: low (a cost that grows with what a member gives her: at ~10,000 shares about a second of
    the loop per further share, for every seat that counts them; he pays a Share and a key each).
    Suggested fix: keep, per view folder, the set of inodes shown (or skip reaches whose node is
    linked already: ``tree.ino_of(fid)`` in a set built once per call), so a call costs O(reaches).

Controls kept: ``test_control_71c_1_her_unshare_on_another_device_ends_the_grant_here`` (the same scene
without bob's revision: her seat drops his grant, the new file is sealed to nobody) and
``test_control_71c_1_bob_opens_the_key_her_seat_seals_him`` (with it: the key he unseals is the file's).
Measured against the behaviour before 69d (2) (``Guests.reload`` made to ignore ``changed``, a probe not
kept): the scene's grants are [] and nothing is sealed to bob (his `config set` read every Share).
Its ``share-missing`` alarm (her own Share gone from the store) is lost the same way: ``fresh.sweep`` is
given the ids of the book, which still holds it.  The revision of another kind passes the sync
(sync/replicator.py ``_takes`` refuses only vault, peer and misplaced ids, and deletions it protects).

Tried, held (read, and where said run):
(a) 69d (1): every read of a source (``_hash_next``, ``_chunks``: the lseeks and preads of
``source_pieces``) runs inside ``thread_as_user`` (fsuid, fsgid, groups, no effective capability), so a
read-time check sees her; what is left of root in that thread (euid/ruid 0, root's namespaces and LSM
label) is judged at open, which her helper makes: a FUSE file system of hers without allow_other
refuses root's euid (EACCES, 51t), with it answers her fsuid; an overlay a user namespace of hers
mounts over procfs (reached as /proc/<her pid>/root/...) reads with the mounter's (her) credentials;
/dev nodes, fifos and links are refused by ``open_source`` (not regular, ``O_NOFOLLOW``); a procfs or
sysfs folder below an ordinary watched folder is refused file by file on each descriptor (the
existing ``test_69d_1_a_procfs_file_put_in_her_watched_folder_is_refused_as_a_source``); a settings
folder reached through a symlink is judged on the folder it opens to (``_no_pseudo_folder`` opens as
her); ``fstatfs`` that stalls (her allow_other FUSE) runs in her own ``HostThreads``, like the rest of
``config set``'s check and the watch's hold.  File systems missing from ``KERNEL_PSEUDO`` (nfsd,
rpc_pipefs, pidfs...) matter only if a read-time check there uses more than fsuid and capabilities:
none found.  ``rights.acting_as``'s way back cannot be made to fail by a user's input (groups bounded).
(b) beside (1): a Share's new revision, its deletion (bare: typed by ``kinds()``, refused ones too),
its re-creation, a body rewritten in place, an owner's pin or legacy standing changed (``_under``:
Pins are frozen), a replay after a deletion (freshness, as a whole read) all re-check as a whole read
would; a doc of a sharing type at a Share's id is fetched again (``by_id``).
(c) 70c: ``_create_temp``'s claim is released on every path that does not return (``continue``
inside the ``try`` runs its ``finally``; create errors, cancellation), and ``write_file`` discards it
in a ``finally`` entered with no await after the return: no claim leaks, and a claimed name only
sends another write to a random one.  ``conflict_copies._home``: a folder of another owner she may write
still takes a copy of her file (as before 70c), sealed by her only (``may_seal``: his grants never
seal her node), so nothing of hers reaches his grantees.  ``names.made``: a made name is looked for
in ``taken`` before use; names a member plants to match hers (``NAME (ID n)``) cost one Share each
and one look each (but see (2)).
Not tried: a real mount for (1) (the sync's batches and ``_reshare`` as they run); group Shares (the
same ``SharesChecked`` path); kernels with kptr_restrict=1 for (a).
"""

from __future__ import annotations

import stat

import pytest

from fusevault.crypto.identity import open_file_key
from fusevault.store.watched import WatchedStore
from fusevault.vault.model import groups, sharing
from fusevault.vault.model.nodes import NODE
from fusevault.vault.model.users import USER
from fusevault.vault.services import rotation, share_ops
from fusevault.vault.tree.guests import Guests
from fusevault.vault.volume import Volume
from inprocess.conftest import BOB_UID, FILE, ROOT, Ctx
from inprocess.test_attack_69d import _share_files
from inprocess.test_two_users import ALICE, _share, _write


def _whole(volume) -> list[str]:
    """The seat's grants as a whole read of the store gives them now."""
    return sorted(map(repr, Guests.read(volume.store, volume.key.user_id, volume.trust).grants))


async def _scene(shared, junk: bool, unshare: bool = True) -> tuple[list, list[str], bytes | None]:
    """alice's docs/ shared READ with bob; (junk) bob's revision of another kind at his Share's id;
    his `config set`; her unshare of bob on her other device; her seat writes docs/new.txt.  Her seat's
    grants, a whole read's, and docs/new.txt's key as bob unseals it from his key file (None: none)."""
    drive, alice, bob = shared.drive, shared.volumes["alice"], shared.volumes["bob"]
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, docs.st_ino, b"a.txt", b"hers", ALICE)
    await _share(shared, "docs", "READ")
    share_id = sharing.doc_id(alice.resolve(b"docs").fid, bob.key.user_id)
    doc = alice.store.get(share_id)
    assert doc is not None and doc["type"] == sharing.SHARE
    peer = WatchedStore(alice.store.inner, None, alice.store._listener)  # a peer's writes: every seat told
    if junk:
        peer.put_many([{"_id": share_id, "_rev": doc["_rev"], "type": "note"}])
    answer = await drive.seat_of(BOB_UID).ops.session.requests.handle(
        {"cmd": "config", "set": {"settle_seconds": "3"}})
    assert "error" not in answer, answer
    shared.before_unshare = alice.resolve(b"docs/a.txt").dek  # type: ignore[attr-defined]
    if unshare:
        other = Volume.load(alice.layout, peer, alice.key, alice.tree.get(1).fid)  # her other device
        answer = await share_ops.unshare(other, b"docs", "bob")
        assert answer["with"] == "bob", answer
    await _write(drive, docs.st_ino, b"new.txt", b"made after his revocation", ALICE)
    node = alice.resolve(b"docs/new.txt")
    his = sharing.read_key(sharing.user_key_path(alice.layout, bob.key.user_id, alice.key.user_id, node.fid))
    if his is None:
        return sorted(map(repr, alice.sharing.grants)), _whole(alice), None
    dek = open_file_key(bob.key.identity, alice.key.user_id, node.fid, his[0], his[1])
    return sorted(map(repr, alice.sharing.grants)), _whole(alice), dek


async def test_71c_1_a_share_replaced_by_another_kind_is_not_counted_past_her_unshare(shared) -> None:
    cached, whole, his = await _scene(shared, junk=True)
    assert his is None, "docs/new.txt, made after his revocation, is sealed to bob: he opens its key"
    assert cached == whole, "her seat counts a Share the store no longer holds"


def _his_key(shared, path: bytes) -> bytes | None:
    """The key of alice's ``path`` as bob unseals it from his key file (None: none)."""
    alice, bob = shared.volumes["alice"], shared.volumes["bob"]
    node = alice.resolve(path)
    his = sharing.read_key(sharing.user_key_path(alice.layout, bob.key.user_id, alice.key.user_id, node.fid))
    if his is None:
        return None
    return open_file_key(bob.key.identity, alice.key.user_id, node.fid, his[0], his[1])


async def test_71c_1_her_other_devices_re_key_is_not_sealed_to_him_by_her_seat(shared) -> None:
    """The same scene, then what her seat runs when the Rotation request arrives from the other device
    (fs/arrivals.py ``_reshare`` -> ``rotation.resume`` -> ``fill_missing``): docs/a.txt, given a new key
    by her unshare, has that new key sealed to bob."""
    await _scene(shared, junk=True)
    node = shared.volumes["alice"].resolve(b"docs/a.txt")
    assert node.dek != shared.before_unshare  # the control: re-keyed by her unshare, taken in here
    await rotation.resume(shared.volumes["alice"])
    assert _his_key(shared, b"docs/a.txt") != node.dek, "her unshare's new key of docs/a.txt sealed to bob"


async def test_control_71c_1_her_unshare_on_another_device_ends_the_grant_here(shared) -> None:
    cached, whole, his = await _scene(shared, junk=False)
    assert his is None and cached == whole == []
    await rotation.resume(shared.volumes["alice"])
    assert _his_key(shared, b"docs/a.txt") is None


async def test_control_71c_1_bob_opens_the_key_her_seat_seals_him(shared) -> None:
    """What the first test's first assertion sees, kept as a check that it can see it: while his Share
    stands (no revision of his, no unshare), the key her seat sealed him for docs/new.txt opens, under
    his key, to the file's own.  (Before the fix the scene with his revision gave the same.)"""
    cached, whole, his = await _scene(shared, junk=False, unshare=False)
    node = shared.volumes["alice"].resolve(b"docs/new.txt")
    assert his == node.dek and cached and cached == whole


class _Counting(dict):
    """A view folder's entries, counting the entries a ``ino in children.values()`` test looks at."""

    looks = 0

    def values(self):  # type: ignore[override]
        return _CountingValues(self)


class _CountingValues:
    def __init__(self, entries: _Counting) -> None:
        self.entries = entries

    def __contains__(self, wanted: object) -> bool:
        for n, value in enumerate(dict.values(self.entries), 1):
            if value == wanted:
                _Counting.looks += n
                return True
        _Counting.looks += len(self.entries)
        return False

    def __iter__(self):
        return iter(dict.values(self.entries))

    def __len__(self) -> int:
        return len(self.entries)


async def test_71c_2_a_share_arriving_costs_her_seat_its_own_looks_not_one_per_share_shown(shared) -> None:
    shown = 60
    requests, _ = await _share_files(shared, shown)  # bob's f0..f59, each shared with alice (READ)
    alice = shared.volumes["alice"]
    folder = alice.resolve(b"shared/bob")
    assert len(folder.children) == shown  # the control: all shown
    _Counting.looks = 0
    folder.children = _Counting(folder.children)
    info, _ = await shared.drive.create(ROOT, b"one-more", FILE, 0o101, Ctx(BOB_UID, BOB_UID))
    await shared.drive.release(info.fh)
    answer = await requests.handle({"cmd": "share", "path": "one-more", "with": "alice", "perm": "read"})
    assert "error" not in answer, answer
    assert len(folder.children) == shown + 1  # the control: the new one shown (the same folder)
    assert _Counting.looks <= 4 * (shown + 1), (
        f"one share arriving looked at {_Counting.looks} entries of her view folder ({shown} shown)")


# --- 71c (1), abuse: an id the seat's sharing state knows, turned into a document of any other kind
# (and back): the seat's grants and groups are at every step those of a whole read of the store.

_OTHER_KINDS = {
    "note": {"type": "note"},
    "group": {"type": groups.GROUP, "groupname": "junk", "owner": "x", "users": {}},
    "user": {"type": USER, "username": "junk"},
    "node": {"type": NODE, "links": [], "owner": "x"},
}


def _groups_whole(volume) -> list[str]:
    return sorted(Guests.read(volume.store, volume.key.user_id, volume.trust).groups)


@pytest.mark.parametrize("kind", sorted(_OTHER_KINDS))
async def test_71c_1_a_share_turned_into_another_kind_and_back_is_judged_as_the_store_holds_it(
        shared, kind) -> None:
    drive, alice, bob = shared.drive, shared.volumes["alice"], shared.volumes["bob"]
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, docs.st_ino, b"a.txt", b"hers", ALICE)
    await _share(shared, "docs", "READ")
    share_id = sharing.doc_id(alice.resolve(b"docs").fid, bob.key.user_id)
    share = alice.store.get(share_id)
    assert share is not None and len(alice.sharing.grants) == 1  # the control: his grant counted
    peer = WatchedStore(alice.store.inner, None, alice.store._listener)
    [rev] = peer.put_many([{"_id": share_id, "_rev": share["_rev"], **_OTHER_KINDS[kind]}])
    assert sorted(map(repr, alice.sharing.grants)) == _whole(alice) == []
    # Back: her signed body again, at a newer revision (as a peer holding it may send it).
    peer.put_many([{**{k: v for k, v in share.items() if k != "_rev"}, "_rev": rev}])
    assert sorted(map(repr, alice.sharing.grants)) == _whole(alice)
    # Then deleted with a bare tombstone's type (none) and a body of the other kind's: never counted.
    [rev] = peer.put_many([{"_id": share_id, "_rev": peer.get(share_id)["_rev"], **_OTHER_KINDS[kind]}])
    peer.put_many([{"_id": share_id, "_rev": rev, "_deleted": True, **_OTHER_KINDS[kind]}])
    assert sorted(map(repr, alice.sharing.grants)) == _whole(alice) == []


async def test_71c_1_a_group_turned_into_another_kind_leaves_her_seat_at_once(shared) -> None:
    """A Group document replaced by a body of another kind: the seat's groups are the store's at once
    (before, they stayed until the next change of a sharing document)."""
    alice, bob = shared.volumes["alice"], shared.volumes["bob"]
    me, him = alice.store.get(alice.key.user_id), alice.store.get(bob.key.user_id)
    team = groups.create_group(alice.store, "team", me, alice.trust.sign)
    groups.set_member(alice.store, alice.store.get(team["_id"]), him, "READ,WRITE", sign=alice.trust.sign)
    assert team["_id"] in alice.sharing.groups  # the control: taken in
    peer = WatchedStore(alice.store.inner, None, alice.store._listener)
    peer.put_many([{"_id": team["_id"], "_rev": alice.store.get(team["_id"])["_rev"], "type": "note"}])
    assert sorted(alice.sharing.groups) == _groups_whole(alice) == []


async def test_71c_1_a_user_document_turned_into_another_kind_leaves_her_seat_at_once(shared) -> None:
    """bob's user document replaced by a body of another kind: her seat's users are the store's at once
    (nothing sealed to a user the store no longer holds)."""
    alice, bob = shared.volumes["alice"], shared.volumes["bob"]
    assert bob.key.user_id in alice.sharing.users  # the control
    peer = WatchedStore(alice.store.inner, None, alice.store._listener)
    his = alice.store.get(bob.key.user_id)
    peer.put_many([{"_id": bob.key.user_id, "_rev": his["_rev"], "type": "note"}])
    assert bob.key.user_id not in alice.sharing.users
    assert alice.sharing.users.keys() == Guests.read(alice.store, alice.key.user_id, alice.trust).users.keys()
