"""Attack round 45t, the outside view: a shared mount (root, ``--allow-other``) used by real Linux users
(useradd/setpriv), attacked through the mount and the ``fusevault`` command only.

Attacker: bob, a local user mapped to a vault user, WRITE member of alice's group @team (her folder
``proj``) and WRITE recipient of another folder of hers (``other``); later removed from @team.

Hole 1 (medium): a WRITE member keeps reading a share's file after his removal from the group (or the
  share's unshare): a hard link he made into another share of his.
  Attack: alice shares ``proj`` (plan.txt) with @team (bob WRITE) and ``other`` with bob (WRITE).  bob
    runs ``ln $M/groups/team/proj/plan.txt $M/shared/alice/other/plan.txt`` (allowed: ``link`` checks
    WRITE on the file and the folder and that both are hers).  The administrator removes bob from @team
    (``group member remove``, alice's passphrase) while the mount is up, or alice runs
    ``fusevault unshare proj --with @team``; alice's seat re-keys proj; bob's ``groups/``
    disappears.  alice then appends to ``proj/plan.txt``.
  Seen: ``test_a_removed_member_reads_what_she_writes_after_his_removal_through_his_hard_link`` and
    ``test_her_unshare_from_the_group_leaves_him_what_she_writes_through_his_hard_link`` (run, both
    fail: bob's ``cat $M/shared/alice/other/plan.txt`` shows "after bob left the team").  In alice's
    view the trace is a link count of 2 in ``ls -l proj`` (where the second name is, and who made it,
    no command was seen to say; ``status`` and the log were not checked).
    Control ``test_control_a_copy_he_made_gets_nothing_she_writes_after_his_removal`` (``cp``) passes.
    The same link makes a third user the owner never chose for the file read it:
    ``test_a_write_member_links_a_team_file_into_a_folder_carol_reads`` (run, fails: carol, who is in no
    group and got only ``other`` READ, reads plan.txt and every later version alice writes into proj,
    from alice's next unlock on: her own seat seals the key to the new name's shares, as for a file
    made in a shared folder; at once, before it, carol sees no plan.txt).
  Cause: vault/tree/namespace.py ``link`` lets any WRITE holder of a file give it a name in any folder of
    the same owner he may write; a file with several names "is shared by every share above any of
    them" (docs/SECURITY.md, Sharing and revoking; round 31a), so the owner's own re-key at the removal
    seals the new key again to the share the member planted the name in (rotation.py re-keys with
    ``covering``, which counts every name).  No command was seen to tell her a member added a name, nor
    in which share.
  Impact: README's "Revoking gives the file ... a new key: versions written afterwards are sealed under a
    key the revoked user never receives" / "a member removed from a group is revoked the same way" does
    not hold against the member himself: he keeps every later version of any file of the share he
    linked out before his removal, silently; a member can also widen a file's audience (carol) to
    everyone of another share, for all its future versions (a copy gives only today's bytes).
  Fix (suggested): refuse ``link`` by anyone but the owner (EPERM), or by a member when the new name's
    covering shares differ from the file's (the set of grantees would change); or at a removal or
    unshare, take back names a member added outside the share (he signed the file's document that
    added the name) and say so.
  Tests: the four above.
  Fixed: a non-owner's new name (link, a move keeping another name) is refused unless the new folder's
    shares are among the file's; her device refuses it too from a device that skips the check (the
    three marks removed; bob's ``ln`` is now refused, the rest of each attack runs as written; the
    domain's tests below).

Hole 2 (low; a claim of docs/SECURITY.md, "Someone who holds the vault files"): whoever holds the vault
  folder, or a sync server, tells which nodes are files (with contents) and which are not.
  Seen: ``test_the_store_does_not_tell_which_node_is_a_file`` (run, fails): in a vault with folders
    ``d1``, ``d2`` and files ``a``, ``b``, ``c`` (non-empty), the clear ``fid`` of the FilesMetaData
    documents (and the ``.vf`` file names under ``users/<id>/own/``) name exactly the three file nodes;
    the three node ids not named are the root and the two folders (or empty files and links).
  Cause: FilesMetaData's clear ``fid`` (needed to sync and gc per file) and ``.vf`` names are the node's
    id.  The claim "Cannot learn ... which node is a directory and which a file" does not hold; "how
    many nodes and versions there are ... each file's stored length" (listed as learnable) implies it.
  Impact: the tree's shape is partly visible (how many folders vs files); no name or content.
  Fix: correct the sentence (nodes with contents are told from the others), or give every node
    (folders too) a dummy FilesMetaData/``.vf``.
  Test: that one.
  Fixed (the claim corrected): the test is now ``test_the_store_does_not_tell_a_folder_from_an_empty_file``,
    of what the corrected sentence says.

Hole 3 (medium in a shared mount; low in a personal one): ``export`` writes a sparse file's holes as
  real zeros, in root's process: a mapped local user makes root fill the machine's disk from a file that
  costs nothing to make, past his quota and root's reserved blocks, and it goes on after he is gone.
  Attack: bob (any mapped user, nothing shared needed) runs ``truncate -s 1E $M/big`` in his own tree of
    the shared mount (0 s, 0 bytes stored: holes are kept as holes) and ``fusevault export $M/big ~``.
  Seen: ``test_export_keeps_the_holes_of_a_sparse_file`` (run, fails): a 64 MiB sparse file exported
    by bob allocates 64 MiB on the host (st_blocks), not ~0.  A 1 TiB one (run by hand as root in a
    personal mount: the same code): the export folder grew 2.9 GB in 2 s and ~5 GB in 10 s, all of it
    allocated; with the client killed (SIGKILL) after 2 s it went on growing (196, 358, 495 MB at
    2 s steps, a busy machine) until the unmount stopped it (the temporary file is then removed).
    ``restore --to`` of the same file keeps the holes (the vault grew 0).
  Cause: vault/services/exporting.py ``_write`` writes every chunk ``read_file`` yields, zeros of a
    hole included (``_write_all``), never seeking over them; in a shared mount that ``os.write`` is made
    by root's mount process on a descriptor bob's helper opened (host_access), so the kernel's quota
    and ext4's reserved-block checks see CAP_SYS_RESOURCE (read, not run); the request is not cancelled
    when the client's connection goes.
  Impact: any mapped user of a shared mount fills the host file system holding a folder he may write
    (``/home``, often ``/``), beyond his quota and root's reserve: a denial of service of the machine,
    "act with root's rights" on disk space.  In a personal mount: exporting a folder a WRITE member
    planted a sparse 1 EiB file into (her backup with ``export``) fills her disk (not run).
  Fix (suggested): skip holes (``lseek`` past zero chunks the manifest says are holes, then
    ``ftruncate`` to the size), and write a user's export with the user's own credentials (in the
    helper, or ``setfsuid`` for the writing thread); end the request when its client disconnects.
  Test: that one.
  The same class, for the vault's own disk: the watched folder's import stores a sparse source file's
    holes as sealed zero blocks (``test_import_keeps_the_holes_of_a_sparse_file``, run, fails: a 64 MiB
    sparse file in the watched folder grows the vault by 64 MiB; by hand, a 1 TiB one grew it ~50 MB/s
    until unmounted).  In a shared mount the vault folder is root's, so a mapped user's import (or plain
    writes into his own tree) fill its disk with no per-user bound; docs/SECURITY.md ("Other local
    users") says nothing of space.  Fix: seek over zero ranges the source reports as holes
    (``SEEK_DATA``/``SEEK_HOLE``) and write them as holes; a per-user space limit in a shared mount.

Checked, held (bob with READ on ``notes.txt`` and on folder ``docs``, WRITE on ``other`` and ``proj``):
  through the mount, ``os.setxattr`` on the file and the folder, ``touch`` (now and ``-d``),
  ``touch -a``, ``chmod`` of file and folder, ``open(O_RDWR)``, ``truncate``, ``mmap`` for writing,
  ``mkfifo``/``ln -s`` in the READ folder, ``ln`` of a READ file into the same folder, into a WRITE
  share of the same owner, into a group share and into his own tree, ``mv`` of a READ file or folder
  into a WRITE share and back, ``mv`` of a shared WRITE folder (the share's top) into another WRITE
  share: all EACCES.
  ``.versions/shared/alice/...`` read-only (EROFS for create and utime).  Through ``fusevault``:
  ``share``/``unshare`` of her file (also ``--with bob`` himself) refused exit 22; ``restore`` of a file
  she deleted from the READ folder: "neither in the vault nor in its trash"; ``trash`` lists nothing of
  hers; ``retention --keep-all 0`` and ``gc`` on ``shared/alice`` touch only his policy and remove nothing
  of hers; ``restore --to`` from a READ file into his own tree or a WRITE share works (he may read it).
  (``test_a_read_recipient_changes_nothing_of_hers_through_the_mount``, passes.)
Also held (run by hand, exploratory tests not kept): a member's ``ln`` then ``rm`` of the first name
  (a move by links) re-keys the file and takes the group's key files back, as ``mv`` does; a READ
  descriptor and a WRITE one held open across ``unshare``/``group member remove`` answer EACCES to
  ``pread`` afterwards (no byte she wrote since); ``.versions/shared/alice/...`` is gone with the share;
  the mount is ``nosuid,nodev``; a watched folder on bob's own FUSE file system whose reads never
  answer: the import fails (root's process is refused by a FUSE mount without ``allow_other``), lock
  and unmount are immediate; ``truncate -s 1E`` and a ``pwrite`` at 2^62 cost nothing and read back,
  ``check``/``history``/``gc`` stay fast; a sync server's documents (pouchdb) hold no name, content,
  xattr, symlink target or ``utime`` value; clear fields are as SECURITY.md lists.  Noted, not pursued:
  each ``setxattr`` re-seals the whole node document (200 values of 60 KB: 1.1 s per call and a 700 MB
  WAL, linear storage after checkpoint): quadratic in a user's own xattrs.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator

import pytest
from conftest import PASSPHRASE, docs_of

from mount import test_domain_permissions as domain
from mount import test_shared_mount as shared
from mount.test_shared_mount import SECRETS, People, _admin, _wait_until

# The shared mount fixtures (real Linux users, root's --allow-other mount) of test_shared_mount.py.
linux, place, python, shared_vault, people = (shared.linux, shared.place, shared.python, shared.shared_vault,
                                              shared.people)
three = domain.three  # alice, bob and carol, for the domain's tests (no mount)

LATER = "after bob left the team"


def _two_shares(people: People, also_carol: bool = False) -> None:
    for name in ("alice", "bob", "carol"):
        people.unlock(name)
    people.ok("alice", "mkdir $M/proj $M/other && echo plan > $M/proj/plan.txt && echo o > $M/other/o.txt")
    shares = [("proj", "@team", "WRITE"), ("other", "bob", "WRITE")]
    if also_carol:
        shares.append(("other", "carol", "READ"))
    for folder, who, perm in shares:
        result = people.fusevault("alice", "share", f"{people.mnt}/{folder}", "--with", who, "--perm", perm)
        assert result.returncode == 0, result.stderr


def _bob_out_of_the_team_then_alice_writes(people: People, vault, how: str = "removal") -> None:
    if how == "removal":  # the group's owner takes him out of @team
        _admin(vault, "group", "member", "remove", "team", "bob", passphrase=SECRETS["alice"])
    else:  # she takes proj back from the whole group
        result = people.fusevault("alice", "unshare", f"{people.mnt}/proj", "--with", "@team")
        assert result.returncode == 0, result.stderr
    _wait_until(people, lambda: "groups" not in people.sh("bob", "ls -A $M").stdout, "bob to lose @team")
    refused = people.sh("bob", "cat $M/groups/team/proj/plan.txt")
    assert refused.returncode != 0
    people.ok("alice", f"echo '{LATER}' >> $M/proj/plan.txt")
    assert people.ok("alice", "cat $M/proj/plan.txt") == f"plan\n{LATER}\n"


def test_a_removed_member_reads_what_she_writes_after_his_removal_through_his_hard_link(
        people: People, shared_vault) -> None:
    _linked_then_out(people, shared_vault, "removal")


def test_her_unshare_from_the_group_leaves_him_what_she_writes_through_his_hard_link(
        people: People, shared_vault) -> None:
    _linked_then_out(people, shared_vault, "unshare")


def _his_link_refused(people: People) -> None:
    """Fixed: a name in ``other`` would give the team's file to ``other``'s shares (bob as a user,
    carol), which its names do not: only alice may add it.  The attack goes on as written."""
    people.denied("bob", "ln $M/groups/team/proj/plan.txt $M/shared/alice/other/plan.txt")
    assert "plan.txt" not in people.ok("alice", "ls $M/other")


def _linked_then_out(people: People, shared_vault, how: str) -> None:
    _two_shares(people)
    _his_link_refused(people)
    _bob_out_of_the_team_then_alice_writes(people, shared_vault, how)
    seen = people.sh("bob", "cat $M/shared/alice/other/plan.txt")
    assert LATER not in seen.stdout, "bob, out of @team, reads what alice wrote into proj/plan.txt since"


def test_control_a_copy_he_made_gets_nothing_she_writes_after_his_removal(people: People,
                                                                           shared_vault) -> None:
    _two_shares(people)
    people.ok("bob", "cp $M/groups/team/proj/plan.txt $M/shared/alice/other/plan.txt")
    _bob_out_of_the_team_then_alice_writes(people, shared_vault)
    assert people.ok("bob", "cat $M/shared/alice/other/plan.txt") == "plan\n"


def test_a_write_member_links_a_team_file_into_a_folder_carol_reads(people: People, shared_vault) -> None:
    _two_shares(people, also_carol=True)
    assert "groups" not in people.ok("carol", "ls -A $M")  # carol is in no group: proj is not hers
    _his_link_refused(people)
    # Her seat seals the file's key to the shares of its new name at her next unlock (as for a file made
    # in a shared folder: only the owner seals): a lock and an unlock, as any TTL or remount makes.
    assert people.fusevault("alice", "lock").returncode == 0
    people.unlock("alice")
    people.ok("alice", "echo 'for the team only' >> $M/proj/plan.txt")
    seen = people.sh("carol", "cat $M/shared/alice/other/plan.txt")
    assert "for the team only" not in seen.stdout, "carol reads the team's file through bob's link"


def test_only_the_owner_gives_her_file_a_name_that_widens_its_readers(three) -> None:
    """Fixed 45t (1), in the domain: a writer's new name of her file (``link``, or a move that keeps
    another name, a folder's move with a file linked outside it too) is refused when the new folder's
    shares give the file to someone its names do not (carol), and allowed when they give nobody new
    (a name in the same share, or in a folder whose shares the file already has); a move of a file's
    only name stays a move; the owner adds any name."""
    import trio

    from fusevault.errors import PermissionDenied
    from fusevault.vault.services import share_ops
    trees = domain.Trees(three)
    BOB, ME = domain.BOB, domain.ME

    async def main() -> None:
        alice = trees.load("alice", PASSPHRASE)
        proj = await alice.mkdir(1, b"proj", 0o755, ME)
        await alice.mkdir(proj.ino, b"sub", 0o755, ME)
        await alice.create(proj.ino, b"plan.txt", 0o644, ME)
        await alice.mkdir(1, b"other", 0o755, ME)
        await share_ops.share(alice, b"proj", "bob", "WRITE")
        await share_ops.share(alice, b"other", "bob", "WRITE")
        await share_ops.share(alice, b"other", "carol", "READ")
        await alice.save_all()

        bob = trees.load("bob", BOB)
        his = {name: bob.resolve(b"shared/alice/" + name) for name in (b"proj", b"proj/sub", b"other")}
        plan = bob.resolve(b"shared/alice/proj/plan.txt")
        with pytest.raises(PermissionDenied, match="carol"):
            await bob.link(plan.ino, his[b"other"].ino, b"plan.txt")
        await bob.link(plan.ino, his[b"proj/sub"].ino, b"plan2.txt")  # the same share: nobody new
        moves = [(his[b"proj/sub"], b"plan2.txt")]  # a second name moved out, the first kept
        deeper = await bob.mkdir(his[b"proj"].ino, b"deeper", 0o755, ME)
        await bob.link(plan.ino, deeper.ino, b"p.txt")
        moves.append((his[b"proj"], b"deeper"))  # a folder holding a name of a file linked outside it
        for folder, name in moves:
            for exchange in (False, True):
                if exchange:
                    await bob.create(his[b"other"].ino, name, 0o644, ME)
                with pytest.raises(PermissionDenied):
                    await bob.rename(folder.ino, name, his[b"other"].ino, name, noreplace=False,
                                     exchange=exchange)
        assert sorted(alice.resolve(b"other").children) == [b"deeper", b"plan2.txt"]  # his own files
        assert len(alice.resolve(b"proj/plan.txt").links) == 3  # proj, proj/sub, proj/deeper
        # A file's only name moved: a move (the shares it leaves are taken back).
        await bob.create(his[b"proj"].ino, b"single.txt", 0o644, ME)
        await bob.rename(his[b"proj"].ino, b"single.txt", his[b"other"].ino, b"single.txt",
                         noreplace=False, exchange=False)
        # Hers to choose: then other's shares are the file's, and his name there adds nobody.
        await alice.link(alice.resolve(b"proj/plan.txt").ino, alice.resolve(b"other").ino, b"hers.txt")
        await bob.link(plan.ino, his[b"other"].ino, b"his.txt")
        await trees.close()

    trio.run(main)


def test_her_device_refuses_a_name_his_device_should_have_refused(three) -> None:
    """Fixed 45t (1), on the owner's side: a device of bob's that skips the check (modified) signs the
    link, and the folder move carrying a name of a file linked outside it; alice's tree refuses both
    documents as they arrive (said: forged-write), and keeps the file where it was; a plain move of a
    file's only name is still taken."""
    import trio

    from fusevault.vault.services import share_ops

    domain._admin(three, "user", "add", "dave", "--uid", "2103", passphrase="dave's own passphrase")
    trees = domain.Trees(three)
    ME = domain.ME

    async def main() -> None:
        alice = trees.load("alice", PASSPHRASE)
        proj = await alice.mkdir(1, b"proj", 0o755, ME)
        await alice.create(proj.ino, b"plan.txt", 0o644, ME)
        await alice.mkdir(1, b"other", 0o755, ME)
        await share_ops.share(alice, b"proj", "bob", "WRITE")
        await share_ops.share(alice, b"other", "bob", "WRITE")
        await share_ops.share(alice, b"other", "carol", "READ")
        await alice.mkdir(proj.ino, b"x", 0o755, ME)
        await share_ops.share(alice, b"proj/x", "dave", "READ")
        await alice.save_all()

        bob = trees.load("bob", domain.BOB)
        bob.tree._may_add_name = lambda *args: None  # his device, changed: no check before it signs
        proj_, other = bob.resolve(b"shared/alice/proj"), bob.resolve(b"shared/alice/other")
        plan = bob.resolve(b"shared/alice/proj/plan.txt")
        deeper = await bob.mkdir(proj_.ino, b"deeper", 0o755, ME)
        await bob.link(plan.ino, deeper.ino, b"p.txt")
        await bob.create(proj_.ino, b"single.txt", 0o644, ME)
        await bob.save_all()
        assert len(alice.resolve(b"proj/plan.txt").links) == 2  # in the same share: taken
        await bob.link(plan.ino, other.ino, b"plan.txt")
        await bob.rename(proj_.ino, b"deeper", other.ino, b"deeper", noreplace=False, exchange=False)
        await bob.rename(proj_.ino, b"single.txt", other.ino, b"single.txt", noreplace=False,
                         exchange=False)
        await bob.save_all()
        assert sorted(alice.resolve(b"other").children) == [b"single.txt"]
        assert sorted(alice.resolve(b"proj").children) == [b"deeper", b"plan.txt", b"x"]
        refused = {a["subject"]: a["text"] for a in alice.tree.trust.alarms.as_list()
                   if a["kind"] == "forged-write"}
        assert {plan.fid, deeper.fid} <= refused.keys()
        # A new file's first document naming it in proj and other at once (as a device of his may sign
        # it): judged as one name and a link.
        gate = alice.tree.authorship
        for folders, taken in (((b"proj/x", b"other"), False), ((b"proj", b"proj/x"), True),
                               ((b"proj", b"other"), True)):  # made in other, linked into proj: nobody new
            links = [(alice.resolve(folder).fid, b"new%d.txt" % i) for i, folder in enumerate(folders)]
            assert gate.may_write(alice.tree, bob.key.user_id, alice.key.user_id, "f" * 32, links) is taken
        await trees.close()

    trio.run(main)


