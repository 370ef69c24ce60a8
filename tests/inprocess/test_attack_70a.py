"""Attack round 70a (at ca5e214/0d31167, round 69b's fix): the owner a phantom was guessed to have.

In-process, as tests/inprocess/test_attack_69b.py: alice and bob unlocked in one shared mount's
``Drive`` (alice's seat: her desktop); her laptop is a second ``Volume`` of hers with a ledger of its
own (tests/inprocess/test_attack_59b.py's device), writing to the raw store: what it commits reaches
the desktop only when the test hands it over (``absorb_arrivals``), as a server that holds a document
back, or sends it late, does.

(1) Her own folder, arriving after bob's share named it, is held as bob's (high).  Attacker: bob, any
    user (one a vault-folder writer adds too), with a server that sends documents in its own order
    (or a peer that relays them).  Steps: alice's laptop makes her folder Secret (id P, in the store,
    so bob sees P); the server holds P back from her desktop.  bob signs a node document of his own
    x.txt naming ``[[<his root>, "x.txt"], [P, "x.txt"]]`` and shares x.txt with alice: her desktop
    admits it and, holding no P, keeps P as a phantom, whose owner is guessed from x.txt: bob
    (loading.py ``_link_loaded``, ``phantom(0, parent_fid, node.owner)``).  Then P's own document
    (hers, signed by her) arrives.  Seen: P is taken in as a state of the phantom, and keeps owner
    bob: Secret is listed in her root, lists bob's x.txt (``may_name`` sees a folder of bob's), her
    laptop's Secret/plan.txt is refused with an alarm blaming her ("signed by <alice> ... in folder
    P of <bob>, who gave <alice> no WRITE there"), and she may not write in it (EACCES).  bob then
    signs a Share of "his" P with alice, WRITE (any user signs a Share of any id: ``_root_perm``
    counts a grant whose owner is the node's owner, here the guessed one): she writes
    Secret/new.txt on her desktop; the new file is bob's (a new file is its folder owner's:
    namespace.py ``create``), its key sealed to bob (``owner_dek``): bob opens it.  At her next
    unlock P is hers again and new.txt is gone from her view (she holds no key of it).  Expected:
    a phantom's owner is a guess: the document that makes it real names the owner (checked as
    ``owner_changed`` checks a held node's), and the node takes it; what was named in it while a
    phantom is judged then, as the load judges it.  Cause: vault/services/absorbing.py:381-382
    (``sharing.phantoms.discard(node.ino)``, then ``_update`` copies ``ATTRS`` and ``CONTENTS``, never
    ``owner``), the same at absorbing.py:961-962 (``_admit_new_shares``, "a phantom's owner was a
    guess" is noted and only given to the ledger by ``_bound``); arrivals.py:116-124
    (``owner_changed`` checks a phantom against ``Ledger.owner_seen`` only, which knows nothing of a
    folder this device never saw).  Impact: what she saves in her own folder is sealed to bob and
    lost to her at the next unlock; her files in it refused, said as her own forgery; bob's file
    listed among hers (the 69b rule judged against the wrong owner).  Suggested fix: when a phantom
    becomes a held node (absorb_node, ``_admit_new_shares``), set ``node.owner = fresh.owner`` (or
    replace the phantom by a node built from the document), then run ``names_across`` over what it
    holds (the 69b limit "judged at her next unlock" closes too); a Share's grant on a phantom's id
    never counts for the guessed owner.

Tried and held: see the report of round 70a (controls not kept as tests unless named here).
"""

from __future__ import annotations

import stat

import pyfuse3
import pytest
import trio
from attack_scenes import ALICE, BOB, bobs_node_doc, planted

from fusevault.crypto.identity import open_file_key
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64d
from fusevault.errors import VaultError
from fusevault.vault.model import ledger as ledger_module
from fusevault.vault.model.sharing import Grant, share_doc
from fusevault.vault.services.absorbing import absorb_arrivals
from fusevault.vault.tree.namespace import Caller
from fusevault.vault.volume import Volume
from inprocess.conftest import (  # noqa: F401  (fixtures)
    ALICE_UID,
    BOB_UID,
    ROOT,
    shared,
    template_vault,
    vault_copy,
)
from inprocess.test_two_users import _walk, _write

HERS = Caller(ALICE_UID, ALICE_UID)


def _laptop(shared, monkeypatch: pytest.MonkeyPatch) -> Volume:  # noqa: F811
    """alice's other device: its own ledger, over the raw store (nothing reaches the seats)."""
    alice = shared.volumes["alice"]
    real = ledger_module.ledger_path
    monkeypatch.setattr(ledger_module, "ledger_path",
                        lambda root, user: real(root, user).with_name("laptop-" + real(root, user).name))
    laptop = Volume.load(alice.layout, shared.store, alice.key, alice.tree.get(1).fid)
    monkeypatch.undo()
    assert laptop.ledger.device != alice.ledger.device, "the scene: another device"
    return laptop


