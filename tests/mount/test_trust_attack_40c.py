"""Attack round 40c: the whole model with fresh eyes, away from the sync layer.

Scope: pinned identities, signed grants, signed writes, authenticated settings,
validated names, sidecars, migration of older vaults, the recovery key,
capability links, history/restore, and the local vault-folder writer.

Six holes, all in what a device takes on trust from the store, before (or instead of) a
signature: (1) a user document without its sealed key pairs is "format 1" and gets new ones, which
then sign what the store holds; (2) her root folder is the clear ``root`` field; (3) a new member's
first unlock takes every unsigned user for one from before signatures; (4) a missing import record
is "never imported"; (5) ``passwd`` on a device without her mark signs over a stripped body; (6) a
link record removed leaves her link irrevocable.  Each had an xfail test (the safe behaviour) and
a control.  The report below is the attacker's, as written; since, all six are fixed and their
tests pass (docs/SECURITY.md, "Attack round 40"): (1) and (5)'s new devices now refuse, one line,
and the tests say so.

Holes
-----

(1) A user document stripped of its key pairs: a device without her mark mints new ones and signs
    what the store writer planted; her desktop then acts on it.  (severity: high)

    Attack: a writer of the vault folder (or the server, for a device that syncs) takes two fields
    off alice's CURRENT user document: ``en_private_keys`` (her sealed key pairs) and ``sig``, and
    puts an unsigned Share of her folder proj with bob (any member: the planted grantee).  No older
    copy of anything is needed.  Then alice mounts on a device with no mark of hers (a new device,
    a state directory wiped, or the vault folder at another path: confirmed.py keys the mark by the
    vault's real path) once, and later her desktop (mark, key memory, pins all intact).

    Seen (3 of 3 runs): the new device's unlock takes the document for one "from before key pairs
    (vault format 1, early)" and mints new key pairs with ``signs=False``
    (``users.ensure_identity``), stored; ``migrate.sign_own`` then finds an unsigned user document,
    an identity that does not "sign" yet and no mark here, and signs with the new key every
    unsigned document of hers in the store: the planted Share, and her user document with the new
    keys and ``signs`` set.  Her desktop's next unlock opens the new identity from that document
    (it is sealed under her master key, so it is "hers": ``key_memory`` judges only the key
    fields), takes the planted Share as signed by her, and seals proj's keys to bob: bob opens
    the DEK of the file she writes next on her desktop (proj/new.txt).  Her own older nodes and
    versions, signed by her real key, are now refused on her own devices ("does not carry a valid
    signature of its author", "rollback: the root folder's document is missing"): plan.txt reads
    empty on the desktop.  Nothing says her key pairs were replaced; bob's device (pin) would say
    her keys changed, but the key sealed to him is his to open with any program.

    On her own device alone (mark present, no other device involved; 3 of 3 runs): the same strip
    makes her desktop mint new key pairs and store them in her document (unsigned); the
    migration refuses to sign (alarm "not signed with their key"), but the minted identity is hers
    from then on, at every mount: her nodes and versions, signed by her real key, are refused
    ("does not carry a valid signature of its author", "rollback: the root folder's document is
    missing") and plan.txt reads empty, durably (her real sealed key pairs are gone from the
    store; nothing puts them back).

    Cause: fusevault/vault/model/users.py:108-117 (``ensure_identity``: the absence of
    ``en_private_keys``, a field any store writer can delete, is taken for format 1 and answered
    by minting an identity), called from fusevault/fs/personal.py:81 and
    fusevault/agent/sessions.py:156 before anything checks it; fusevault/vault/model/migrate.py:75-85
    (the new identity's ``signs=False`` plus no mark on this device is taken for "from before
    signatures"); and users.py ``unlock`` / trust.py ``Trust.__init__`` take whatever identity her
    master key opens from the store as her own, also on the device that saw her sign with another.

    Impact: a store writer alone gets any planted grant (Share, Group membership, node/version
    documents in her name) signed with a key all her devices then trust as hers; her keys leak to
    the grantee; her genuine tree is refused on her own devices.  Worse than "Out of reach: Before
    the first signature", which says this needs a whole format-2 copy of her document kept from
    before the upgrade: here her current document, two fields deleted, is enough, in a vault that
    never was format 2.

    Fix (proposed): never mint key pairs for a user document that names public keys, carries a
    signature, or belongs to a vault whose users all had pairs; bind "this user has key pairs /
    signs" to what only the passphrase opens (e.g. in the AD or body of the wrapped master key,
    checked by ``unlock``), so a document without them is refused, not upgraded; a device whose
    key memory knows her public keys refuses another identity under her name (alarm, nothing
    signed); the migration signs nothing when the identity was minted in this same unlock.

    Tests: ``test_a_stripped_identity_does_not_get_a_planted_share_signed_and_acted_on[stripped]``
    (xfail), control ``[control]`` (the planted share without the stripping: refused, unsigned);
    ``test_a_stripped_identity_does_not_replace_her_keys_on_her_own_device[stripped]`` (xfail),
    control ``[control]``.

(2) Her root folder is whatever her user document's clear ``root`` names.  (severity: high)

    Attack: a writer of the vault folder (or the server) sets ``root`` in alice's user document to
    the id of her folder proj, which she shares with bob (READ).  Her document's signature no
    longer holds; nothing else is touched.

    Seen (3 of 3 runs): her mount shows proj's contents as its top (``plan.txt`` only). What she
    writes at the top of her mount (diary.txt) is made in proj, and its key sealed to bob (a
    ``.vfkey`` of it for him, which he opens). ``fusevault status`` says only that her document "is
    not signed ... its settings are ignored" and that "the settings in this user's document are not
    signed": the root is no setting and is not ignored. Her real root (notes.txt, proj) is gone from
    her view while the field stays; put back, her diary is in proj.

    Cause: the root is read from the store's document, never checked against her signature nor
    against what this device saw: fusevault/fs/personal.py:86 (``unlocked.user["root"]``),
    fusevault/agent/sessions.py:161 (``doc["root"]``, a shared mount's unlock), and the same in
    fusevault/target.py:122, fusevault/cli/files.py:172, fusevault/cli/check.py:91,102.
    ``unlock_here`` judges only the key fields (key_memory); ``confirmed`` guards only the settings.

    Impact: a store writer moves everything she makes at the top of her mount into a folder shared
    with others (confidentiality: her new files sealed to the grantees), or into any folder of hers;
    her tree as she knows it is hidden (a silent "rename" of her whole vault).

    Fix (proposed): take ``root`` only from her own signed body (``confirmed.own_signature``), else
    from the newest body this device remembers (``key_memory``), else refuse to mount with an alarm;
    better, seal the root fid with her identity (``en_private_keys``), which only her master key
    opens, and check the node it names is her own folder that has no parent.

    Tests: ``test_her_root_is_not_moved_into_a_folder_she_shares[root-moved]`` (xfail), control
    ``[control]``.

(3) A new member's first mount takes every unsigned user for one "from before signatures".
    (severity: high)

    Attack: in a vault of this format (signed from birth), the store's writer (or carol, a member
    who can write the vault folder, or the server) adds carol to alice's group team with an
    unsigned Group body, and takes the ``sig`` off alice's user document (nothing else changes).
    Then bob, a member of team, mounts for the first time (every member does once; so does any
    member's new device whose pins document the store withholds) and shares his notes with @team.

    Seen (3 of 3 runs): bob's ``Trust`` has no pins yet (``had_pins`` False), so alice's unsigned
    document is pinned with ``signs=False``; ``Trust.legacy(alice)`` is then True and every
    unsigned document in her name counts as hers on his devices (the pin travels in his Pins
    document, and ``signs`` is only set again once her signed document is served).  The unsigned
    team body naming carol is admitted and pinned; ``share --with @team`` seals bob's key to carol.
    No alarm: ``fusevault status`` on bob's mount says nothing.  Without the stripped signature
    (control) the forged body is refused and carol gets nothing.

    Cause: fusevault/vault/model/trust.py:361 (``legacy_ok = signed or not self.had_pins``): the
    module's premise, that the first unlock with pins is "the one that met every user of a format-2
    vault", is false for every user added since (their first unlock is their first with pins);
    then ``Trust.verify`` / ``legacy`` (trust.py:596-618) and ``grants.key_signed`` /
    ``signed_by_owner`` take unsigned Shares, Groups, node/version documents and ``.vfkey``
    records in alice's name on bob's devices.

    Impact: a store writer forges, for a new member (or a new device of one), any grant, group
    membership, file key or write in the name of any user whose signature it strips: keys of the
    member's own files go to the attacker (here), forged files and keys of hers are taken as hers.
    Not "a device with no memory" as documented (that one trusts keys and signed states it sees
    first, not unsigned documents), and not "Before the first signature" (alice signs since her
    creation; the vault never was format 2).

    Fix (proposed): take an unsigned user as "from before signatures" only at an unlock whose own
    user was from before signatures too (the unlock ``migrate.sign_own`` signs at), never at the
    first unlock of a user created signed (``identity.signs`` from birth); or let ``user add`` seal
    into the new user's first pins the users the administering device saw signed.

    Tests: ``test_a_new_members_first_mount_takes_no_unsigned_group_body_in_an_owners_name[stripped]``
    (xfail), control ``[control]``.

(4) Her import records removed: the watcher imports an unchanged source again over her edit.
    (severity: medium)

    Attack: alice watches a folder (``source_dir_to_watch``); report.txt was imported into
    Imported/ and she then corrected it in her vault.  A writer of the vault folder (or the
    server) deletes her ImportRecord rows (sealed, but their ids and type are in clear), or puts
    back an older one (of an earlier state of the source: inferred, not run).

    Seen (3 of 3 runs): at her next mount the watcher's first pass finds no record for
    report.txt, finds a file at its vault path whose digest differs from the (unchanged) source,
    and writes the source over it as a "new version": her file reads the scanner's copy again.
    Her edit is only in ``.versions``; no alarm, the import task says "1 new version".  With the
    records kept (control) the source is "unchanged" and her edit stays.

    Cause: fusevault/imports/importer.py:123-148 (``take``) and :196 (``_already_there``): a missing
    record is taken for "never imported", and a vault file that differs from the source is then
    overwritten, whoever changed it; the records this device wrote are not remembered outside the
    store (as the ledger, pins and confirmations are), so their loss is neither told nor said.

    Impact: a store writer silently rolls back any file she edited after it was imported (the
    source state, at most once imported, is imported again); repeated at will.

    Fix (proposed): when no record exists and the vault path holds a file whose history holds a
    version with the source's digest (it was imported, then changed), keep her file and write the
    record again (or import beside it, as a conflict copy) and raise an alarm; keep a device-side
    digest of the records (as the ledger does for files) so their removal or replay is said.

    Tests: ``test_her_edit_of_an_imported_file_is_not_overwritten_when_the_records_go[deleted]``
    (xfail), control ``[kept]``.

(5) ``passwd`` on a device without her mark signs over a stripped body, whatever her sealed key
    pairs say.  (severity: high; needs her action on such a device)

    Attack: the vault-folder writer (or the server) changes clear fields of alice's user document
    (here ``root`` -> her shared folder proj, as in (2); equally, inferred and not run,
    ``import_into``, ``uid``, ``username``, ``settle_seconds``) and takes its ``sig`` off; her
    ``en_private_keys`` (which seal ``signs: true``) stay. She then runs ``fusevault passwd`` (or
    ``passwd --recovery``, or ``recovery-key create``/``revoke``) on a device without her mark: a
    new one (the usual place for a recovery-key reset), a state directory lost, the vault folder at
    another path.

    Seen (3 of 3 runs): the command succeeds and stores her document, self-signed, with the
    attacker's ``root``.  Her desktop (mark and key memory intact) then mounts with the new
    passphrase and shows proj's contents as her top folder, with no alarm at all (``fusevault
    status`` is clean): what she writes at the top is sealed to bob, and a shared mount, which
    maps only self-signed documents, takes it too.

    Cause: fusevault/vault/model/users.py:236-249 (``_refuse_unsigned``): a served body with no
    ``sig`` is taken as "from before signatures" when this device has no mark and no key memory
    of her, without asking the identity ``_save`` just opened (``identity.signs``, sealed under
    her master key, says she signs: the check ``migrate.sign_own`` makes); then ``_save``
    (users.py:212-233) signs every field of ``key_memory.signing_base`` of that body.

    Impact: a store writer's changes to her user document become hers, signed, on every device
    (her root moved into a shared folder, run; her imports redirected into one, her uid or name,
    inferred), and nothing says so any more.

    Fix (proposed): in ``_refuse_unsigned`` (and wherever a body is signed over), refuse when the
    opened identity has ``signs`` set, as ``sign_own`` does; more generally sign over only a body
    her own key signed, else over the fields a fresh document would have (her keys, defaults) and
    say so.

    Tests: ``test_passwd_on_a_new_device_does_not_sign_what_the_store_writer_put_in_her_document
    [sig-stripped]`` (xfail), control ``[control]``.

(6) Her link records removed: she can no longer revoke a link, and nothing says why.
    (severity: medium)

    Attack: alice publishes one.txt by link (``link create``).  A writer of the vault folder (or
    the server) deletes her LinkRecord rows (sealed, but ``type`` is in clear).

    Seen (3 of 3 runs): at her next mount ``link list`` says "no links", ``link revoke LINK`` (the
    very link text she holds) exits 4, "you made no such link", ``fusevault status`` says nothing;
    the link keeps serving her file (``link get`` fetches it after her revoke).  With the record
    kept (control) the revoke works and the link is dead.

    Cause: fusevault/links/owner.py:101-105 (``_record``) and fusevault/links/link_records.py
    ``load_records``: the owner keys (the delete key is in no link) live only in the store,
    which its writer controls; this device keeps no copy nor any count of the links it made, so
    a record gone is neither said nor recovered.  As in (4), a record this device wrote is lost
    silently, though "a device that saw them reports what vanished" (SECURITY.md, Out of reach).

    Impact: a store writer makes any of her links (shares and drop boxes) irrevocable from her
    side: what she publishes stays public until it expires, drop boxes keep taking drops.

    Fix (proposed): keep the owner keys of each link this device made (or a digest list of its
    records) in the device's state directory, sealed with the device key, as pins and the ledger
    are; say a record that vanished (alarm) and let ``link revoke`` use the kept keys.

    Tests: ``test_she_can_still_revoke_her_link_when_its_record_goes[deleted]`` (xfail), control
    ``[kept]``.

What held (no hole found)
-------------------------

- Stripping only ``sig`` from her user document (keys kept), on a device with or without her
  mark: the ``signs`` flag sealed in ``en_private_keys`` makes ``sign_own`` refuse (alarm), nothing
  signed (tried by hand; the control of (1) covers the planted share on a new device).
- The stripped identity of (1) on her own device (mark present) alone: the planted share stays
  unsigned and is refused (tried; her identity in the store is still replaced by a minted one,
  part of (1)).
- A forged (unsigned) group body while the owner's document is signed, on a new member's first
  mount: refused, nothing sealed (control of (3)).
- Signatures: the two canonical forms differ only for whole-valued floats; the unsigned CouchDB
  bookkeeping fields (``_conflicts``, ``_revisions``...) are read only in the sync layer (out of
  this scope); the cache of checked signatures (verified.py) is keyed by key, message and
  signature and sealed outside the vault (reading).
- Export / dump folder: every host path fd-relative, O_NOFOLLOW, O_EXCL temporaries,
  RENAME_NOREPLACE, vault symlinks exported as links, names re-checked (reading); the vault
  folder's ``remove_tree`` refuses a link and removes fd-based (reading).
- Records: a version's records are checked against the digests its admitted, signed document
  holds; a digest-less version is accepted only if signed so (a writer who holds the key anyway)
  (reading).
- ``vault.json``'s format number: only bumped by ``upgrade``; no check is skipped by a lower one
  (reading).  An "old" Share without ``group``, an unsigned ``.vfkey``: only while the owner is
  legacy (which (3) makes too easy).
- Shared mount: a uid maps only a self-signed user document, so (2) there locks her out with an
  alarm instead of moving her root (reading, not run); (1) and (3) reach a shared mount's seat
  where root's state directory has no mark / no pins of that user (reading).
- ``config set`` / ``config confirm`` on a device without her mark over a stripped or changed body:
  ``settings.save`` builds only on a body her key signed, or the one this device keeps, else refuses
  (reading; contrast (5), where ``passwd`` does not).
- Restore / history: versions and replaced files are admitted by the same ``Authorship`` as a load;
  a deleted file restored where another user's deletion put it is held back (reading).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import adversary
import pytest
from attack_scenes import add_users, group_doc, recipients_dek, share
from conftest import PASSPHRASE, fusevault, mounted, running_relay

from fusevault.errors import NotFound
from fusevault.vault.model.sharing import SHARE, doc_id
from mount.test_sharing import _fid
from mount.test_trust_writes import BOB as BOB_SECRET
from mount.test_trust_writes import _admin, _user

IDENTITY_FIELDS = ("en_private_keys", "sig")


def _alices_proj(vault: Path, tmp_path: Path) -> tuple[Path, str]:
    """alice's vault with bob in it and her folder proj/plan.txt (shared with no one): the
    mount point and proj's file id."""
    add_users(vault, "bob")
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "proj").mkdir()
        (mnt / "proj" / "plan.txt").write_text("alice's plan\n")
    return mnt, _fid(vault, "alice", "proj")


