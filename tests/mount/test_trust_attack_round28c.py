"""Attack round 28c: the folder-chain walks, and hostile trees.  A WRITE grantee (bob, WRITE on alice's
docs, signing with his own key, his documents sent through the server as his peer would) against the
walks along folders of alice's device: export, share/unshare, check, gc, restore, trash, loading and
arrivals; another local user of root's shared mount against its worker threads.  Real mounts, the real
``fusevault`` command, a pouchdb-server of the test's own.

Status: holes 1-3 are fixed and their tests pass (the parameters that were strict xfails now pass beside
their controls).  1: a document naming a folder more than once is malformed (vault/model/nodes.py
``node_from_doc``), and the walks down a tree take each node once.  2: the load's walk for loops starts
at the nodes whose document another signed (vault/tree/linking.py ``break_cycles(first=...)``), so a
loop is cut at the writer's name and his document, refused, gives the folder back where it was.  3: a
writer's move of her file into a folder not held here is refused while mounted (vault/tree/arrivals.py
``may_take``) and at unlock (vault/tree/authorship.py ``settle``: rebuilt where she left it).

Holes
-----
1. A FOLDER NAMED TWICE: A WRITE GRANTEE GIVES EACH FOLDER OF A CHAIN A SECOND NAME IN THE FOLDER ABOVE
   (A HARD LINK OF A FOLDER), AND EVERY WALK DOWN HER TREE WALKS 2**n WAYS FOR n DOCUMENTS: HER
   ``export`` WRITES 2**n FOLDERS, HER ``unshare`` OF HIM RE-KEYS 2**n TIMES (WITH 40 DOCUMENTS NEITHER
   ENDS: SHE CANNOT REVOKE HIM), NO ALARM.
   What bob does: alice made docs/c1/c2/.../c12 (``mkdir -p``, her own folders; bob holds WRITE on docs
   and so on each of them).  For i = 2..12 bob signs a write of her folder ci whose sealed ``links``
   are [[c(i-1), "ci"], [c(i-1), "cib"]]: the same folder under two names in the folder above, as a
   hard link would, which the kernel never lets anyone make of a folder.  Each is one node document
   of hers, signed by a writer of its folder: her mounted device takes every one in (docs/c1/c2b shows,
   no alarm, no "cycle": there is none, only two ways down to each folder).
   What happens (seen): ``fusevault export docs OUT`` exits 0 having written 4096 folders for 13
   (docs/c1/c2/..., docs/c1/c2b/..., every way down, each a full copy of what is below).
   ``fusevault unshare docs --with bob`` answers "its key changed (8193 file(s) and folder(s))" with
   depth 13 (1025 with depth 10; there are 15 and 12 nodes) and took 5.3 s (1.0 s at depth 10): each
   way down re-keys the same folder again (a new key epoch each time).  Each level doubles both (at
   about 0.65 ms a re-key here): with 20 levels the unshare takes about 6 minutes, with 40 (40 small
   documents of bob's) about ten years; and ``subtree`` first builds a Python list of 2**n entries,
   synchronously, on the trio thread that answers every FUSE request (extrapolated, not run: with 30,
   a billion entries, several GB and minutes during which no user of the mount is answered).
   Cause: nothing refuses a second link of a folder.  ``check_shapes``/``node_from_doc``
   (vault/model/nodes.py:91-95, :359-383) take any number of links for any node; ``link_loaded``
   (vault/tree/loading.py:476-490) and ``relink`` (vault/tree/arrivals.py:197-219) give a folder every
   name its document says; ``makes_cycle`` (arrivals.py:160) and ``break_cycles`` (loading.py:494)
   only look for a folder inside itself, never for a folder reached twice.  Then the walks down the
   tree keep no set of what they saw: ``exporting.tree`` (vault/services/exporting.py:42-61) and
   ``share_ops.subtree`` (vault/services/share_ops.py:129-139), which ``share`` (:165), ``unshare``
   (:232), ``rotate`` (:318) and the automatic re-keys of the mount (a Rotation a group owner signed,
   :384, and a removal from a group she shares with, :438 and :441, run at unlock and on arrival,
   fs/arrivals.py:186, agent/sessions.py:89) all use.  ``check``'s ``_folder_path``
   (vault/services/check.py:212-220) walks the children of a folder whose document does not open the
   same way, level by level up to 64 (read, not run at depth: 2**63 lookups).
   Impact: a WRITE grantee, with a few dozen signed documents, makes the owner's revoke of him never
   end (he keeps docs: the key she would take back is never changed), makes her export of her own
   folder fill her disk (2**n copies, ``export`` writes every way), and can make her mount (or root's
   shared mount, every user's) spin on the automatic re-key that a group's change starts, without her
   doing anything.  Nothing says why.
   Fix: a folder has exactly one name: refuse (``forged-write``/``malformed`` alarm, the node keeps
   what it had) a document of a folder with more than one link, in ``may_take`` and at load
   (``link_loaded``: keep the first name, as ``break_cycles`` leaves out a name), whoever signed it
   (a peer's, hers, a grantee's), exactly as the kernel refuses ``link`` of a folder.  And as a backstop
   let every walk down (``exporting.tree``, ``share_ops.subtree``, check's ``_folder_path``) keep the
   set of inodes it reached and take each node once.
   Seen too, without her doing anything: docs also shared READ with @crew (owner bob, member carol);
   bob removes carol from @crew (his genuine signed change, as any group owner may); at her next mount
   the automatic re-key for the removal (``_rekey_for_removals`` -> ``rotate``) gave c12 2048 new key
   epochs (0 -> 2048) where one is due.  With an honest group owner the same happens on any member's
   removal: bob's documents are enough.
   Tests: test_export_writes_each_folder_a_write_member_named_twice_once[True],
   test_her_unshare_of_a_write_member_rekeys_each_folder_he_named_twice_once[True],
   test_a_groups_removal_rekeys_each_folder_a_write_member_named_twice_once[True] ([False]: the same
   folders each under its one name, the passing controls).

2. A CYCLE A WRITE GRANTEE SIGNS IS CUT BEFORE IT IS JUDGED, AT HER OWN FOLDER: HER NEXT MOUNT HIDES
   EVERYTHING BELOW THE FIRST LEVEL OF THE FOLDER HE MOVED (NOT IN THE TREE, NOT IN THE TRASH, ``history``
   "NEITHER IN THE VAULT NOR IN ITS TRASH", ``check`` 0 DAMAGED), AND HER ``unshare`` OF HIM MEANWHILE
   LEAVES HIM THE KEYS OF THE HIDDEN FILES: HE READS WHAT SHE WRITES THERE AFTER HIS REMOVAL.
   What bob does: alice has docs/c1/c2/c3/f.txt (all hers; bob WRITE on docs).  bob signs one write
   of her folder c1 whose sealed ``links`` are [[c2, "loop"]] (or [[c3, "loop"]]): c1 moved into its
   own subfolder, a 2- (3-) cycle.  His peer sends it.
   What happens (seen): her mounted device refuses it on arrival (``forged-write``: "it puts a folder
   inside itself", ``makes_cycle``), and shows her tree whole.  At her next mount (the document is in
   her store) the load first links c1 where bob's document says, then ``break_cycles`` cuts the
   cycle at the first name it meets on the way down, which is HER genuine name c1/c2 ("cycle: folder
   <c2> was named inside itself (in <c1>): that name is left out"); then settling refuses bob's
   document and rebuilds c1 in docs ("rebuilt ... who holds no WRITE on it"), but nothing gives the
   cut name back: docs/c1 is empty, c2, c3 and f.txt are in no folder.  ``export docs`` writes 1 file
   (notes.txt) instead of 2, ``history docs/c1/c2/c3/f.txt`` says "neither in the vault nor in its
   trash", ``trash`` is empty, ``check`` reports 0 damaged.  It stays so at every mount until her
   own next change of c1 itself rewrites its document (seen: a file made in c1 brings c2 back at the
   next mount).  Her ``unshare docs --with bob`` in between re-keys 3 nodes (docs, notes.txt, c1)
   and neither removes bob's key file of f.txt nor gives f.txt a new key: once c2 is back and she
   writes f.txt, bob's key file still opens the key she wrote it under.  With bob's document naming
   c1 inside itself (the control) the cut is at bob's name and nothing is lost.
   Cause: vault/tree/loading.py:158 ``break_cycles(tree)`` runs "before settling", on the names
   every document says, judged or not; it cuts the name it meets on the way down
   (loading.py:515-522), whoever's document made the loop, and the names it cut are not among those
   given back after settling (loading.py:196-202 give back only ``taken``, the names a refused node
   had held).  ``share_ops.subtree`` (vault/services/share_ops.py:129) walks the tree as loaded, so a
   node in no folder is not re-keyed, and ``_unexplained``/``_held_keys`` look only at those nodes.
   Impact: one signed document of a WRITE grantee hides the owner's files from her (no alarm names
   them; the alarm blames her own folder), drops them from her export, and makes her revoke of him
   incomplete without a word: the revoked member keeps the current key of every hidden file, and
   reads what she writes to it after his removal (as a peer he still gets the records).  The same
   holds for a folder the cut leaves in no folder on a reader's device (not run).
   Fix: judge before cutting: settle (refuse and rebuild) the documents of the load first and break
   cycles only on what was admitted, or, when a loop is found, cut the name that a refused/unjudged
   document (not the owner's) gave, never one the owner's signed document gives; and give back every
   name ``break_cycles`` cut once the rebuilt nodes are in place (as ``taken``).  ``unshare`` should
   also re-key every node of the owner's whose last seen place (ledger ``was_at``) is under the folder,
   not only those the tree shows there.
   Tests: test_a_write_members_cycle_does_not_hide_her_folders_at_her_next_mount[c2], [c3] ([c1]: the
   passing control), test_her_unshare_while_a_write_members_cycle_hides_her_folders_leaves_him_no_key[True]
   ([False]: no move of bob's, the passing control).

3. A WRITE GRANTEE'S MOVE OF HER FILE INTO A FOLDER HER DEVICE DOES NOT HOLD (ONE IN HER TRASH, OR ANY
   FOLDER ID) IS REFUSED, YET THE FILE IS GONE FROM HER MOUNTED TREE FOR THE WHOLE MOUNT, AND HER
   ``unshare`` MEANWHILE LEAVES HIM ITS KEY: HE READS WHAT SHE WRITES TO IT AFTER HIS REMOVAL.
   What bob does: alice has docs/notes.txt ("first") and deleted a folder docs/old (in her trash);
   bob (WRITE on docs) signs one write of her notes.txt whose sealed ``links`` are [[old, "notes.txt"]]
   (or [[any 32 hex, "notes.txt"]], or [[his own root folder, "notes.txt"]]: "out of the shared folder
   into his own tree").  His peer sends it; alice mounts.
   What happens (seen): the same whether it arrives while she is mounted or before her mount: the
   mount says ``forged-write`` "refused a change of file <notes>: signed by <bob>, who holds no WRITE
   on it", and yet her tree is ['docs', 'private']: docs/notes.txt is ENOENT for the rest of the mount,
   and not in the trash ("the trash is empty").  (Polled every 3 s right after it arrived while
   mounted, unknown folder: the file was gone and no alarm was listed yet for 18 s.)  ``unshare docs
   --with bob`` then answers "its key changed (1 file(s) and folder(s))": docs only; bob's key file
   of notes.txt stays, and at her next mount (whose load refuses bob's document and rebuilds notes.txt
   where she left it, "rebuilt") she writes it under the key bob's key file still opens.  With the
   move into her private folder (held, no WRITE for bob: the control) the refusal keeps notes.txt in
   docs and her unshare takes his key back.
   Cause (traced through the code, not stepped through): ``Authorship.may_write``
   (vault/tree/authorship.py:259-272) judges only the folders of a document that this device holds:
   a parent it does not hold "puts nothing here, and is not judged", so ``new`` is empty and the
   only folder judged is docs, which the file leaves and bob writes: taken.  ``relink``
   (vault/tree/arrivals.py:188-219) then removes every name the node had (``wanted`` is empty: its
   folder is not held) and gives it none: her own file is in no folder, as a reader's view of a file
   moved out of his sight would be.  ``absorb_arrivals`` (vault/services/absorbing.py:137-160) looks
   again at the node left unplaced, now judged from nowhere, and refuses it (the alarm), keeping the
   node as it is: with no name.  Only the next load rebuilds it.  ``share_ops.subtree``
   (share_ops.py:129) does not reach a node in no folder (as in hole 2).
   Impact: a WRITE grantee hides any file of hers in his reach for a mount, with one signed document
   her device says it refused (so she has no reason to look further), and her revoke of him during
   that mount silently leaves him the file's key: the revoked member keeps reading it.
   Fix: on the owner's device, a writer's document that names any folder not held (not hers, in her
   trash, unknown) for her own node is refused before anything is changed (as the load does), never
   read as "moved out of sight"; that reading is for a grantee's view of another owner's file only.
   A refused document must leave the node exactly as it was (names included).  And let ``unshare``
   take back every key file of the grantee's of a node whose last seen place is under the folder,
   not only those the tree shows there.
   Tests: test_a_write_members_refused_move_into_nowhere_leaves_her_file_in_her_mounted_tree[trashed],
   [unknown], [his]; test_her_unshare_after_a_write_members_refused_move_into_nowhere_leaves_him_no_key
   [trashed], [unknown], [his];
   test_a_write_members_move_of_her_file_into_nowhere_arriving_while_she_is_mounted_hides_nothing
   [unknown], [his] ([private]: the passing controls).

What held
---------
- (run) A 1-, 2- or 3-cycle bob signs (her c1 into itself, into its own c2 or c3) is refused on
  arrival (``forged-write``: "it puts a folder inside itself", ``makes_cycle``) and her mounted tree
  stays whole; with c1 into itself the next load cuts bob's own name and nothing is lost; export,
  unshare and ``check`` end (hole 2 is what the 2- and 3-cycles do at the NEXT load).
- (run) bob's move of her file into a folder of hers he holds no WRITE on (private) is refused and
  the file stays; into a file (docs/f.txt as its folder) is refused ("it names a file as its folder"),
  the file stays, and the next load rebuilds it where it was.
- (run) ``check`` of the vault with hole 1's folders and c1's document made unreadable (a writer of
  the vault folder): ends in 0.4 s at depth 13 (``_folder_path`` is exponential too, but cheap per
  step: at depth 40 it would not end, not run).
- (run) ``unshare`` and ``export`` with hole 1's folders end (at depth 12-13), only 2**n slow.
- (read) The upward walks keep a ``seen`` set or follow one link: ``writes_at``,
  ``writes_where_it_left`` (a folder met twice refused), ``makes_cycle``, ``_parents_first``,
  ``path_of``/``is_ancestor`` (first link only), guests.py:161/185 (capped at 4096), history
  ``lineage`` (``MAX_LINEAGE``), conflicts ancestry (``history.made_over``); ``break_cycles`` walks with a
  list.  No recursion left on the chains I read.
- (read, part 3: another local user of a shared mount) the long store reads of control requests run
  on the tree's own limiter (``read_call``/``in_thread``, per user) and each user's requests are
  answered one at a time; the helper's calls time out (120 s) when he stops his helper; the
  shared mount has no writeback cache (fs/drive.py:87), so an invalidation never waits on his dirty
  pages.  What runs on trio's shared default limiter (40 threads) per user request: ``export``'s
  writes and host calls, ``config``'s checks, unlock's KDF, kernel invalidations; each is one at a
  time per user, so one user holds at most a few of the 40; I found nothing he can hold for good
  there.  Not proven either way with a real-user test.
- (read) ``opendir`` snapshots every entry of the folder (vault/tree/namespace.py:307) per handle,
  with no cap on handles per user: a user with a folder of 100 000 names holds ~6 MB of the shared
  mount's memory per open descriptor of it (his ``ulimit -n``, 20 000 here, per process).  Memory
  growth only, not run to exhaustion on a shared machine; noted for the fixer.

Not tried
---------
- hole 1 through a group owner's Rotation request (share_ops.py:384): read, not run (the removal
  path, :438-441, is run).
- A reader's (carol's) device with holes 2 and 3; cross-owner hard links (a file of hers named in
  bob's shared folder); a name collision between a signed and a forged entry; gc and ``restore`` on
  hole 1's folders after she deletes them; a 100 000-deep chain (24c covered 3000).
- Part 3 with real users (``linux_users``): no flood test written.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import adversary
import pytest
from attack_scenes import recipients_dek
from conftest import PouchServer, first_device, fusevault, mounted, settled, wait_for

from fusevault.crypto import aead
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64e
from fusevault.vault.model.nodes import open_node_attrs, open_node_doc
from mount.test_trust_attack_round22 import docs_shared_with_bob
from mount.test_trust_rollback import alarms
from mount.test_trust_writes import BOB, CAROL, PASSPHRASE, _admin, _key, _node_fid, _user

DEPTH = 12  # folders c1..c12 in docs: each named twice in the one above gives 2**11 ways to c12


def _bobs_second_name(vault: Path, doc: dict, dek: bytes, extra: str) -> dict:
    """alice's folder document ``doc`` with a second name ``extra`` in the folder it is in, signed by
    bob (WRITE on docs, so on every folder under it)."""
    fid = doc["_id"]
    attrs = open_node_attrs(doc, dek)
    (parent, _name), = attrs["links"]
    attrs["links"] = [*attrs["links"], [parent, extra]]
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig")}
    body["enc"] = b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", fid)))
    bob = _key(vault, "bob", BOB)
    return sign_doc(bob.user_id, bob.identity.sign, body)


def _diamonds(tmp_path: Path, depth: int, doubled: bool):
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    laptop = first_device(url, tmp_path)
    docs_shared_with_bob(laptop, tmp_path / "a")
    with mounted(laptop, tmp_path / "a") as a:
        (a / "docs").joinpath(*[f"c{i}" for i in range(1, depth + 1)]).mkdir(parents=True)
        wait_for(lambda: settled(a), "the folders pushed")
    if doubled:
        for i in range(2, depth + 1):
            fid = _node_fid(laptop, "alice", f"c{i}")
            dek = recipients_dek(laptop, "bob", BOB, fid)
            adversary.Server(url).put(_bobs_second_name(laptop, adversary.get(laptop, fid), dek, f"c{i}b"))
    return server, laptop


DOUBLED = [
    True,
    False]  # the control: the same folders, each under its one name


def _bobs_names_taken_in(a: Path, doubled: bool) -> None:
    if doubled:
        # refused now (a folder has one name): said, where before they were taken in
        wait_for(lambda: settled(a) and any(x["kind"] == "forged-write" for x in alarms(a)),
                 "bob's second names refused")


@pytest.mark.parametrize("doubled", DOUBLED)
def test_export_writes_each_folder_a_write_member_named_twice_once(tmp_path: Path, doubled: bool) -> None:
    server, laptop = _diamonds(tmp_path, DEPTH, doubled)
    try:
        out = tmp_path / "out"
        out.mkdir()
        with mounted(laptop, tmp_path / "a") as a:
            _bobs_names_taken_in(a, doubled)
            exported = fusevault("export", a / "docs", out)
        folders = sum(1 for p in out.rglob("*") if p.is_dir())
        assert exported.returncode == 0, exported.stderr
        # docs and c1..c12, once each (or a refusal of bob's second names): not 2**12 folders
        assert folders <= DEPTH + 1, (
            f"{DEPTH} folder documents bob signed (each folder named twice in the one above) made her "
            f"export of docs write {folders} folders: 2**n for n documents")
    finally:
        server.stop()


@pytest.mark.parametrize("doubled", DOUBLED)
def test_her_unshare_of_a_write_member_rekeys_each_folder_he_named_twice_once(tmp_path: Path,
                                                                             doubled: bool) -> None:
    server, laptop = _diamonds(tmp_path, DEPTH, doubled)
    try:
        with mounted(laptop, tmp_path / "a") as a:
            _bobs_names_taken_in(a, doubled)
            unshared = fusevault("unshare", a / "docs", "--with", "bob")
        assert unshared.returncode == 0, unshared.stderr
        count = int(re.search(r"\((\d+) file\(s\) and folder\(s\)\)", unshared.stdout).group(1))
        # docs, notes.txt and c1..c12: each given a new key once
        assert count <= DEPTH + 2, (
            f"her unshare of bob (WRITE on docs, who named each of {DEPTH} folders twice) re-keyed "
            f"{count} files and folders: 2**n for n documents, so with 40 it never ends and bob keeps docs")
    finally:
        server.stop()


def _bobs_move(vault: Path, doc: dict, dek: bytes, links: list[list[str]]) -> dict:
    """alice's node document ``doc`` with its sealed ``links`` replaced, signed by bob."""
    fid = doc["_id"]
    attrs = {**open_node_attrs(doc, dek), "links": links}
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig")}
    body["enc"] = b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", fid)))
    bob = _key(vault, "bob", BOB)
    return sign_doc(bob.user_id, bob.identity.sign, body)


