"""Attack round 54a, in-process: the key proof (her_keys.proven, conflict_rules._proven_hers), 53a's and 53c
(2)'s fixes, and a revoked member's key kept after her unshare (vault/services/stale_keys.py).

54a (1), medium: a key of her other device's re-key, sealed to a member her unshare removed, becomes this
device's key by an arrival, and no look over her keys is asked; what she writes meanwhile he reads.

- Attacker: bob, removed from docs/ by her laptop's unshare, who keeps the key her desktop (not told of
  the unshare yet) sealed to him at its re-key; whoever orders the sync's batches (the server), or no
  one (her desktop's, or a WRITE member's, later commit of the file moves its document past its key
  documents in the changes feed: the keys come in one batch, the file in the next).  The member's
  variant: a WRITE member still in the share commits over her desktop's re-key, carrying her proof of
  its key (``key_proof``): his state is taken at once as hers (her_keys.key_not_hers ``proven``,
  absorbing's arrival), the same path as her desktop's own state here.
- Steps (``test_54a_1_a_revoked_members_key_taken_by_an_arrival_asks_a_key_check``): docs/notes.txt
  shared WRITE with bob; her desktop loaded; her laptop unshares docs (notes re-keyed to epoch 1, bob's
  key taken back); her desktop takes the laptop's re-key of notes in but not the share's deletion, and
  re-keys notes (epoch 2, a key derived for the recipients it sees, sealed to bob).  Her laptop gets bob's
  key document first (a key check runs: the key is of epoch 2, the file's is 1, passed over), then notes
  at epoch 2 (her desktop's state, over her laptop's).
- Seen: her laptop holds notes under the epoch-2 key, the one sealed to bob, and asks no key check
  (``Inodes.take_key_check`` False: the session's rotation service does nothing): her next write there
  is sealed under it and bob opens it with his key file (``open_guest``); the stale key is caught only
  at her next unlock, or when some key, share, group or user document next arrives (hours, days on a
  mount left up).  Expected: a look over her keys
  once an arrival moves her file's key epoch up (a file re-keyed before she writes to it).
- Cause: vault/services/absorbing.py:99-102 asks ``check_keys`` only for documents of the sharing
  types; vault/services/rotation.py:264 (``record.epoch == each.epoch``) passes over a key of an epoch
  above the file's, so the check run when the key came cannot catch it either; nothing asks again when
  the node's epoch reaches that key's (absorbing ``absorb_node`` taking her state or a member's proven
  one, conflicts' rule 2 keeping the newer epoch).
- Impact: her unshare undone for that file, for what she writes until the next check: bob reads it.
- Fix: ask ``check_keys`` when a taken-in state of her file carries an epoch above the one held (in
  ``absorb_node``, conflicts' settling and the load), or have ``_rekey_unreached`` keep keys of epochs
  above the file's for a look once the file reaches them.

Fixed: a state of her file taken in at an epoch above the one held (an arrival, the conflict settling,
a state that waited) asks the look over her keys (absorbing.py ``_update``, ``_epoch_raised``); a state at
the epoch held asks none (``test_a_plain_arrival_at_the_held_epoch_asks_no_key_check``).  The same hole
for a new file of hers whose key document came before it (found by the fix's round): the look remembers
the files of key files it found not held (stale_keys.py ``ahead``) and asks again when one arrives
(``test_54a_1_a_new_file_taken_after_its_key_document_asks_a_key_check``).

Held (controls kept): the same key document and state in one batch: the check is asked after the state
is in, and the file re-keyed (``test_key_document_and_state_in_one_batch_re_key_the_file``).

Tried and held (no test kept): her proof copied to another epoch or file, or of her newer key used for
her older one (tests/inprocess/test_key_proof.py covers these); a proof under another user's master key.
Not tried (short round): the member's variant with a third user (the in-process fixture has two users:
same code path, ``proven`` in ``key_not_hers``); 53a's ``claims_judged`` take-back and ``claims_said``;
53c (2)'s wrapping rules (``carried_wrapping``, ``wrapping_ok``, ``_open_mine``) for a commit loop.
"""

from __future__ import annotations

import os
import stat

from fusevault.store import replica
from fusevault.vault.model import sharing
from fusevault.vault.services import conflicts, rotation
from fusevault.vault.services.absorbing import absorb, absorb_arrivals
from fusevault.vault.volume import Volume
from inprocess.conftest import ROOT
from inprocess.test_two_users import ALICE, _share, _unshare, _walk, _write

DIR = stat.S_IFDIR | 0o755
KEY_ARRIVES = {"_id": "a-key-document", "type": sharing.FILE_KEY}  # its type is what absorb looks at