def _planted_share(vault: Path, fid: str) -> dict:
    """An unsigned Share of alice's proj with bob (READ), as a vault-folder writer can put."""
    alice, bob = _user(vault, "alice"), _user(vault, "bob")
    return {"_id": doc_id(fid, bob["_id"]), "type": SHARE, "owner": alice["_id"], "fid": fid,
            "grantee": bob["_id"], "group": False, "perm": "READ", "created_at": 1}


def _bobs_keys_of_alices(vault: Path) -> list[Path]:
    bob = _user(vault, "bob")
    return sorted((vault / "users" / bob["_id"] / "shared").glob("*.vfkey"))


def _strip_identity(vault: Path) -> None:
    """The vault-folder writer takes alice's sealed key pairs and her signature off her current user
    document (no older copy of anything needed): it reads as one from before key pairs (format 1)."""
    alice = _user(vault, "alice")
    adversary.put(vault, {k: v for k, v in alice.items() if k not in IDENTITY_FIELDS})


@pytest.mark.parametrize("stripped", [
    True,
    False], ids=["stripped", "control"])
def test_a_stripped_identity_does_not_get_a_planted_share_signed_and_acted_on(
        vault: Path, tmp_path: Path, stripped: bool) -> None:
    mnt, proj = _alices_proj(vault, tmp_path)
    alice_before = _user(vault, "alice")
    adversary.put(vault, _planted_share(vault, proj))
    if stripped:
        _strip_identity(vault)
    # Her new device (a state directory of its own: no mark, no memory) mounts the vault once: with
    # her pairs stripped it cannot tell her real keys, and refuses, saying so ...
    device = {"FUSEVAULT_STATE_DIR": str(tmp_path / "new-device-state")}
    if stripped:
        refused = fusevault("mount", vault, mnt, env=device)
        assert refused.returncode == 5 and "key pairs" in refused.stderr, refused.stderr
    else:
        with mounted(vault, mnt, env=device):
            pass
    # ... then her desktop, which made her (its mark and key memory intact), and she writes in proj.
    with mounted(vault, mnt):
        plan = (mnt / "proj" / "plan.txt").read_text()
        (mnt / "proj" / "new.txt").write_text("written on her desktop\n")
    share = adversary.get(vault, doc_id(proj, _user(vault, "bob")["_id"]))
    print("the planted share now:", share)
    alice = _user(vault, "alice")
    print("her keys:", alice_before["public_sign"], "->", alice["public_sign"])
    keys = _bobs_keys_of_alices(vault)
    print("bob's keys of alice's files:", keys)
    print("her plan reads:", repr(plan))
    assert share is not None and "sig" not in share, "her device signed the share the store writer planted"
    assert alice["public_sign"] == alice_before["public_sign"], "her key pairs were replaced"
    assert plan == "alice's plan\n", "her file reads otherwise"
    assert keys == [], "keys of her files were sealed to bob by the planted share"
    with pytest.raises(AssertionError):
        recipients_dek(vault, "bob", BOB_SECRET, _fid(vault, "alice", "proj/new.txt"))