@pytest.mark.parametrize("into", [
    "c2",
    "c3",
    "c1"])  # the control: bob's document names c1 inside itself (refused the same way), nothing is lost
def test_a_write_members_cycle_does_not_hide_her_folders_at_her_next_mount(tmp_path: Path, into: str) -> None:
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop = first_device(url, tmp_path)
        docs_shared_with_bob(laptop, tmp_path / "a")
        with mounted(laptop, tmp_path / "a") as a:
            (a / "docs" / "c1" / "c2" / "c3").mkdir(parents=True)
            (a / "docs" / "c1" / "c2" / "c3" / "f.txt").write_text("hers")
            wait_for(lambda: settled(a), "pushed")
        fid = _node_fid(laptop, "alice", "c1")
        target = _node_fid(laptop, "alice", into)
        dek = recipients_dek(laptop, "bob", BOB, fid)
        # bob (WRITE on docs) moves her c1 into its own subfolder (or into itself): his peer sends it.
        adversary.Server(url).put(_bobs_move(laptop, adversary.get(laptop, fid), dek, [[target, "loop"]]))
        with mounted(laptop, tmp_path / "a") as a:
            wait_for(lambda: settled(a) and any(x["subject"] == fid for x in alarms(a)), "bob's move refused")
            assert (a / "docs" / "c1" / "c2" / "c3" / "f.txt").read_text() == "hers"  # refused on arrival
        with mounted(laptop, tmp_path / "a") as a:  # her next mount loads what the store holds
            shown = sorted(str(p.relative_to(a)) for p in (a / "docs").rglob("*"))
            out = tmp_path / "out"
            out.mkdir()
            exported = fusevault("export", a / "docs", out)
            unshared = fusevault("unshare", a / "docs", "--with", "bob")
        assert "docs/c1/c2/c3/f.txt" in shown, (
            f"after bob's signed move of her c1 into its own {into}, refused on arrival, her next mount "
            f"shows {shown}; export: {exported.stdout.strip()!r}; unshare: {unshared.stdout.strip()!r}")
    finally:
        server.stop()


