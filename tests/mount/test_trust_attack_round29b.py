"""Attack round 29b on issue 22 (the authenticated vault): round 28's new refusals (a folder's one name,
loops cut at a writer's name, moves into folders not held, a writer's unreadable document, grants gone),
from the server / sync peer / share member side.  Real mounts, the real ``fusevault`` command, a
pouchdb-server of the test's own.

Status: holes 1 and 2 are fixed and their tests pass.  1: the judgement moved from the arrival to every
reading of the grants (vault/model/freshness.py ``sweep``: at unlock and mount too): her own grant seen
here, gone from the store, that no ``unshare`` here took back (``took_back``, now recorded before the
tombstone is written) is said once (``share-missing`` / ``group-missing``).  2: a file of hers whose
writer's document does not read and whose place this device does not know is rebuilt at the top of her
vault from her newest version, with a ``rebuilt`` alarm (vault/tree/rebuilding.py ``keep_undeleted``); never
where the refused document (or a stamp it carries) puts it.

Holes
-----
1. THE SERVER DELETES A SHARE OF HERS WHILE HER MOUNT IS LOCKED: TAKEN SILENTLY, THEN AND AT HER UNLOCK.
   The attacker (the CouchDB server, or a sync peer) waits until alice's mount is locked (``fusevault
   lock``, or her passphrase TTL ran out: the mount keeps running and keeps syncing), then sends the same
   bare deletion of her Share (``share-<docs fid>-<bob>``, bob WRITE on docs) as round 28a hole 1.
   Seen: the tombstone reaches her store while the mount is locked; ``fusevault unlock`` loads the tree
   from a store that no longer has the share; new.txt, made in docs after the unlock, is not sealed to bob,
   and neither the unlocked mount nor her next mount says anything (no ``share-missing`` alarm).
   Cause: the round 28a fix only looks at the deletion as it arrives, for users unlocked at that moment:
   fs/arrivals.py:84 ``self._grants_gone(docs)`` and fs/arrivals.py:155 ``for agent in self.unlocked()``;
   a locked mount's arrivals are stored with no one to judge them, and nothing at unlock / load compares
   her grants in force when she last saw them (freshness ``remembered``, freshness.py:391) with the
   store's.  The hole of round 28a is only moved to the time her mount is locked, which the server sees
   (her device stops pushing).
   Impact: a server/peer silently revokes her shares (and, by the same path, dissolves her groups) with
   no alarm on the only device that could tell; her grantees lose access to what she writes after.
   Fix: make the judgement at load (unlock and mount), not only on arrival: for each id freshness
   remembers as a grant of hers seen live and not taken back here (``remembered`` / ``took_back``) that the
   store now has deleted, raise ``share-missing`` / ``group-missing`` once (then record it, as the arrival
   path does); or keep judging arrivals for locked users by deferring ``_grants_gone`` to their unlock.
   Test (beside the round it reopens): test_trust_attack_round28a.py::
   test_her_share_deleted_by_the_server_while_she_is_mounted_is_said[True].

2. A WRITER'S UNREADABLE DOCUMENT OF HER FILE THAT THIS DEVICE NEVER SAW: REFUSED, YET THE FILE IS LEFT
   OUT OF HER MOUNT AT EVERY UNLOCK (ROUND 28d'S FIX BYPASSED FOR FILES MADE ON HER OTHER DEVICE).
   The attacker: bob (WRITE on docs).  alice's desktop makes docs/new.txt and pushes it; before her laptop
   mounts again, bob's peer sends his genuine signed write of new.txt whose sealed key epoch is not its
   clear one (unreadable: round 27a), exactly round 28d's document.
   Seen: at the laptop's next mounts (two in a row), ``forged-write`` is said for new.txt, and docs/new.txt
   is not in her tree (docs holds only notes.txt), no ``rebuilt``.  The control (the laptop mounted once
   between the desktop's push and bob's document, so it saw new.txt): refused, ``rebuilt``, shown.
   Cause: vault/tree/loading.py:131-136 refuses the document and queues it as refused-as-read
   (``deleted.append((_identity(doc), None))``); ``keep_undeleted`` then places it only where this device
   last saw it: loading.py:250-252 (``if signer is None: if not [parent for parent in was if
   tree.find(parent) is not None]: continue``), and ``gate.was_placed(tree, fid, stamp)`` has nothing for
   a file this device's ledger never placed (her placement stamp is sealed inside bob's unreadable
   document, ``_identity`` keeps none).  So the file is silently left out (the alarm names a refusal,
   never that her file is hidden), at every unlock of that device, until her desktop writes the file again.
   Impact: a WRITE grantee hides from any of her devices every file of hers that device has not yet seen
   (anything new from her other device), with one document per file; she cannot read, move or trash it
   there, and her ``unshare`` of bob run on that device does not reach the hidden file (not tried).
   Fix: when a refused-as-read document of hers has no place this device knows, place it from what she
   signed: her newest signed version document's path (``signed_path``, undeleting.rebuilt) or her
   signed ``placed`` stamp kept from her own last document (``by_file`` history); failing that, put it
   in a visible "recovered" folder rather than leaving it out, and say so.
   Test: test_a_writers_unreadable_document_of_her_file_this_device_never_saw_hides_nothing[False]
   ([True]: the control).

What held
---------
- A writer's (bob's) signed move of her docs/sub/notes2.txt into a node that is held but is a FILE
  (her docs/other.txt): refused (``forged-write``) on arrival while mounted, and ``rebuilt`` at her next
  mount; the file stays at docs/sub/notes2.txt.  His legit move into docs is taken both ways (control)
  (test_a_writers_move_of_her_file_into_a_held_file_hides_nothing).
- The server replacing her Share (not deleting it) by an untyped body, a body of another type, or an
  unsigned Share: the share stays in force (new.txt sealed to bob), or ``malformed`` is said
  (test_her_share_overwritten_by_the_server_with_another_body_is_said_or_kept).
- Round 28a's own scene (the deletion arriving while she is unlocked) was not re-run here; hole 1 is the
  same deletion while locked.

Not tried
---------
- Loops through guest folders and through ``conflicts.py`` adoption; a writer's readable document that
  makes ``rebuilt_in_place`` fail; moves into phantom folders; bob's ``mkdir X; mv notes.txt X`` in
  either order of arrival; concurrent folder moves of two of her devices (no time in this round).
"""