@pytest.mark.parametrize("moved", [
    True,
    False], ids=["root-moved", "control"])
def test_her_root_is_not_moved_into_a_folder_she_shares(vault: Path, tmp_path: Path, moved: bool) -> None:
    add_users(vault, "bob")
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "proj").mkdir()
        (mnt / "proj" / "plan.txt").write_text("for bob to read\n")
        (mnt / "notes.txt").write_text("alice's own\n")
        assert share(mnt, "proj", "bob") is not None
    proj = _fid(vault, "alice", "proj")
    if moved:
        # The vault-folder writer names proj as her root (her document's signature no longer holds).
        adversary.put(vault, {**_user(vault, "alice"), "root": proj})
    with mounted(vault, mnt):
        top = sorted(os.listdir(mnt))
        # What she writes at the top of her mount is hers alone.
        (mnt / "diary.txt").write_text("not for bob\n")
    print("her mount's top:", top)
    keys = [p.name for p in _bobs_keys_of_alices(vault)]
    print("bob's keys of alice's files:", keys)
    try:
        diary = _fid(vault, "alice", "diary.txt")  # through the store's "root", as her mount went
    except NotFound:
        diary = None  # not in the folder the store names: in her own root
    assert not any(diary in name for name in keys) if diary else True, \
        "her file at the top of her mount was sealed to bob"
    assert top == ["notes.txt", "proj"], "her root is another folder"