def _bobs_key_of(vault: Path, fid: str) -> bytes | None:
    """The DEK bob's key file of alice's file ``fid`` opens, or None when he has none."""
    try:
        return recipients_dek(vault, "bob", BOB, fid)
    except AssertionError:  # no key file of his for it
        return None


@pytest.mark.parametrize("moved", [
    True,
    False])  # the control: no move of bob's, her unshare takes his key of f.txt back
def test_her_unshare_while_a_write_members_cycle_hides_her_folders_leaves_him_no_key(tmp_path: Path,
                                                                                     moved: bool) -> None:
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop = first_device(url, tmp_path)
        docs_shared_with_bob(laptop, tmp_path / "a")
        with mounted(laptop, tmp_path / "a") as a:
            (a / "docs" / "c1" / "c2" / "c3").mkdir(parents=True)
            (a / "docs" / "c1" / "c2" / "c3" / "f.txt").write_text("hers")
            wait_for(lambda: settled(a), "pushed")
        fid, f_fid = _node_fid(laptop, "alice", "c1"), _node_fid(laptop, "alice", "f.txt")
        if moved:  # bob moves her c1 into its own c2, signed by him: refused on arrival
            dek = recipients_dek(laptop, "bob", BOB, fid)
            c2 = _node_fid(laptop, "alice", "c2")
            adversary.Server(url).put(_bobs_move(laptop, adversary.get(laptop, fid), dek, [[c2, "loop"]]))
            with mounted(laptop, tmp_path / "a") as a:
                wait_for(lambda: settled(a) and any(x["subject"] == fid for x in alarms(a)), "refused")
        with mounted(laptop, tmp_path / "a") as a:  # her next mount; she revokes bob
            unshared = fusevault("unshare", a / "docs", "--with", "bob")
            assert unshared.returncode == 0, unshared.stderr
            (a / "docs" / "c1" / "new.txt").write_text("a change of c1: its document is hers again")
            wait_for(lambda: settled(a), "pushed")
        with mounted(laptop, tmp_path / "a") as a:
            (a / "docs" / "c1" / "c2" / "c3" / "f.txt").write_text("after bob was removed")
            wait_for(lambda: settled(a), "pushed")
        hers, _ = open_node_doc(adversary.get(laptop, f_fid), _key(laptop, "alice", PASSPHRASE))
        assert _bobs_key_of(laptop, f_fid) != hers, (
            f"her unshare of bob ({unshared.stdout.strip()!r}) ran while his refused move hid c1's folders: "
            "his key file of docs/c1/c2/c3/f.txt still opens the key she writes it under after his removal")
    finally:
        server.stop()


