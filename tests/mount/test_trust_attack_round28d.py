"""Attack round 28d (mine, from round 27a's fix): a writer's unreadable document of the owner's file, found
at her unlock rather than while she is mounted.  Real mounts, the real ``fusevault`` command, a
pouchdb-server of the test's own.

Status: hole 1 is fixed and its test passes.

Holes
-----
1. A WRITE GRANTEE HIDES THE OWNER'S FILE FROM HER AT EVERY UNLOCK WITH ONE DOCUMENT SHE CANNOT READ.
   Round 27a made a node document whose sealed key epoch is not its clear one unreadable
   (``CorruptData``).  While she is mounted, such a document from bob (WRITE on docs) is refused and her
   file keeps its revision (vault/services/absorbing.py).  Taken in at her next unlock instead, it was
   read as any malformed document: vault/tree/loading.py left the file out (a ``malformed`` alarm),
   so docs/notes.txt was gone from her mount (ENOENT), at every unlock, until she found its id.  Any
   number out of range in the sealed attributes did the same.  A writer may change her file, never take
   it from her: a refused deletion of his, or a document of his she cannot take, is rebuilt from her
   own material (test_refused_document_rebuilt.py).
   Fix: in ``load``, a document of her own node signed by another that cannot be read is refused
   (``forged-write``, naming the signer and why) and the file rebuilt where this device last saw it,
   from what she signed.
   Test: test_a_writers_unreadable_document_of_her_file_hides_nothing_at_her_unlock
"""

from __future__ import annotations

from pathlib import Path

import adversary
from attack_scenes import recipients_dek
from conftest import PouchServer, first_device, mounted, settled, wait_for

from mount.test_trust_attack_round22 import docs_shared_with_bob
from mount.test_trust_attack_round27a import _bobs_touch
from mount.test_trust_rollback import alarms
from mount.test_trust_writes import BOB, _node_fid


def test_a_writers_unreadable_document_of_her_file_hides_nothing_at_her_unlock(tmp_path: Path) -> None:
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop = first_device(url, tmp_path)
        docs_shared_with_bob(laptop, tmp_path / "a")  # docs/notes.txt, bob WRITE on docs
        fid = _node_fid(laptop, "alice", "notes.txt")
        with mounted(laptop, tmp_path / "a") as a:
            wait_for(lambda: settled(a), "the share pushed")
            before = (a / "docs" / "notes.txt").read_bytes()
        dek = recipients_dek(laptop, "bob", BOB, fid)
        # bob's genuine signature over a write of her file whose sealed key epoch is not its clear one,
        # in her store while she is not mounted (his peer pushed it; she pulls it at her next mount)
        touch, _ = _bobs_touch(laptop, adversary.get(laptop, fid), dek, (1 << 53) - 1)
        adversary.put(laptop, touch)
        with mounted(laptop, tmp_path / "a") as a:
            notes = a / "docs" / "notes.txt"
            said = [x["kind"] for x in alarms(a) if x["subject"] == fid]
            assert notes.exists(), f"her docs/notes.txt is gone after bob's document; alarms: {said}"
            assert notes.read_bytes() == before
            assert "forged-write" in said, said
            notes.write_text("hers, after")  # and she writes it as before
            wait_for(lambda: settled(a), "her write saved")
            assert notes.read_text() == "hers, after"
    finally:
        server.stop()