@pytest.mark.parametrize("stripped", [
    True,
    False], ids=["stripped", "control"])
def test_a_new_members_first_mount_takes_no_unsigned_group_body_in_an_owners_name(
        vault: Path, tmp_path: Path, stripped: bool) -> None:
    add_users(vault, "bob", "carol")
    _admin(vault, "group", "add", "team")
    _admin(vault, "group", "member", "add", "team", "bob", "--perm", "READ")
    team = group_doc(vault, "team")
    carol = _user(vault, "carol")["_id"]
    # The store's writer (or carol, who can write the vault folder) puts carol in alice's group: an
    # unsigned body, as only alice's key signs it.
    forged = {k: v for k, v in team.items() if k != "sig"}
    forged["users"] = {**team["users"], carol: "READ"}
    adversary.put(vault, forged)
    if stripped:
        # ... and takes the signature off alice's user document (nothing else of it changes).
        adversary.put(vault, {k: v for k, v in _user(vault, "alice").items() if k != "sig"})
    # bob's first mount (a member new to this vault, as every member once is): he shares his
    # notes with alice's team.
    mnt = tmp_path / "bob"
    with mounted(vault, mnt, "--user", "bob", passphrase=BOB_SECRET):
        (mnt / "notes.txt").write_text("bob's notes for alice's team\n")
        done = fusevault("share", mnt / "notes.txt", "--with", "@team", "--perm", "READ")
        print("share:", done.returncode, done.stdout[-500:], done.stderr[-500:])
        st = fusevault("status", mnt)
        print(st.stdout[-3000:])
    sealed = sorted((vault / "groups" / team["_id"]).glob(f"own/*/keys/{carol}.vfkey"))
    print("keys sealed to carol:", sealed)
    assert sealed == [], "bob's file was sealed to carol, whom only an unsigned group body names"