def _her_notes_moved_by_bob(tmp_path: Path, where: str) -> tuple[PouchServer, Path, str]:
    """alice's docs/notes.txt (bob WRITE on docs); bob signs a move of it into ``where``: a folder in
    her trash ("trashed"), a folder id her tree does not hold ("unknown"), his own root ("his"), or
    her private folder, which he holds no WRITE on ("private", the control).  His peer sends it.
    (server, vault, fid)"""
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    laptop = first_device(url, tmp_path)
    docs_shared_with_bob(laptop, tmp_path / "a")
    with mounted(laptop, tmp_path / "a") as a:
        (a / "docs" / "old").mkdir()
        wait_for(lambda: settled(a), "pushed")
        old = _node_fid(laptop, "alice", "old")
        (a / "docs" / "old").rmdir()
        wait_for(lambda: settled(a), "pushed")
    fid = _node_fid(laptop, "alice", "notes.txt")
    target = {"trashed": old, "unknown": "ab" * 16, "his": _user(laptop, "bob")["root"],
              "private": _node_fid(laptop, "alice", "private")}[where]
    dek = recipients_dek(laptop, "bob", BOB, fid)
    adversary.Server(url).put(_bobs_move(laptop, adversary.get(laptop, fid), dek, [[target, "notes.txt"]]))
    return server, laptop, fid