async def _desktops_re_key_sealed_to_bob(shared, seen: list | None = None):
    """docs/notes.txt shared WRITE with bob; her laptop (this seat) unshares docs; her desktop, which took
    the laptop's re-key of notes in but not the share's deletion, re-keys notes and seals the key to bob.
    (her laptop's volume, its node, her desktop's node, bob's key file.)  ``seen``: given, the laptop's
    stored state of notes after the unshare and its revisions, added to it."""
    drive = shared.drive
    docs = await drive.mkdir(ROOT, b"docs", DIR, ALICE)
    await _write(drive, docs.st_ino, b"notes.txt", b"hers", ALICE)
    await _share(shared, "docs", "WRITE")
    alice = shared.volumes["alice"]
    node = alice.resolve(b"docs/notes.txt")
    (grant,) = [g for g in alice.sharing.grants if g.fid == alice.resolve(b"docs").fid]
    path = sharing.key_path(alice.layout, grant, grant.grantee, node.fid)
    # Her desktop: its own store handle, which tells her laptop nothing (the sync does, below).
    desktop = Volume.load(alice.layout, shared.store, alice.key, alice.tree.get(1).fid)
    if desktop.ledger is not None:
        desktop.ledger.device = "alices-desktop"  # another device: its counter is its own
    await _unshare(shared, "docs")
    assert node.epoch == 1 and not path.exists(), "her unshare did not re-key notes and take bob's key back"
    if seen is not None:
        local = replica.local_of(shared.store)
        seen += [local.get(node.fid), replica.current_history(local, node.fid)]
    theirs = desktop.resolve(b"docs/notes.txt")
    absorb_arrivals(desktop, [shared.store.get(node.fid)])  # her laptop's re-key, not the unshare yet
    await desktop.rekey(theirs)
    assert theirs.epoch == 2 and sharing.read_key(path).epoch == 2, "her desktop sealed no key to bob"
    return alice, node, theirs, path


async def test_54a_1_a_revoked_members_key_taken_by_an_arrival_asks_a_key_check(shared):
    alice, node, theirs, path = await _desktops_re_key_sealed_to_bob(shared)
    absorb_arrivals(alice, [KEY_ARRIVES])  # bob's key document first: a batch of its own
    assert alice.tree.take_key_check()
    await rotation._rekey_unreached(alice)
    assert node.epoch == 1, "a key of an epoch above the file's was taken for a stale one"
    absorb_arrivals(alice, [shared.store.get(node.fid)])  # then notes, at her desktop's epoch
    assert (node.epoch, node.dek) == (2, theirs.dek), "her desktop's re-key not taken in"
    assert alice.tree.take_key_check(), "her file reached the epoch of bob's key: no look over her keys"
    await rotation._rekey_unreached(alice)  # what the session's service (rotation.keep_moves_rekeyed) does
    assert node.epoch == 3 and not path.exists(), "bob's key not taken back, or notes not re-keyed"
    assert node.dek != theirs.dek  # a bool: the keys are not printed by a failing assert
    # What this device seals now: her write, under a key bob holds none of.
    entry = await _walk(shared.drive, b"docs/notes.txt", ALICE)
    info = await shared.drive.open(entry.st_ino, os.O_WRONLY, ALICE)
    await shared.drive.write(info.fh, 0, b"after the unshare")
    await shared.drive.release(info.fh)
    assert shared.store.get(node.fid)["epoch"] == 3


async def test_54a_1_her_desktops_re_key_kept_by_the_conflict_settling_asks_a_key_check(shared):
    """The settling's path: her laptop changed notes (a chmod) over its state before her desktop's re-key
    (two branches); rule 2 keeps her desktop's state for its newer epoch, under the key sealed to bob,
    whose document came first (its look passed it over)."""
    seen: list = []
    alice, node, theirs, path = await _desktops_re_key_sealed_to_bob(shared, seen)
    before, history = seen
    absorb_arrivals(alice, [KEY_ARRIVES])  # bob's key document first
    assert alice.tree.take_key_check()
    await rotation._rekey_unreached(alice)
    assert node.epoch == 1 and path.exists()
    local = replica.local_of(shared.store)
    ahead = [f"{len(history) + n}-{str(n) * 32}" for n in (2, 1)] + history  # her laptop's saves apart
    replica.store_revisions(local, [{**before, "_rev": ahead[0], "_revisions": replica.revisions(ahead)}])
    absorb(alice, [local.get(node.fid)], own=False)
    await alice.setattr(node.ino, mode=stat.S_IFREG | 0o600)
    assert replica.other_leaves(local, node.fid), "no conflict to settle"
    assert not alice.tree.take_key_check()
    conflicts.note_branches(alice, local, [node.fid])
    await conflicts.settle(alice, local, [node.fid])
    assert not replica.other_leaves(local, node.fid)
    assert node.epoch == 2 and node.dek == theirs.dek, "rule 2 did not keep her desktop's re-key"
    assert alice.tree.take_key_check(), "her file reached the epoch of bob's key: no look over her keys"
    await rotation._rekey_unreached(alice)
    assert node.epoch == 3 and not path.exists(), "bob's key not taken back, or notes not re-keyed"
    assert node.dek != theirs.dek and node.mode & 0o777 == 0o600


