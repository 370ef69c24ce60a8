"""Attack round 69b (an outsider, at a9eefce), end to end through real mounts: a user made by whoever
writes the vault folder places his own file in alice's root, under the name of her file.

(5) Attacker: a writer of the vault folder (or the server: documents replicate), with no key of
    alice's.  Steps: ``fusevault user add mallory`` (needs no key of anyone's), mallory's mount makes
    x.txt and ``share x.txt --with alice --perm WRITE``; then he signs, with mallory's key, a node
    document of his own x.txt that keeps its name and adds ``diary.txt`` in alice's root (her root's
    fid is the clear ``root`` of her user document).  alice mounts, as every day, and writes her
    diary.txt.  Seen: ``diary.txt`` in her root is mallory's file (hers is listed as
    ``diary (also <fid>).txt``), her write lands in it, and mallory's mount reads her entry from his
    x.txt.  Expected: nothing she writes in her own tree is sealed to someone she did not choose; his
    name in her folder refused and said.  Cause: vault/tree/arrivals.py:193 and the unlock's
    ``linking.admit_guests`` take an owner-signed node's names in any held folder, another user's
    private folder included (the WRITE judgement, ``Authorship.may_write``, is asked only of a signer
    who is not the node's owner).  The in-process scenes and the suggested fix are in
    tests/inprocess/test_attack_69b.py.
"""

from __future__ import annotations

from pathlib import Path

import adversary
from attack_scenes import resigned, share
from conftest import PASSPHRASE, mounted

from fusevault.vault.model.nodes import open_node_doc
from mount.test_trust_writes import _admin, _key, _user

MALLORY = "mallory's passphrase 69b"


def _own_node(vault: Path, name: str, passphrase: str, file_name: str) -> tuple[str, bytes, list]:
    """(fid, DEK, links) of ``name``'s own node named ``file_name``."""
    key = _key(vault, name, passphrase)
    for doc in adversary.docs(vault, "node"):
        if doc.get("owner") == key.user_id and not doc.get("delete"):
            dek, attrs = open_node_doc(doc, key)
            if any(n == file_name for _, n in attrs["links"]):
                return doc["_id"], dek, attrs["links"]
    raise AssertionError(f"no node {file_name} of {name}")


def test_a_made_up_users_file_named_as_hers_in_her_root_does_not_get_what_she_writes(
        vault: Path, tmp_path: Path) -> None:
    mine, his = tmp_path / "mnt", tmp_path / "his"
    with mounted(vault, mine):
        (mine / "diary.txt").write_text("alice's own\n")
    _admin(vault, "user", "add", "mallory", "--uid", "2003", passphrase=MALLORY)
    with mounted(vault, his, "--user", "mallory", passphrase=MALLORY):
        (his / "x.txt").write_text("mallory's bytes\n")
        assert share(his, "x.txt", "alice", "WRITE") is not None
    fid, dek, links = _own_node(vault, "mallory", MALLORY, "x.txt")
    her_root = _user(vault, "alice")["root"]
    resigned(vault, fid, {"links": [*links, [her_root, "diary.txt"]]}, dek, "mallory", MALLORY)
    with mounted(vault, mine, passphrase=PASSPHRASE):
        listed = sorted(p.name for p in mine.iterdir())
        (mine / "diary.txt").write_text("alice's secret entry\n")  # her diary, as she knows it
    # Her state of his file (signed by her, under his DEK) is in the store.  His own device refuses it
    # (it names a folder he cannot see), so he signs it again as his, named in his root only.
    resigned(vault, fid, {"links": links}, dek, "mallory", MALLORY)
    with mounted(vault, his, "--user", "mallory", passphrase=MALLORY):
        mallory_reads = (his / "x.txt").read_text()
    print("alice's root:", listed, "mallory reads:", mallory_reads)
    assert mallory_reads != "alice's secret entry\n", f"mallory reads what she wrote; her root: {listed}"