def test_her_unlock_seals_nothing_by_a_name_his_device_should_have_refused(three) -> None:
    """Fixed 45t (1), at her unlock: his changed device's link, and his move of a folder holding a name
    of a file linked outside it, made while alice was locked, are said, and no key of the file is sealed
    to the shares of the folder he named it in (carol): it stays where it is (the ledger keeps it
    ``behind``), as a move into a folder he may not write does."""
    import trio

    from fusevault.vault.services import share_ops

    domain._admin(three, "user", "add", "dave", "--uid", "2103", passphrase="dave's own passphrase")
    trees = domain.Trees(three)
    ME = domain.ME
    carol = next(u["_id"] for u in trees.store.iter_type("UserDetails") if u["username"] == "carol")

    async def main() -> None:
        alice = trees.load("alice", PASSPHRASE)
        proj = await alice.mkdir(1, b"proj", 0o755, ME)
        await alice.create(proj.ino, b"plan.txt", 0o644, ME)
        _, lone = await alice.create(proj.ino, b"lone.txt", 0o644, ME)
        deeper = await alice.mkdir(proj.ino, b"deeper", 0o755, ME)
        await alice.link(lone.ino, deeper.ino, b"l.txt")
        await alice.mkdir(1, b"other", 0o755, ME)
        await share_ops.share(alice, b"proj", "bob", "WRITE")
        await share_ops.share(alice, b"other", "bob", "WRITE")
        await share_ops.share(alice, b"other", "carol", "READ")
        await alice.mkdir(proj.ino, b"x", 0o755, ME)
        await share_ops.share(alice, b"proj/x", "dave", "READ")
        await alice.save_all()
        await alice.close()
        del trees.trees["alice"]

        bob = trees.load("bob", domain.BOB)
        bob.tree._may_add_name = lambda *args: None  # his device, changed: no check before it signs
        proj_, other = bob.resolve(b"shared/alice/proj"), bob.resolve(b"shared/alice/other")
        await bob.link(bob.resolve(b"shared/alice/proj/plan.txt").ino, other.ino, b"plan.txt")
        await bob.rename(proj_.ino, b"deeper", other.ino, b"deeper", noreplace=False, exchange=False)
        x = bob.resolve(b"shared/alice/proj/x")
        fh, made = await bob.create(x.ino, b"new.txt", 0o644, ME)  # a file her device never saw (dave's)
        await bob.release(fh)
        await bob.link(made.ino, other.ino, b"new.txt")
        await bob.save_all()

        alice = trees.load("alice", PASSPHRASE)
        plan, lone = alice.resolve(b"proj/plan.txt"), alice.resolve(b"proj/lone.txt")
        assert len(plan.links) == 2 and alice.resolve(b"other/deeper/l.txt") is lone  # shown where it is
        new = alice.resolve(b"proj/x/new.txt")
        assert alice.resolve(b"other/new.txt") is new
        for node in (plan, lone, new):
            assert not any(line.startswith(carol) for line in alice.acl(node) or []), alice.acl(node)
        for said in (plan.fid, alice.resolve(b"other/deeper").fid, new.fid):
            alarms = [a["text"] for a in alice.tree.trust.alarms.as_list() if a["subject"] == said]
            assert any("only its owner adds such a name" in text for text in alarms), alarms
        await trees.close()

    trio.run(main)