from __future__ import annotations

import json
from pathlib import Path

import adversary
import pytest
from attack_scenes import recipients_dek
from conftest import PouchServer, first_device, mounted, new_device, settled, wait_for
from services.test_trust_attack_round4 import _alarms

from fusevault.crypto import aead
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64e
from fusevault.vault.format.layout import Layout
from fusevault.vault.model.nodes import open_node_attrs
from fusevault.vault.model.sharing import user_key_path
from mount.test_trust_attack_round22 import docs_shared_with_bob
from mount.test_trust_attack_round28a import _http, _share_of_docs
from mount.test_trust_rollback import alarms
from mount.test_trust_writes import BOB, _key, _node_fid, _user


@pytest.mark.parametrize("body", [{}, {"type": "Trash"}, {"type": "Share"}],
                         ids=["untyped", "other", "unsigned"])
def test_her_share_overwritten_by_the_server_with_another_body_is_said_or_kept(tmp_path: Path,
                                                                               body: dict) -> None:
    """What held: the server replaces her Share (not a deletion, so ``_grants_gone`` never looks) by a body
    with no type, another type, or an unsigned Share: the share stays in force (new.txt sealed to bob),
    or, for the unsigned Share, a ``malformed`` alarm is raised."""
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop = first_device(url, tmp_path)
        mnt = tmp_path / "a"
        docs_shared_with_bob(laptop, mnt)
        share = _share_of_docs(laptop)
        bob = _user(laptop, "bob")["_id"]
        with mounted(laptop, mnt) as m:
            wait_for(lambda: settled(m), "the first push")
            before = {(a["kind"], a.get("subject")) for a in _alarms(m)}
            gone = share["_id"]
            rev = _http("GET", f"{url}/{gone}")["_rev"]
            _http("PUT", f"{url}/{gone}", {**body, "_rev": rev})
            wait_for(lambda: (adversary.get(laptop, gone) or {}).get("_rev") != share["_rev"], "in her store")
            wait_for(lambda: settled(m), "the mount settled")
            (m / "docs" / "new.txt").write_text("made after")
            wait_for(lambda: settled(m), "the mount settled")
            fid = _node_fid(laptop, "alice", "new.txt")
            said = [(a["kind"], a["text"][:120]) for a in _alarms(m)
                    if (a["kind"], a.get("subject")) not in before]
        with mounted(laptop, mnt) as m:
            said += [(a["kind"], a["text"][:120]) for a in _alarms(m)
                     if (a["kind"], a.get("subject")) not in before]
        sealed = user_key_path(Layout(laptop, "", {}), bob, share["owner"], fid).exists()
        assert sealed or said, said
    finally:
        server.stop()


def _bobs_move(vault: Path, doc: dict, dek: bytes, links: list[list[str]]) -> dict:
    """alice's node document ``doc`` with its sealed ``links`` replaced, signed by bob (round 28c's)."""
    fid = doc["_id"]
    attrs = {**open_node_attrs(doc, dek), "links": links}
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig")}
    body["enc"] = b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", fid)))
    bob = _key(vault, "bob", BOB)
    return sign_doc(bob.user_id, bob.identity.sign, body)