NOWHERE = [
    "trashed",
    "unknown",
    "his",
    "private"]  # the control: a folder of hers he holds no WRITE on, refused the same way, nothing hidden


@pytest.mark.parametrize("where", NOWHERE)
def test_a_write_members_refused_move_into_nowhere_leaves_her_file_in_her_mounted_tree(
        tmp_path: Path, where: str) -> None:
    server, laptop, fid = _her_notes_moved_by_bob(tmp_path, where)
    try:
        with mounted(laptop, tmp_path / "a") as a:
            wait_for(lambda: settled(a) and any(x["subject"] == fid for x in alarms(a)), "bob's move refused")
            try:
                text = (a / "docs" / "notes.txt").read_text()
            except OSError as err:
                text = str(err)
            shown = sorted(str(p.relative_to(a)) for p in a.rglob("*"))
        assert text == "first", (
            f"bob's move of her docs/notes.txt into a folder {where} was refused, yet her "
            f"mounted tree shows {shown}; reading it: {text!r}")
    finally:
        server.stop()


@pytest.mark.parametrize("where", NOWHERE)
def test_her_unshare_after_a_write_members_refused_move_into_nowhere_leaves_him_no_key(
        tmp_path: Path, where: str) -> None:
    server, laptop, fid = _her_notes_moved_by_bob(tmp_path, where)
    try:
        with mounted(laptop, tmp_path / "a") as a:
            wait_for(lambda: settled(a) and any(x["subject"] == fid for x in alarms(a)), "bob's move refused")
            unshared = fusevault("unshare", a / "docs", "--with", "bob")
            assert unshared.returncode == 0, unshared.stderr
        with mounted(laptop, tmp_path / "a") as a:  # her next mount shows it again; she writes it
            (a / "docs" / "notes.txt").write_text("after bob was removed")
            wait_for(lambda: settled(a), "pushed")
        hers, _ = open_node_doc(adversary.get(laptop, fid), _key(laptop, "alice", PASSPHRASE))
        assert _bobs_key_of(laptop, fid) != hers, (
            f"her unshare of bob ({unshared.stdout.strip()!r}) ran while his refused move of docs/notes.txt "
            f"into a folder {where} hid it: his key file of it opens the key she writes it under now")
    finally:
        server.stop()