def test_a_read_recipient_changes_nothing_of_hers_through_the_mount(people: People) -> None:
    for name in ("alice", "bob"):
        people.unlock(name)
    people.ok("alice", "echo secret > $M/notes.txt && mkdir -p $M/docs/sub && echo a > $M/docs/a.txt"
                       " && mkdir $M/other && echo o > $M/other/o.txt && echo del > $M/docs/gone.txt")
    for path, perm in (("notes.txt", "READ"), ("docs", "READ"), ("other", "WRITE")):
        result = people.fusevault("alice", "share", f"{people.mnt}/{path}", "--with", "bob", "--perm", perm)
        assert result.returncode == 0, result.stderr
    people.ok("alice", "rm $M/docs/gone.txt")
    where = "$M/shared/alice"
    py = "python3 -c \"import os, mmap; M = os.environ['M'] + '/shared/alice'; {}\""
    for script in (
            py.format("os.setxattr(M + '/notes.txt', 'user.x', b'y')"),
            py.format("os.setxattr(M + '/docs', 'user.x', b'y')"),
            f"touch -d 2000-01-01 {where}/notes.txt", f"touch {where}/notes.txt",
            f"touch -a {where}/docs/a.txt",
            f"chmod 600 {where}/docs/a.txt", f"chmod 777 {where}/docs",
            py.format("os.open(M + '/docs/a.txt', os.O_RDWR)"),
            py.format("os.truncate(M + '/docs/a.txt', 0)"),
            py.format("f = open(M + '/docs/a.txt', 'r+b'); mmap.mmap(f.fileno(), 0)[0:1] = b'X'"),
            f"mkfifo {where}/docs/fifo", f"ln -s /etc {where}/docs/sl",
            f"ln {where}/docs/a.txt {where}/docs/b.txt", f"ln {where}/docs/a.txt {where}/other/a.txt",
            f"ln {where}/notes.txt $M/mine.txt",
            f"mv {where}/docs/a.txt {where}/other/a.txt", f"mv {where}/docs/sub {where}/other/sub",
            f"mv {where}/other/o.txt {where}/docs/o.txt"):
        people.denied("bob", script)
    for args in (("share", "notes.txt", "--with", "carol", "--perm", "READ"),
                 ("unshare", "notes.txt", "--with", "bob")):
        result = people.fusevault("bob", args[0], f"{people.mnt}/shared/alice/{args[1]}", *args[2:])
        assert result.returncode == 22, result
    assert people.fusevault("bob", "restore", f"{people.mnt}/shared/alice/docs/gone.txt").returncode != 0
    kept = people.fusevault("bob", "retention", f"{people.mnt}/shared/alice", "--keep-all", "0")
    assert kept.returncode == 0
    assert people.fusevault("bob", "gc", f"{people.mnt}").returncode == 0
    assert people.ok("alice", "cat $M/notes.txt $M/docs/a.txt $M/other/o.txt") == "secret\na\no\n"
    assert people.ok("alice", "ls $M/docs $M/other").split() == ["$M/docs:".replace("$M", str(people.mnt)),
                                                                  "a.txt", "sub",
                                                                  "$M/other:".replace("$M", str(people.mnt)),
                                                                  "o.txt"]
    history = people.fusevault("alice", "history", f"{people.mnt}/notes.txt")
    assert history.returncode == 0 and history.stdout.count("alice") == 1, history.stdout


