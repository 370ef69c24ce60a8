"""Attack round 27a on the vault-side changes of stops 41 (the ledger's ``under_older_key`` /
``owner_trashed``; authorship ``_back_from_owners_trash``; fs/arrivals.py ``_typed``), from the server /
sync peer / store writer / share-member side.  Real mounts, the real ``fusevault`` command, a
pouchdb-server of the test's own.

Holes
-----
1. A WRITE GRANTEE'S DOCUMENT WITH A HUGE SEALED KEY EPOCH MAKES EVERY LATER DELETION OF THE OWNER'S
   REFUSED ON A READER'S DEVICE AS A "ROLLBACK": HER TRASHED FILE STAYS SHOWN THERE, A FALSE ALARM.
   vault/tree/guests.py:321 (``open_guest``) checks only the CLEAR ``epoch`` of a grantee's document against
   the key the owner sealed; the sealed ``epoch`` in the attributes (vault/model/nodes.py:370,
   ``node.epoch = attrs.get("epoch", 0)``) is never compared with it.  bob (WRITE on docs) signs a genuine
   write of alice's docs/notes.txt whose sealed attributes say ``epoch`` 10**6 (clear epoch as it was).
   On carol's device (READ) it opens and is taken; vault/model/ledger.py:492 ``admit`` then calls
   ``self.keyed(fid, fresh.epoch)`` with the SEALED epoch, so ``epochs[fid]`` = 10**6.  alice then puts
   the file in her trash (genuine, signed by her, clear epoch her real one): it does not open for carol,
   so ledger.py:473 ``under_older_key`` compares its clear epoch with 10**6 and refuses it as a
   rollback.  The docstring of ``under_older_key`` claims "only keys she sealed count here ... so a writer
   cannot make her genuine state look old": a writer can, since ``keyed`` takes a writer's sealed number.
   Impact: a WRITE grantee (or anyone who can make a grantee's device sign, or a server forwarding his
   document) makes the owner's deletion of her file never reach a reader's device: carol keeps seeing
   the file alice deleted (her trash ignored), with a false rollback alarm, at every load too
   (ledger.py:770 ``_missing``), and ``epochs`` only grows, so no later deletion of alice's fixes it.
   Fix: refuse (``CorruptData``) a node document whose sealed ``epoch`` differs from its clear one
   (``open_node_attrs`` / ``open_guest``), or have ``keyed`` take only states the owner signed.
   Test: test_a_writers_sealed_key_epoch_does_not_make_her_deletion_a_rollback_on_a_readers_device.

What held
---------
- (read) ``under_older_key`` counts only a document whose ``sig`` names its owner, and the clear epoch is
  signed: the server cannot raise or lower it on her document; a forged clear epoch on a writer's document
  is refused by ``open_guest`` (no key of that epoch).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import adversary
import pytest
from attack_scenes import recipients_dek
from conftest import PouchServer, first_device, fusevault, mounted, settled, wait_for
from services.test_trust_attack_round4 import _alarms

from fusevault.crypto import aead
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64e
from fusevault.vault.model.nodes import open_node_attrs
from mount.test_trust_attack_round22 import docs_shared_with_bob
from mount.test_trust_writes import BOB, CAROL, _admin, _key, _node_fid

SEEN = ("c", "shared", "alice", "docs", "notes.txt")


def _bobs_touch(vault: Path, doc: dict, dek: bytes, epoch: int | None) -> tuple[dict, int]:
    """alice's node document ``doc`` with its mtime moved (and, if given, its sealed key epoch set),
    signed by bob (WRITE on its folder): (the document, the new mtime)."""
    fid = doc["_id"]
    attrs = open_node_attrs(doc, dek)
    attrs["mtime"] = attrs["mtime"] + 3_600 * 10**9
    if epoch is not None:
        attrs["epoch"] = epoch
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig")}
    body["enc"] = b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", fid)))
    bob = _key(vault, "bob", BOB)
    return sign_doc(bob.user_id, bob.identity.sign, body), attrs["mtime"]


@pytest.mark.parametrize("epoch", [
    pytest.param((1 << 53) - 1, marks=pytest.mark.xfail(strict=True, reason=(
        "hole 1: her device takes a writer's sealed key epoch as her file's; her unshare fails"))),
    None])  # the control: the same write of bob's with the epoch as it was
def test_a_writers_sealed_key_epoch_does_not_stop_her_unsharing_nor_writing_her_file(
        tmp_path: Path, epoch: int | None) -> None:
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop = first_device(url, tmp_path)
        docs_shared_with_bob(laptop, tmp_path / "a")  # docs/notes.txt, bob WRITE on docs
        fid = _node_fid(laptop, "alice", "notes.txt")
        with mounted(laptop, tmp_path / "a") as a:
            wait_for(lambda: settled(a), "the share pushed")
        live = adversary.get(laptop, fid)
        dek = recipients_dek(laptop, "bob", BOB, fid)
        touch, mtime = _bobs_touch(laptop, live, dek, epoch)  # bob writes her file (his peer sends it)
        adversary.Server(url).put(touch)
        with mounted(laptop, tmp_path / "a") as a:
            notes = a / "docs" / "notes.txt"
            wait_for(lambda: settled(a) and notes.stat().st_mtime_ns == mtime, "bob's write taken in")
            unshared = fusevault("unshare", a / "docs", "--with", "bob")
            try:
                notes.write_text("after bob left")
                wrote = None
            except OSError as err:
                wrote = err
        assert unshared.returncode == 0 and wrote is None, (
            f"bob (WRITE on docs) wrote alice's docs/notes.txt with a sealed key epoch {epoch}: her unshare "
            f"of bob: {unshared.returncode} {unshared.stderr.strip()[:120]!r}; her write of her file: {wrote}")
    finally:
        server.stop()