@pytest.mark.parametrize("where", ["file", "docs"])  # docs: the control, his legit move is taken
@pytest.mark.parametrize("when", ["mounted", "unlock"])
def test_a_writers_move_of_her_file_into_a_held_file_hides_nothing(tmp_path: Path, where: str,
                                                                   when: str) -> None:
    """What held: bob (WRITE on docs) moves her docs/sub/notes2.txt into her docs/other.txt (a held node,
    a file, not a folder): refused and said, on arrival and at her next mount; into docs: taken."""
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop = first_device(url, tmp_path)
        docs_shared_with_bob(laptop, tmp_path / "a")
        with mounted(laptop, tmp_path / "a") as a:
            (a / "docs" / "other.txt").write_text("other")
            (a / "docs" / "sub").mkdir()
            (a / "docs" / "sub" / "notes2.txt").write_text("second")
            wait_for(lambda: settled(a), "pushed")
        fid = _node_fid(laptop, "alice", "notes2.txt")
        target = _node_fid(laptop, "alice", "other.txt" if where == "file" else "docs")
        dek = recipients_dek(laptop, "bob", BOB, fid)
        moved = _bobs_move(laptop, adversary.get(laptop, fid), dek, [[target, "notes2.txt"]])
        with mounted(laptop, tmp_path / "a") as a:
            wait_for(lambda: settled(a), "settled")
            adversary.Server(url).put(moved)
            wait_for(lambda: settled(a) and (any(x["subject"] == fid for x in alarms(a))
                                             or not (a / "docs" / "sub" / "notes2.txt").exists()), "taken in")
            shown = sorted(str(p.relative_to(a)) for p in a.rglob("*"))
            said = [(x["kind"], x["text"][:110]) for x in alarms(a)]
        if when == "unlock":
            with mounted(laptop, tmp_path / "a") as a:
                shown = sorted(str(p.relative_to(a)) for p in a.rglob("*"))
                said = [(x["kind"], x["text"][:110]) for x in alarms(a)]
        assert ("docs/sub/notes2.txt" if where == "file" else "docs/notes2.txt") in shown, (shown, said)
    finally:
        server.stop()


def _bobs_unreadable(vault: Path, doc: dict, dek: bytes) -> dict:
    """alice's node document ``doc`` with its sealed key epoch out of step with its clear one (unreadable:
    round 27a), signed by bob (WRITE on its folder), as round 28d's."""
    fid = doc["_id"]
    attrs = open_node_attrs(doc, dek)
    attrs["mtime"] = attrs["mtime"] + 3_600 * 10**9
    attrs["epoch"] = (1 << 53) - 1
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig")}
    body["enc"] = b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", fid)))
    bob = _key(vault, "bob", BOB)
    return sign_doc(bob.user_id, bob.identity.sign, body)


@pytest.mark.parametrize("seen", [
    False,
    True])  # the control: the laptop saw new.txt before bob's document: rebuilt, shown
def test_a_writers_unreadable_document_of_her_file_this_device_never_saw_hides_nothing(
        tmp_path: Path, seen: bool) -> None:
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop = first_device(url, tmp_path)
        docs_shared_with_bob(laptop, tmp_path / "a")
        with mounted(laptop, tmp_path / "a") as a:
            wait_for(lambda: settled(a), "the first push")
            desktop = new_device(url, tmp_path, "desktop")
        with mounted(desktop, tmp_path / "d") as d:
            wait_for(lambda: settled(d) and (d / "docs" / "notes.txt").exists(), "desktop synced")
            (d / "docs" / "new.txt").write_text("made on her desktop")
            wait_for(lambda: settled(d), "pushed")
        if seen:
            with mounted(laptop, tmp_path / "a") as a:
                wait_for(lambda: settled(a) and (a / "docs" / "new.txt").exists(), "laptop saw it")
        # bob's peer pulls new.txt from the server and pushes his unreadable write of it
        srv = adversary.Server(url)
        fid = _node_fid(desktop, "alice", "new.txt")
        live = srv.get(fid)
        dek = recipients_dek(desktop, "bob", BOB, fid)
        srv.put(_bobs_unreadable(desktop, live, dek))
        with mounted(laptop, tmp_path / "a") as a:
            wait_for(lambda: settled(a) and srv.get(fid)["_rev"] == (adversary.get(laptop, fid) or {}).get(
                "_rev"), "bob's document in her store")
        with mounted(laptop, tmp_path / "a") as a:
            shown = sorted(str(p.relative_to(a)) for p in a.rglob("*"))
            said = [(x["kind"], x["text"][:110]) for x in alarms(a) if x["subject"] == fid]
            # where the laptop saw it; else (it never did: its place is not known here) at the top of her
            # vault, said, never in a folder bob's document names
            where = "docs/new.txt" if seen else "new.txt"
            text = (a / where).read_text() if where in shown else None
        assert text == "made on her desktop", (
            f"her docs/new.txt, made on her desktop, is gone from her laptop's mount at every unlock after "
            f"bob's unreadable document of it (seen by the laptop before: {seen}): {shown}; said: {said}")
        assert seen or ("rebuilt", ) in [k[:1] for k in said], said
    finally:
        server.stop()