def test_the_store_does_not_tell_a_folder_from_an_empty_file(vault, mnt) -> None:
    """45t (2), the claim as corrected (docs/SECURITY.md, "Someone who holds the vault files"): the
    clear ``fid`` of version documents and the ``.vf`` names tell the files with contents from the
    other nodes (asserted: what it learns), but of the nodes without contents, a folder and an empty
    file have the same clear fields and no version, ``.vf`` or record.  (The sealed part's length is
    not padded, and not asserted here.)"""
    for folder in ("d1", "d2"):
        (mnt / folder).mkdir()
    for name in ("a", "b", "c"):
        (mnt / "d1" / name).write_bytes(b"contents of " + name.encode())
    for name in ("e1", "e2"):
        (mnt / "d2" / name).write_bytes(b"")
    for folder in (mnt, mnt / "d1", mnt / "d2"):  # folders are saved in groups: now
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    nodes = {d["_id"]: d for d in docs_of(vault, "node")}
    assert len(nodes) == 8  # the root, two folders, three files with contents, two empty ones
    with_contents = {d["fid"] for d in docs_of(vault, "FilesMetaData")} & nodes.keys()
    named = {p.name.split(".")[0] for p in vault.rglob("*.vf")} & nodes.keys()
    assert len(with_contents) == len(named) == 3  # what it learns: the files with contents
    without = [d for fid, d in nodes.items() if fid not in with_contents and fid not in named]
    assert len(without) == 5  # the root, d1, d2, e1, e2: which are folders is not told by these
    clear = {(tuple(sorted(k for k in d if k != "_revisions")), d["type"], d["epoch"], d["delete"],
              d["owner"]) for d in without}
    assert len(clear) == 1, clear


