"""Issue 22, attack round 5: ``check --repair`` rebuilding a "lost" node (its document does not
open) only from versions the user signed (vault/services/check.py ``_version_doc``).

The attacker: a writer of the vault folder with no key at all.  He cannot plant a file any more,
but every version alice ever signed is still a version she signed: the rebuild takes one of
hers and signs a new node for it.  Each test asserts the SAFE behaviour; failing ones are marked
``xfail(strict=True)`` with where the hole is.

Found at commit 782ef19 (main):
- HOLE: a file alice deleted (in her trash) whose node document the writer damages (one byte of
  ``enc``) is put back by ``check --repair`` at its old place in her tree, under a node document
  signed in her name: the store writer undid her delete.  check.py ``_own_node`` treats a node
  that does not open as "lost" whatever it was (``delete`` is not looked at), and
  repairing.py ``_rebuild`` links it at its newest version's path.
"""

from __future__ import annotations

import os
from pathlib import Path

import adversary
import pytest
from conftest import fusevault, mounted

from fusevault.encoding import b64d, b64e
from fusevault.vault.tree.authorship import said_signer
from mount.test_trust_writes import _node_fid, _user


def _damaged(vault: Path, fid: str) -> None:
    """One byte of the node document's sealed attributes flipped (no key needed)."""
    doc = adversary.get(vault, fid)
    assert doc is not None
    enc = bytearray(b64d(doc["enc"]))
    enc[len(enc) // 2] ^= 1
    adversary.put(vault, {**doc, "enc": b64e(bytes(enc))})


@pytest.mark.xfail(strict=True, reason="hole: vault/services/check.py _own_node makes every node that does "
                   "not open 'lost' (its clear 'delete' flag and the trash are not considered) and "
                   "repairing.py _rebuild links it at its version's path: a deleted file comes back")
def test_check_repair_does_not_bring_a_deleted_file_back_into_the_tree(vault: Path, tmp_path: Path) -> None:
    """alice deletes ``old-contract.txt`` (it goes to her trash); a keyless store writer flips one
    byte of its node document.  ``check --repair`` may rebuild it, but in the trash where alice
    put it, never back in her folder as if she had not deleted it."""
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "notes.txt").write_text("genuine notes")
        (mnt / "old-contract.txt").write_text("terms alice withdrew")
    alice = _user(vault, "alice")["_id"]
    fid = _node_fid(vault, "alice", "old-contract.txt")
    with mounted(vault, tmp_path / "mnt") as mnt:
        os.unlink(mnt / "old-contract.txt")
        assert sorted(os.listdir(mnt)) == ["notes.txt"]
    assert adversary.get(vault, fid)["delete"], "deleted files stay as a node in the trash"
    _damaged(vault, fid)
    repaired = fusevault("check", vault, "--repair", "--json")
    print(repaired.stdout[-3000:], repaired.stderr[-2000:])
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert sorted(os.listdir(mnt)) == ["notes.txt"], "the deleted file is back in alice's folder"
    doc = adversary.get(vault, fid)
    assert doc.get("delete") or said_signer(doc) != alice, "a live node signed in alice's name"
