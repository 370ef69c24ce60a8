"""Attack round 21 on issue 22 (the authenticated vault): what landed in 4b2f84c, 26bd0ca, a4e4b32.

Asked for: a passwd retires the wrapping it replaced and a body carrying it is merged
(vault/model/key_memory.py ``newest``/``retired``, users.py ``judged``/``_save``); a group owner's
signed Rotation carried out unless this device did it before (vault/services/share_ops.py ``resume``,
vault/model/rotations_done.py); retired seats of root's shared mount (fs/drive.py ``add_seat``/``unseat``).

Holes
-----
1. A STORE WRITER MAKES A MEMBER'S SECOND REMOVAL NO RE-KEY: THE REMOVED MEMBER KEEPS THE FILE'S KEY.
   Round 20 (3) again, through its fix.  A request is ``{_id, type, owner, fid, epoch}`` (sharing.py:272),
   the epoch read in clear from her node (sharing.py:290 ``_clear_epoch``), signed with Ed25519
   (deterministic); her device drops a group owner's request whose digest it remembers as done
   (share_ops.py:293-296, rotations_done.py:41).  bob removes carol from crew: request R(E), alice's
   device re-keys her file (epoch E+1) and remembers R(E).  bob takes carol back (she gets the file's
   new key through the group) and removes her again; meanwhile the store writer (or the server) shows
   bob's device her node at clear epoch E (her signature on it broken: bob cannot read or check it) and
   puts it back after.  bob signs R(E) again: byte for byte the first request, same signature, same
   digest; alice's device finds it "done here already" and deletes it, silently (no alarm at all): the
   file keeps the key carol holds, and everything alice writes to it next is readable by carol.  A
   genuine second removal without the writer re-keys (checked while writing the test).  No re-adding
   is needed: any two removals from the same group (carol, then dave) collide the same way, so after
   the first removal of a group sharing her file, the store writer can keep every later removed
   member in possession of the key.
   Cause: share_ops.py:293 + rotations_done.py:41 (a request is identified by its bytes, and a group
   owner's request carries nothing that tells a second removal from a replay of the first: no nonce,
   no member, no date), sharing.py:290 (its epoch is a clear field nobody checked).
   Fix: put something unique and signed into every request (a random nonce, or the removed member and
   the group's own signed membership revision), so a new removal never collides with one done; or key
   "done" by (fid, group, membership revision the request names) and re-key whenever the group's
   signed membership changed since the last re-key of that file.
   Tests: test_a_second_members_removal_rekeys_her_file_again (carol, then dave),
   test_a_second_removal_of_the_same_member_rekeys_her_file_again (carol removed, re-added, removed).

2. A REPLAYED GROUP OWNER'S ROTATION RE-KEYS HER FILE AGAIN AT EVERY UNLOCK: THE "DONE" MEMORY IS KEYED
   BY BYTES THE SIGNATURE DOES NOT COVER.  ``rotations_done.digest`` (rotations_done.py:41-44) hashes the
   whole request but its ``_rev``, the ``sig`` object included; the signature covers neither the ``sig``
   object (signing.py:37 ``_NOT_SIGNED``) nor anything in it but ``ed25519`` is read (signing.py:153,
   ``signer_of``: ``by``).  The store writer (or the server: no key) keeps bob's genuine request and puts
   it back with one more member in its ``sig`` object (``{"by": ..., "ed25519": ..., "n": k}``): it
   still verifies as bob's, its digest is new, so alice's device carries it out again
   (share_ops.py:293-299): a new key for her file (and its whole subtree for a folder), every file
   re-encrypted and re-sealed, at every unlock the writer wants, each time written to the store and
   synced to every peer.  Round 19 (3)/round 20 (3)'s promise ("a replay of it finds it done and asks for
   nothing") does not hold; only its cost is at stake (carol lost the key at the first re-key).  The
   same with ``_revisions``/``_conflicts``-like members the signature leaves out, if the store keeps them.
   Fix: digest the request as signed: ``signing.canonical(doc)`` (the fields the signature covers) plus
   the signer and the raw signature bytes, never the ``sig`` object as stored; better, key the memory by
   (fid, signer, the epoch named) so a re-signed identical request is done too.
   Test: test_a_group_owners_request_replayed_with_a_padded_signature_object_rekeys_nothing.

3. THE SERVER MAKES HER OWN DEVICE SIGN HER OLD SETTINGS AGAIN AND WRITE THEM OVER HER CURRENT ONES.
   A device remembers as ``seen`` only the key bodies it saw itself (key_memory.py ``remember``): one
   that joined after she ran ``passwd`` never saw her older bodies.  The server (or the writer of that
   device's vault folder) serves it one of them again (signed by her, a lower ``keys_seq``): not in
   ``seen`` and not newer, so it is taken for the losing side of a FORK (key_memory.py:109-113), not a
   replay; ``judged`` (users.py:179) then signs with her key and writes back every field of the OLD
   body but the key fields: her settings as they were (here ``passphrase_expiry_ttl`` 8 h over the 2 h
   she set; likewise ``source_dir_to_watch``, ``delete_file_from_source``, ``settings_at_us`` and the
   settings vector), pushed to the server and every peer, and says ``keys-diverged`` ("a passphrase set
   on the other device no longer opens this vault"), which is false.  Her current settings are gone from
   the store (devices that confirmed them keep them; a device joining next, or ``config show``, sees the
   old ones, the guarded ones as pending), at each replay, as often as the server likes.
   Cause: key_memory.py:109 (a body of hers with a lower ``keys_seq`` than the kept one is a replay only
   if this device saw it) and users.py:179-183 (the write-back takes the non-key fields from the body
   the store served, not from the newest body this device knows).
   Fix: write back over the newest signed body this device knows (keep her other fields with the key
   record, or take them from the body kept), never over the one judged the loser; and tell an ancestor
   from a fork (each body names the digest of the key body it replaced, signed: ``keys_prev``), so an
   old body of hers is a replay, said as such, even where it was never seen (a lower number alone
   cannot decide: round 20 (1)'s merge takes a lower body that retired the kept wrapping).
   Test: test_an_old_body_of_hers_replayed_to_a_device_that_joined_later_does_not_undo_her_settings
   (pouchdb-server).

What held
---------
- key_memory.py ``newest``'s merge against a keyless server: forks of ``passwd`` against a recovery-key
  revoke on the other side (either digest winning), a withheld intermediate ``passwd`` body served to a
  device with a higher ``keys_seq`` (merged to that passphrase, and undone by the laptop's next body:
  only the withholding any server can do), an unsigned body (its lists not read) -- no rollback of a
  revocation or of a retired wrapping was found; the lists grow only from bodies she signed
  (``_digests``, ``retired``), so the server cannot poison or inflate them (only her own 64+ changes
  reach ``KEEP``, which then keeps the highest digests, not the newest: not pursued).
- Crash between the store write and the ``.keys`` record in ``_save``: the next unlock takes her signed
  body as newer and records it (the record is written after the store, never before).
- Seats (drive.py ``add_seat``/``unseat``): a locked gate answers nothing (gate.py ``volume``/``view``
  raise Locked), so a seat never unlocked gave the kernel no inode and freeing its number is safe; the
  per-uid cap counts only seats ever unlocked, which a local user without a passphrase cannot make for
  another user's uid (SO_PEERCRED); a retired seat comes back only for the same (uid, user).
- A group owner's request unsigned, or signed by someone else: refused as before (share_ops ``_request``).
- Not tried for lack of time: uid reuse by a new Linux account (inherent to a uid map), an owner who
  lost the group still asking for re-keys (a re-key is always safe: only cost).
"""