def test_export_keeps_the_holes_of_a_sparse_file(people: People) -> None:
    people.unlock("bob")
    out = people.place / "bob" / "export-45t"
    people.ok("bob", f"truncate -s 64M $M/sparse.bin && mkdir -p {out} && rm -f {out}/sparse.bin")
    assert int(people.ok("bob", "stat -c %b $M/sparse.bin")) < 64  # the mount shows it sparse
    result = people.fusevault("bob", "export", f"{people.mnt}/sparse.bin", str(out))
    assert result.returncode == 0, result.stderr
    st = os.stat(out / "sparse.bin")
    assert st.st_size == 64 << 20
    assert st.st_blocks * 512 < 1 << 20, f"{st.st_blocks * 512} bytes allocated for a file of holes"


def test_his_export_is_written_with_his_rights_not_roots(people: People) -> None:
    """Hole 3's last part: bob's export was written by root's process, so the kernel's checks of the
    writer saw root: ext4 lends its reserved blocks to fsuid 0 (a quota's hard limit is lifted for
    CAP_SYS_RESOURCE alike).  The writes are made in a thread with his fsuid, fsgid and groups and
    no capability: on a file system with half its blocks reserved, what root could write and he
    may not is refused, nothing left, and what fits is his."""
    bob = people.linux["bob"]
    people.unlock("bob")
    people.ok("bob", "head -c 8M /dev/urandom > $M/big.bin && echo small > $M/small.txt")
    with _ext4_half_reserved(people.place / "bob" / "ext4", bob) as out:
        result = people.fusevault("bob", "export", f"{people.mnt}/big.bin", str(out))
        assert result.returncode != 0, "8 MiB written where bob has 5: root's reserved blocks"
        assert "No space left" in result.stderr, result.stderr
        assert sorted(os.listdir(out)) == ["lost+found"]  # its temporary file removed
        result = people.fusevault("bob", "export", f"{people.mnt}/small.txt", str(out))
        assert result.returncode == 0, result.stderr
        st = os.stat(out / "small.txt")
        assert (st.st_uid, st.st_gid, st.st_size) == (bob.pw_uid, bob.pw_gid, 6)