@pytest.mark.parametrize("records", [
    "deleted",
    "kept"])
def test_her_edit_of_an_imported_file_is_not_overwritten_when_the_records_go(
        vault: Path, tmp_path: Path, records: str) -> None:
    from mount.test_imports import idle, import_task, wait_for, watch

    source = tmp_path / "inbox"
    source.mkdir()
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        watch(mnt, source)
        (source / "report.txt").write_text("the scanner's copy\n")
        imported = mnt / "Imported" / "report.txt"
        wait_for("the import", lambda: imported.exists() and imported.read_text() == "the scanner's copy\n")
        wait_for("the watcher to be idle", lambda: idle(mnt))
        imported.write_text("the scanner's copy, corrected by alice\n")
    if records == "deleted":
        # The vault-folder writer removes her (sealed) import records: their ids are in clear.
        for doc in adversary.docs(vault, "ImportRecord"):
            adversary.delete_row(vault, doc["_id"])
    with mounted(vault, mnt):
        # The file present at the start is taken once settled: unchanged, or imported again.
        wait_for("the watcher's first pass", lambda: sum(import_task(mnt)["counts"].values()) >= 1
                 and idle(mnt))
        print("import:", import_task(mnt))
        now = (mnt / "Imported" / "report.txt").read_text()
        print("versions:", sorted(os.listdir(mnt / ".versions" / "Imported" / "report.txt")))
        st = fusevault("status", mnt)
        print(st.stdout[-3000:])
    print("her file reads:", repr(now))
    assert now == "the scanner's copy, corrected by alice\n", "her edit was overwritten by the source again"
    if records == "deleted":
        assert "no import record names" in st.stdout, "the lost records were not said"