async def test_54a_1_a_new_file_taken_after_its_key_document_asks_a_key_check(shared):
    """The same hole for a new file: her desktop, not told of her unshare of docs, makes docs/new.txt and
    seals its key to bob (before its document); her laptop gets the key first (its look finds no file
    there and passes it over), then the file: the look asked again, bob's key taken back."""
    drive = shared.drive
    docs = await drive.mkdir(ROOT, b"docs", DIR, ALICE)
    await _write(drive, docs.st_ino, b"notes.txt", b"hers", ALICE)
    await _share(shared, "docs", "WRITE")
    alice = shared.volumes["alice"]
    (grant,) = [g for g in alice.sharing.grants if g.fid == alice.resolve(b"docs").fid]
    desktop = Volume.load(alice.layout, shared.store, alice.key, alice.tree.get(1).fid)
    await _unshare(shared, "docs")
    _, new = await desktop.create(desktop.resolve(b"docs").ino, b"new.txt", 0o644, ALICE)
    path = sharing.key_path(alice.layout, grant, grant.grantee, new.fid)
    assert path.exists(), "her desktop sealed no key of new.txt to bob"
    absorb_arrivals(alice, [KEY_ARRIVES])  # its key document first: a batch of its own
    assert alice.tree.take_key_check()
    await rotation._rekey_unreached(alice)
    assert path.exists() and alice.tree.find(new.fid) is None
    absorb_arrivals(alice, [shared.store.get(new.fid)])  # then the file
    node = alice.tree.find(new.fid)
    assert node is not None and node.dek == new.dek, "her desktop's new file not taken in"
    assert alice.tree.take_key_check(), "her new file came after a key of it: no look over her keys"
    await rotation._rekey_unreached(alice)
    assert node.epoch == 1 and not path.exists(), "bob's key not taken back, or new.txt not re-keyed"
    assert node.dek != new.dek


async def test_a_plain_arrival_at_the_held_epoch_asks_no_key_check(shared):
    """The look over her keys lists every key file of the vault: asked when her file's epoch moves up
    or a file whose key came first arrives (above), never for a state at the epoch held (her other
    device's plain write), nor for a new file of hers no key file named at the last look."""
    alice, node, theirs, path = await _desktops_re_key_sealed_to_bob(shared)
    absorb_arrivals(alice, [KEY_ARRIVES, shared.store.get(node.fid)])
    assert alice.tree.take_key_check()
    await rotation._rekey_unreached(alice)
    assert node.epoch == 3
    desktop = Volume.load(alice.layout, shared.store, alice.key, alice.tree.get(1).fid)  # her desktop again
    absorb_arrivals(desktop, [shared.store.get(node.fid)])
    mine = desktop.resolve(b"docs/notes.txt")
    assert mine.epoch == 3
    await desktop.setattr(mine.ino, mode=stat.S_IFREG | 0o600)  # her desktop's plain change, at epoch 3
    absorb_arrivals(alice, [shared.store.get(node.fid)])
    assert node.mode & 0o777 == 0o600 and node.epoch == 3, "her desktop's change not taken in"
    assert not alice.tree.take_key_check(), "a state at the epoch held asked a look over every key"
    _, new = await desktop.create(desktop.resolve(b"docs").ino, b"new.txt", 0o644, ALICE)
    absorb_arrivals(alice, [shared.store.get(new.fid)])
    assert alice.tree.find(new.fid) is not None, "her desktop's new file not taken in"
    assert not alice.tree.take_key_check(), "a new file no key came for asked a look over every key"


async def test_key_document_and_state_in_one_batch_re_key_the_file(shared):
    alice, node, theirs, path = await _desktops_re_key_sealed_to_bob(shared)
    absorb_arrivals(alice, [KEY_ARRIVES, shared.store.get(node.fid)])
    assert node.epoch == 2 and alice.tree.take_key_check()
    await rotation._rekey_unreached(alice)
    assert node.epoch == 3 and not path.exists(), "bob's key not taken back, or notes not re-keyed"