@contextlib.contextmanager
def _ext4_half_reserved(where, owner) -> Iterator:
    """A 16 MiB ext4 file system, half its blocks reserved for uid 0, its root ``owner``'s."""
    where.mkdir()
    image = where.with_suffix(".img")
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    made = subprocess.run(["mkfs.ext4", "-q", "-m", "50", str(image)], capture_output=True, text=True)
    mounted = made.returncode == 0 and subprocess.run(
        ["mount", "-o", "loop", str(image), str(where)], capture_output=True).returncode == 0
    if not mounted:
        image.unlink()
        pytest.skip(f"no loop-mounted ext4 here: {made.stderr.strip()}")
    try:
        os.chown(where, owner.pw_uid, owner.pw_gid)
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)
        image.unlink()


def test_import_keeps_the_holes_of_a_sparse_file(vault, mnt, tmp_path) -> None:
    from conftest import wait_for

    from mount.test_imports import idle, watch

    source = tmp_path / "watched"
    source.mkdir()
    before = _allocated(vault)
    with open(source / "sparse.bin", "wb") as f:
        f.truncate(64 << 20)
    watch(mnt, source)
    wait_for(lambda: (mnt / "Imported" / "sparse.bin").exists() and idle(mnt), "the import")
    assert (mnt / "Imported" / "sparse.bin").stat().st_size == 64 << 20
    grown = _allocated(vault) - before
    assert grown < 8 << 20, f"the vault grew {grown} bytes for a file of holes"