async def _her_folder_after_bobs_phantom(shared, monkeypatch: pytest.MonkeyPatch) -> tuple[Volume, str]:  # noqa: F811
    """Her laptop's folder Secret (id P), held back from her desktop; bob's x.txt named in P too and
    shared with alice (her desktop keeps P as a phantom); then P's document reaches the desktop.
    (the laptop, P)."""
    drive = shared.drive
    alice, bob = shared.volumes["alice"], shared.volumes["bob"]
    laptop = _laptop(shared, monkeypatch)
    p = (await laptop.mkdir(ROOT, b"Secret", stat.S_IFDIR | 0o700, HERS)).fid
    assert alice.find(p) is None, "the scene: held back from the desktop"
    await _write(drive, ROOT, b"x.txt", b"bob's\n", BOB)
    his = bob.tree.node(bob.tree.node(ROOT).children[b"x.txt"])
    both = {"links": [[bob.tree.node(ROOT).fid, "x.txt"], [p, "x.txt"]]}
    planted(shared, bobs_node_doc(shared, his.fid, both))
    answer = await drive.seat_of(BOB_UID).ops.session.requests.handle(
        {"cmd": "share", "path": "x.txt", "with": "alice", "perm": "READ"})
    assert "error" not in answer, answer
    held = alice.find(p)
    assert held is not None and held.ino in alice.sharing.phantoms, "the scene: P a phantom on the desktop"
    absorb_arrivals(alice, [shared.store.get(p)])  # her folder's own document, at last
    return laptop, p


@pytest.mark.xfail(strict=True, reason="70a (1): her folder arriving after bob's share named it is held as "
                   "bob's (a phantom's guessed owner kept): what she saves in it is sealed to bob")
def test_70a_1_what_she_saves_in_her_own_folder_is_not_sealed_to_the_phantoms_guessed_owner(
        shared, monkeypatch) -> None:  # noqa: F811
    async def attack() -> tuple[bool, bool]:
        drive = shared.drive
        alice, bob = shared.volumes["alice"], shared.volumes["bob"]
        _, p = await _her_folder_after_bobs_phantom(shared, monkeypatch)
        grant = share_doc(Grant(bob.key.user_id, p, alice.key.user_id, False, "READ,WRITE"))
        planted(shared, sign_doc(bob.key.user_id, bob.key.identity.sign, grant))  # bob "shares" P
        await trio.sleep(0)
        secret = await _walk(drive, b"Secret", ALICE)  # her folder, in her root
        await _write(drive, secret.st_ino, b"new.txt", b"alice's secret\n", ALICE)
        await trio.sleep(0.5)
        mine = alice.tree.node(alice.find(p).children[b"new.txt"])
        doc = shared.store.get(mine.fid)
        opens = False
        if "owner_dek" in doc:
            try:
                opens = open_file_key(bob.key.identity, bob.key.user_id, mine.fid, 0,
                                      b64d(doc["owner_dek"])) == mine.dek
            except VaultError:
                opens = False
        again = Volume.load(alice.layout, shared.store, alice.key, alice.tree.get(1).fid)  # her unlock
        return opens, again.find(mine.fid) is not None

    bob_opens, kept = trio.run(attack)
    assert not bob_opens, "bob opens the key of the file alice saved in her own folder Secret"
    assert kept, "the file she saved in her folder is gone from her view at her next unlock"


@pytest.mark.xfail(strict=True, reason="70a (1): her folder arriving after bob's share named it is held as "
                   "bob's: it lists his x.txt, refuses her laptop's file, and her writes")
def test_70a_1_her_folder_arriving_after_bobs_phantom_is_hers_on_her_desktop(shared, monkeypatch) -> None:  # noqa: F811
    """The same scene, no grant of bob's: her folder shows bob's x.txt, her laptop's file in it is
    refused (said as her own forgery), and she may not write in it."""
    async def attack() -> dict:
        drive = shared.drive
        alice = shared.volumes["alice"]
        laptop, p = await _her_folder_after_bobs_phantom(shared, monkeypatch)
        fh, plan = await laptop.create(laptop.find(p).ino, b"plan.txt", stat.S_IFREG | 0o600, HERS)
        await laptop.write(fh, 0, b"her plan\n")
        await laptop.release(fh)
        absorb_arrivals(alice, [shared.store.get(plan.fid)])
        folder = alice.find(p)
        seen = {"owner is hers": folder.owner == alice.key.user_id,
                "lists": sorted(folder.children)}
        secret = await _walk(drive, b"Secret", ALICE)
        try:
            await _write(drive, secret.st_ino, b"note.txt", b"hers\n", ALICE)
            seen["she writes"] = True
        except pyfuse3.FUSEError as err:
            seen["she writes"] = err.errno
        seen["blamed"] = [a["text"][:90] for a in alice.trust.alarms.as_list() if a["subject"] == plan.fid]
        return seen

    seen = trio.run(attack)
    assert seen["owner is hers"] and seen["lists"] == [b"plan.txt"] and seen["she writes"] is True, seen