@pytest.mark.parametrize("doubled", DOUBLED)
def test_a_groups_removal_rekeys_each_folder_a_write_member_named_twice_once(tmp_path: Path,
                                                                            doubled: bool) -> None:
    """The re-key her mount starts by itself when a group she shares docs with loses a member (the
    group's owner signs it): each folder given one new key, however many ways lead to it."""
    server, laptop = _diamonds(tmp_path, DEPTH, doubled)
    try:
        _admin(laptop, "user", "add", "carol", "--uid", "2002", passphrase=CAROL)
        _admin(laptop, "group", "add", "crew", "--owner", "bob", passphrase=BOB)
        _admin(laptop, "group", "member", "add", "crew", "carol", "--perm", "READ", passphrase=BOB)
        with mounted(laptop, tmp_path / "a") as a:
            _bobs_names_taken_in(a, doubled)
            shared = fusevault("share", a / "docs", "--with", "@crew", "--perm", "READ")
            assert shared.returncode == 0, shared.stderr
            wait_for(lambda: settled(a), "pushed")
        with mounted(laptop, tmp_path / "a") as a:  # her next unlock rebuilds (a new key) what bob's refused
            wait_for(lambda: settled(a), "pushed")  # documents named twice: before the removal is counted
        docs, deepest = _node_fid(laptop, "alice", "docs"), _node_fid(laptop, "alice", f"c{DEPTH}")
        before = {fid: adversary.get(laptop, fid)["epoch"] for fid in (docs, deepest)}
        _admin(laptop, "group", "member", "remove", "crew", "carol", passphrase=BOB)  # bob, the group's owner
        with mounted(laptop, tmp_path / "a") as a:  # her mount re-keys docs by itself (docs itself last)
            wait_for(lambda: settled(a) and adversary_epoch(a, laptop, docs) > before[docs], "docs re-keyed",
                     timeout=120)
        after = adversary.get(laptop, deepest)["epoch"]
        assert after == before[deepest] + 1, (
            f"carol's removal from @crew re-keyed her c{DEPTH} {after - before[deepest]} times (bob named "
            f"each folder twice): 2**n for n documents, on her mount, without her doing anything")
    finally:
        server.stop()