def _allocated(folder) -> int:
    return sum(p.lstat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


def test_a_client_killed_mid_export_stops_the_export(vault, mnt, tmp_path) -> None:
    """Hole 3's other half: the export is the client's request, and ends with it (its
    connection closing cancels the work, the temporary file is removed), not at the unmount."""
    import sys

    from conftest import wait_for

    chunk = b"\x5a" * (1 << 20)  # data, not zeros: written whatever the holes
    with open(mnt / "big.bin", "wb") as f:
        for _ in range(EXPORTED_MIB):
            f.write(chunk)
    out = tmp_path / "out"
    out.mkdir()
    client = subprocess.Popen([sys.executable, "-m", "fusevault", "export", str(mnt / "big.bin"), str(out)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Its temporary file, with some of the data in it: the export is under way.
        wait_for(lambda: [p for p in out.glob(".big.bin.fvpart-export-*") if p.stat().st_size > 0],
                 lambda: f"the export under way: {list(out.iterdir())}")
    finally:
        client.kill()
        client.wait()
    # It stops, cancelled (its temporary file removed), or ends, renamed to its name.
    wait_for(lambda: not list(out.glob(".big.bin.fvpart-export-*")),
             lambda: f"the export to stop: {list(out.iterdir())}")
    assert not (out / "big.bin").exists(), "the export went on after its client was killed"


EXPORTED_MIB = 256  # long enough to export that the client is killed before the end