@pytest.mark.parametrize("forged", [
    True,
    False], ids=["sig-stripped", "control"])
def test_passwd_on_a_new_device_does_not_sign_what_the_store_writer_put_in_her_document(
        vault: Path, tmp_path: Path, forged: bool) -> None:
    from fusevault.vault.model.trust import self_signed

    add_users(vault, "bob")
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "proj").mkdir()
        (mnt / "notes.txt").write_text("alice's own\n")
        assert share(mnt, "proj", "bob") is not None
    proj = _fid(vault, "alice", "proj")
    root = _user(vault, "alice")["root"]
    if forged:
        # The vault-folder writer names proj as her root and takes her signature off (her sealed
        # key pairs, which say she signs, stay).
        alice = _user(vault, "alice")
        adversary.put(vault, {**{k: v for k, v in alice.items() if k != "sig"}, "root": proj})
    # She changes her passphrase on a device of hers without her mark (a new one, a state
    # directory lost, the vault folder at another path).
    new_device = {"FUSEVAULT_STATE_DIR": str(tmp_path / "new-device-state"),
                  "FUSEVAULT_NEW_PASSPHRASE": "alice's new passphrase"}
    done = fusevault("passwd", vault, "--user", "alice", env=new_device)
    print("passwd:", done.returncode, done.stdout[-500:], done.stderr[-800:])
    after = _user(vault, "alice")
    print("her document now: root", after["root"], "self-signed", self_signed(after))
    # Her desktop (mark, key memory) mounts with the new passphrase (the old one if it was refused).
    if forged:
        assert done.returncode == 5 and "not signed with their key" in done.stderr, done.stderr
    with mounted(vault, mnt, passphrase="alice's new passphrase" if done.returncode == 0 else PASSPHRASE):
        top = sorted(os.listdir(mnt))
        said = fusevault("status", mnt).stdout
    print("her desktop's top:", top, "status:", said[-1500:])
    assert not (self_signed(after) and after["root"] != root), \
        "her passphrase change signed the root the store writer put in her document"
    assert top == ["notes.txt", "proj"], "her desktop's root is another folder"