from __future__ import annotations

from pathlib import Path

import adversary
from conftest import first_device, fusevault, mounted, settled, wait_for
from services.test_trust_attack_round4 import _alarms

from mount.test_trust_attack_round4 import _alice_dek
from mount.test_trust_attack_round19 import _crew_sharing_her_plan, _her_doc
from mount.test_trust_attack_round19_rotation import _vault_bytes
from mount.test_trust_writes import BOB, _admin

DAVE = "dave's passphrase"


def test_a_group_owners_request_replayed_with_a_padded_signature_object_rekeys_nothing(
        vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    fid = _crew_sharing_her_plan(vault, mnt)
    _admin(vault, "group", "member", "remove", "crew", "carol", passphrase=BOB)  # genuine, signed by bob
    (signed,) = adversary.docs(vault, "Rotation")
    with mounted(vault, mnt):  # the genuine request: one re-key, remembered as done here
        pass
    assert adversary.docs(vault, "Rotation") == []
    dek, size = _alice_dek(vault, fid), _vault_bytes(vault)
    with mounted(vault, mnt):  # nothing pending: nothing changes
        pass
    assert _alice_dek(vault, fid) == dek
    found: list[dict] = []
    for n in range(2):  # the store writer (or the server) replays it, the sig object padded each time
        replay = {k: v for k, v in signed.items() if k != "_rev"}
        adversary.put(vault, {**replay, "sig": {**signed["sig"], "n": n}})
        with mounted(vault, mnt):
            found = _alarms(mnt)
    assert _alice_dek(vault, fid) == dek and _vault_bytes(vault) == size, (
        f"a replay of bob's request, its sig object padded, re-keyed her file again ({size} -> "
        f"{_vault_bytes(vault)} bytes; said: {[(a['kind'], a['subject']) for a in found]})")


def _removed_while_the_store_shows_the_first_epoch(vault: Path, mnt: Path, fid: str, first: dict,
                                                   first_epoch: int, member: str) -> None:
    """bob removes ``member`` from crew while the store writer shows his device her file at the epoch
    of the ``first`` request (her signature on it broken: bob cannot read her node), then puts her
    genuine body back: her next mount must give the file a new key all the same."""
    dek = _alice_dek(vault, fid)
    node = adversary.get(vault, fid)
    assert node is not None and node["epoch"] > first_epoch
    adversary.put(vault, {**node, "epoch": first_epoch})
    _admin(vault, "group", "member", "remove", "crew", member, passphrase=BOB)  # genuine, signed by bob
    adversary.put(vault, node)
    (second,) = adversary.docs(vault, "Rotation")
    same = {k: v for k, v in second.items() if k != "_rev"} == {k: v for k, v in first.items() if k != "_rev"}
    with mounted(vault, mnt):
        said = [(a["kind"], a["text"][:100]) for a in _alarms(mnt) if a["subject"] == f"rotate-{fid}"]
    assert _alice_dek(vault, fid) != dek, (
        f"{member}, removed from crew, still holds its key (the request is the first byte for byte: "
        f"{same}; said: {said})")


def test_a_second_removal_of_the_same_member_rekeys_her_file_again(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    fid = _crew_sharing_her_plan(vault, mnt)
    first_epoch = adversary.get(vault, fid)["epoch"]  # type: ignore[index]
    _admin(vault, "group", "member", "remove", "crew", "carol", passphrase=BOB)  # genuine, signed by bob
    (first,) = adversary.docs(vault, "Rotation")
    with mounted(vault, mnt):  # carried out: a new key, the request remembered as done on this device
        pass
    assert adversary.docs(vault, "Rotation") == []
    # bob takes carol back into crew (she is sealed the file's new key through the group), then removes
    # her again; meanwhile the store writer shows his device alice's file at the epoch it had the first
    # time (her signature on it broken: bob cannot read her node), then puts her genuine body back.
    _admin(vault, "group", "member", "add", "crew", "carol", "--perm", "READ", passphrase=BOB)
    with mounted(vault, mnt):
        pass
    _removed_while_the_store_shows_the_first_epoch(vault, mnt, fid, first, first_epoch, "carol")


def test_a_second_members_removal_rekeys_her_file_again(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    fid = _crew_sharing_her_plan(vault, mnt)
    _admin(vault, "user", "add", "dave", "--uid", "2003", passphrase=DAVE)
    _admin(vault, "group", "member", "add", "crew", "dave", "--perm", "READ", passphrase=BOB)
    first_epoch = adversary.get(vault, fid)["epoch"]  # type: ignore[index]
    _admin(vault, "group", "member", "remove", "crew", "carol", passphrase=BOB)  # genuine, signed by bob
    (first,) = adversary.docs(vault, "Rotation")
    with mounted(vault, mnt):  # carried out: a new key (dave gets it through the group)
        pass
    _removed_while_the_store_shows_the_first_epoch(vault, mnt, fid, first, first_epoch, "dave")


NEW = "a new passphrase, the old one leaked"


def laptop_after_passwd(url: str, tmp_path: Path) -> tuple[Path, dict]:
    """Her first device, syncing with ``url``, after a ``passwd`` to NEW: (its vault, her signed user
    document from before the passwd, as the server keeps it)."""
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        wait_for(lambda: settled(a), "the first push")
    old = _her_doc(laptop)
    changed = fusevault("passwd", laptop, env={"FUSEVAULT_NEW_PASSPHRASE": NEW})
    assert changed.returncode == 0, changed.stderr
    return laptop, old


def test_an_old_body_of_hers_replayed_to_a_device_that_joined_later_does_not_undo_her_settings(
        couch, tmp_path: Path) -> None:
    url, _ = couch
    laptop, old = laptop_after_passwd(url, tmp_path)  # old: her signed body from before, kept by the server
    with mounted(laptop, tmp_path / "a", passphrase=NEW) as a:
        done = fusevault("config", "set", "passphrase_expiry_ttl", "2 hour", "--mount", a, passphrase=None)
        assert done.returncode == 0, done.stderr
        wait_for(lambda: settled(a), "the push")
    hers = _her_doc(laptop)["passphrase_expiry_ttl"]
    assert hers != old["passphrase_expiry_ttl"]
    desktop = tmp_path / "desktop"
    joined = fusevault("init", desktop, "--join", url, "--user", "alice", passphrase=NEW)
    assert joined.returncode == 0, joined.stderr
    with mounted(desktop, tmp_path / "d", passphrase=NEW) as d:
        wait_for(lambda: settled(d), "the desktop's first sync")
    assert _her_doc(desktop)["passphrase_expiry_ttl"] == hers
    # The server (or the desktop's vault folder's writer) serves her old body again.
    adversary.put(desktop, old)
    with mounted(desktop, tmp_path / "d", passphrase=NEW) as d:
        wait_for(lambda: settled(d), "the sync to settle")
        said = [(x["kind"], x["subject"]) for x in _alarms(d)]
    now = _her_doc(desktop)
    assert now["passphrase_expiry_ttl"] == hers, (
        f"her device signed her old settings again and wrote them over hers: {now['passphrase_expiry_ttl']} "
        f"(she set {hers}; said: {said}; her body now signed over keys_seq {now.get('keys_seq')})")