def adversary_epoch(mnt: Path, vault: Path, fid: str) -> int:
    """The clear key epoch of ``fid``'s document as the mounted vault's store holds it now."""
    del mnt
    return adversary.get(vault, fid)["epoch"]


@pytest.mark.parametrize("where", [
    "unknown",
    "his",
    "private"])  # the control: a folder of hers he holds no WRITE on: refused, said, nothing hidden
def test_a_write_members_move_of_her_file_into_nowhere_arriving_while_she_is_mounted_hides_nothing(
        tmp_path: Path, where: str) -> None:
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop = first_device(url, tmp_path)
        docs_shared_with_bob(laptop, tmp_path / "a")
        fid = _node_fid(laptop, "alice", "notes.txt")
        target = {"unknown": "ab" * 16, "his": _user(laptop, "bob")["root"],
                  "private": _node_fid(laptop, "alice", "private")}[where]
        dek = recipients_dek(laptop, "bob", BOB, fid)
        moved = _bobs_move(laptop, adversary.get(laptop, fid), dek, [[target, "notes.txt"]])
        with mounted(laptop, tmp_path / "a") as a:
            wait_for(lambda: settled(a), "settled")
            adversary.Server(url).put(moved)  # bob's peer sends it while she is mounted
            wait_for(lambda: settled(a) and (any(x["subject"] == fid for x in alarms(a))
                                             or not (a / "docs" / "notes.txt").exists()), "taken in")
            shown = sorted(str(p.relative_to(a)) for p in a.rglob("*"))
            said = [(x["kind"], x["text"][:110]) for x in alarms(a)]
            trash = fusevault("trash", a).stdout.strip()
        assert "docs/notes.txt" in shown, (
            f"bob's move of her docs/notes.txt into {where} arrived while she was mounted: her tree is "
            f"{shown}, alarms {said}, trash {trash!r}")
    finally:
        server.stop()