@pytest.fixture
def link_relay(redis_url: str, couchdb_server: str):
    """A relay that keeps links (a link store in a database of its own on the test server)."""
    db = f"{couchdb_server}/links{uuid.uuid4().hex[:8]}"
    with running_relay(redis_url, "--couchdb", db) as (_, url):
        yield url


@pytest.mark.parametrize("records", [
    "deleted",
    "kept"])
def test_she_can_still_revoke_her_link_when_its_record_goes(
        vault: Path, tmp_path: Path, link_relay: str, records: str) -> None:
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "one.txt").write_text("alice's file, published for a week\n")
        made = fusevault("link", "create", mnt / "one.txt", "--relay", link_relay)
        assert made.returncode == 0, made.stderr
    link = made.stdout.strip()
    if records == "deleted":
        # The vault-folder writer removes her (sealed) link records: their type is in clear.
        for doc in adversary.docs(vault, "LinkRecord"):
            adversary.delete_row(vault, doc["_id"])
    with mounted(vault, mnt):
        listed = fusevault("link", "list", cwd=mnt)
        revoked = fusevault("link", "revoke", link, cwd=mnt)
        said = fusevault("status", mnt).stdout
    print("list:", listed.returncode, listed.stdout[-500:], listed.stderr[-300:])
    print("revoke:", revoked.returncode, revoked.stdout[-300:], revoked.stderr[-300:])
    print("status:", said[-1500:])
    (tmp_path / "out").mkdir()
    got = fusevault("link", "get", link, tmp_path / "out", passphrase=None)
    print("get after the revoke:", got.returncode, got.stderr[-300:])
    assert got.returncode != 0 and not (tmp_path / "out" / "one.txt").exists(), \
        "her link still serves her file after she revoked it"
    assert revoked.returncode == 0, revoked.stderr
    if records == "deleted":
        assert "is missing from the store" in said, "the lost record was not said"


@pytest.mark.parametrize("stripped", [
    True,
    False], ids=["stripped", "control"])
def test_a_stripped_identity_does_not_replace_her_keys_on_her_own_device(
        vault: Path, tmp_path: Path, stripped: bool) -> None:
    mnt, _ = _alices_proj(vault, tmp_path)
    before = _user(vault, "alice")
    if stripped:
        _strip_identity(vault)
    for _ in range(2):  # and again at the next mount: nothing puts her keys back
        with mounted(vault, mnt):  # her desktop: mark, key memory, pins intact
            plan = (mnt / "proj" / "plan.txt").read_text()
    after = _user(vault, "alice")
    print("her plan reads:", repr(plan), "her keys:", before["public_sign"], "->", after["public_sign"])
    assert after.get("public_sign") in (None, before["public_sign"]), "her device minted new key pairs"
    assert plan == "alice's plan\n", "her file reads otherwise on her own device"
