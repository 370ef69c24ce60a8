"""The numbers of a node document are checked where it is opened (vault/model/nodes.py).

Anyone holding a file's DEK (a recipient) can seal any attributes: a number the kernel or the format
cannot carry is a malformed document (CorruptData, which the load leaves out with an alarm), never an
OverflowError or a TypeError deep in a mount (tests/mount/test_trust_attack_round7.py, end to end)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from fusevault.crypto import aead
from fusevault.encoding import b64e
from fusevault.errors import CorruptData
from fusevault.vault.model.history import open_version_doc
from fusevault.vault.model.nodes import WRAPPING_MAX, attrs_plain, clear_epoch, node_from_doc, open_node_attrs

FID = "f" * 32
DEK = os.urandom(32)
GOOD = {"mode": stat.S_IFREG | 0o644, "uid": 1000, "gid": 1000, "rdev": 0, "size": 5,
        "atime": 1, "mtime": 2, "ctime": 3, "btime": 4, "links": [["b" * 32, "a.txt"]], "xattrs": {},
        "target": None, "head": None, "manifest": [0, 10], "trashed": None, "previous": None,
        "epoch": 3, "allocated": 5, "seq": ["d" * 16, 7]}


def _doc(attrs: dict) -> dict:
    sealed = aead.seal(DEK, json.dumps(attrs).encode(), aead.ad("node", FID))
    epoch = attrs.get("epoch", 0)  # as a writer makes it: the clear epoch is the sealed one
    return {"_id": FID, "_rev": "1-a", "type": "node", "owner": "a" * 32, "epoch": epoch, "enc": b64e(sealed)}


def _open(attrs: dict):
    doc = _doc(attrs)
    return node_from_doc(doc, DEK, open_node_attrs(doc, DEK))


def test_in_range_numbers_open_at_their_limits() -> None:
    limits = {"mode": 0o177777, "uid": 2**32 - 1, "gid": 2**32 - 1, "rdev": 2**32 - 1, "size": 2**63 - 1,
              "atime": -2**63, "mtime": 2**63 - 1, "epoch": 2**53 - 1, "allocated": 0,
              "manifest": [2**63 - 1, 2**63 - 1], "seq": ["d", 2**63 - 1]}
    node, links = _open({**GOOD, **limits})
    assert (node.uid, node.size, node.epoch, node.atime, node.seq) == (2**32 - 1, 2**63 - 1, 2**53 - 1,
                                                                      -2**63, ("d", 2**63 - 1))
    assert links == [("b" * 32, b"a.txt")]


def test_a_sealed_epoch_other_than_the_clear_one_is_refused() -> None:
    # Attack round 27a (1): a WRITE grantee's sealed epoch became the owner's node's.
    doc = _doc({**GOOD, "epoch": 7})
    doc["epoch"] = 0
    with pytest.raises(CorruptData, match="seals another key epoch"):
        node_from_doc(doc, DEK, open_node_attrs(doc, DEK))


@pytest.mark.parametrize("parent", ["virtual:shared", "virtual:groups", "virtual:shared:carol", "B" * 32,
                                    "b" * 31, "p" * 32, "", 7, None])
def test_a_name_in_anything_but_a_node_id_is_refused(parent) -> None:
    # Attack round 71a (4): a name in ``virtual:shared`` (a view folder's id) made a phantom there,
    # which took the view's inode after a lock and unlock.  Only ids fusevault makes are folders.
    with pytest.raises(CorruptData, match="no file id|malformed"):
        _open({**GOOD, "links": [["b" * 32, "a.txt"], [parent, "a.txt"]]})


@pytest.mark.parametrize("field,value", [
    ("mode", 2**40), ("mode", -1), ("mode", 0o200000), ("mode", True), ("mode", 1.5), ("mode", None),
    ("uid", 2**32), ("uid", -1), ("gid", 2**64), ("gid", "0"), ("rdev", 2**32), ("rdev", False),
    ("size", 2**63), ("size", -1), ("allocated", 2**63), ("allocated", "5"),
    ("atime", 2**63), ("mtime", -2**63 - 1), ("ctime", 1e30), ("btime", 2**100),
    ("epoch", 2**64), ("epoch", 2**53), ("epoch", -1), ("epoch", "1"),
    ("manifest", [0, 2**64]), ("manifest", [0, -1]), ("manifest", [1, 2, 3]), ("manifest", "x"),
    ("trashed", ["/a", 2**64]), ("trashed", ["/a"]), ("seq", ["d", 2**64]), ("seq", ["d", -1]),
    ("seq", "d"),
])
def test_a_number_out_of_range_or_of_another_type_is_malformed(field: str, value: object) -> None:
    with pytest.raises(CorruptData, match="malformed"):
        _open({**GOOD, field: value})


def test_attributes_that_are_not_an_object_are_malformed() -> None:
    for attrs in ([1, 2], "x", 5):
        doc = {**_doc({}), "enc": b64e(aead.seal(DEK, json.dumps(attrs).encode(), aead.ad("node", FID)))}
        with pytest.raises(CorruptData, match="malformed"):
            open_node_attrs(doc, DEK)


@pytest.mark.parametrize("epoch", [2**64, 2**53, -1, True, "0", None])
def test_a_clear_key_epoch_out_of_range_is_corrupt_data(epoch: object) -> None:
    with pytest.raises(CorruptData):
        clear_epoch({"_id": FID, "epoch": epoch})
    assert clear_epoch({"_id": FID}) == 0 and clear_epoch({"_id": FID, "epoch": 2**53 - 1}) == 2**53 - 1


VID = "v" * 32
PLAIN = {"file_entry_ts": 5, "file_location": "", "file_name": "a.txt", "file_iv": "", "size": 5, "mtime": 2,
         "author": "alice", "manifest": [0, 10], "parents": []}


def _version(plain: dict):
    sealed = aead.seal(DEK, json.dumps(plain).encode(), aead.ad("version", FID, VID))
    return open_version_doc({"_id": VID, "_rev": "1-a", "fid": FID, "enc": b64e(sealed)}, DEK)


@pytest.mark.parametrize("field,value", [
    ("size", 2**63), ("size", -1), ("size", True), ("mtime", 2**63), ("file_entry_ts", 1e300),
    ("file_entry_ts", "5"), ("manifest", [0, 2**64]), ("manifest", [0]),
])
def test_a_versions_number_out_of_range_is_malformed(field: str, value: object) -> None:
    assert _version(PLAIN).size == 5
    with pytest.raises(CorruptData, match="malformed"):
        _version({**PLAIN, field: value})


@pytest.mark.parametrize("author", [["x"], {"a": 1}, 5, None])
def test_a_versions_author_that_is_not_a_user_id_is_malformed(author: object) -> None:
    """History shows the author and keys a set by it: a writer's list there was an internal error
    (tests/mount/test_trust_attack_round9a.py)."""
    with pytest.raises(CorruptData, match="malformed"):
        _version({**PLAIN, "author": author})


# --- 52c (4): a node's free texts bounded as fusevault's commits make them (``nodes.check_texts``)

LINK = stat.S_IFLNK | 0o777


@pytest.mark.parametrize("attrs", [
    {"mode": LINK, "target": "t" * 4097},
    {"mode": LINK, "target": "\u00e9" * 2049},  # 4,098 bytes in 2,049 characters
    {"target": "x"},  # a target on a regular file: no commit of fusevault's makes one
    {"mode": stat.S_IFDIR | 0o755, "manifest": None, "target": "x"},
    {"head": "9" * 33}, {"head": "G" * 32}, {"head": "x" * 8_000_000},
    {"previous": "x" * 8_000_000}, {"previous": "../" + "a" * 29}, {"replaced_by": "a" * 31},
])
def test_a_text_longer_or_other_than_a_commit_makes_is_malformed(attrs: dict) -> None:
    with pytest.raises(CorruptData, match="malformed"):
        _open({**GOOD, **attrs})


def test_texts_as_commits_make_them_open() -> None:
    node, _ = _open({**GOOD, "mode": LINK, "manifest": None, "target": "/" + "t" * 4095})
    assert node.target == b"/" + b"t" * 4095
    node, _ = _open({**GOOD, "head": "9" * 32, "previous": "a" * 32, "replaced_by": "b" * 32})
    assert (node.head, node.previous, node.replaced_by) == ("9" * 32, "a" * 32, "b" * 32)


# --- 51b (4)-(6)'s fix: her key proof (``key_proof``), anyone's input, bounded to the shape she makes

@pytest.mark.parametrize("proof", [
    "a" * 33, "a" * 31, "A" * 32, "g" * 32, "x" * 8_000_000, "\u00e9" * 32, 7, ["a" * 32], {"a": 1}, True,
])
def test_a_key_proof_of_another_shape_than_hers_is_malformed(proof: object) -> None:
    with pytest.raises(CorruptData, match="malformed"):
        _open({**GOOD, "key_proof": proof})


def test_a_key_proof_of_her_shape_opens_and_is_sealed_again_as_it_came() -> None:
    """Carried over unchanged: what a member's commit (or hers) under that key writes back."""
    node, _ = _open({**GOOD, "key_proof": "0123456789abcdef" * 2})
    assert node.key_proof == "0123456789abcdef" * 2
    assert attrs_plain(node, lambda ino: "b" * 32)["key_proof"] == node.key_proof
    node, _ = _open(GOOD)
    assert node.key_proof is None and "key_proof" not in attrs_plain(node, lambda ino: "b" * 32)


@pytest.mark.parametrize("field", ["en_file_dek", "owner_dek"])
@pytest.mark.parametrize("value", ["A" * (WRAPPING_MAX + 1), 7, None, ["A" * 80]])
def test_a_wrapping_of_the_key_not_a_text_of_its_size_is_malformed(field: str, value: object) -> None:
    """A clear wrapping of the file's key (``wrapping_ok``): a member's 8 MB one was carried and signed
    again by every member's commit (attack round 53c (2))."""
    doc = {**_doc(GOOD), field: value}
    with pytest.raises(CorruptData, match="key wrapping"):
        node_from_doc(doc, DEK, open_node_attrs(doc, DEK))


def test_wrappings_of_fusevaults_sizes_open() -> None:
    """Control: fusevault's own (80 and 124 characters), and the bound itself."""
    for fields in ({"en_file_dek": "A" * 80}, {"owner_dek": "B" * 124}, {"en_file_dek": "C" * WRAPPING_MAX}):
        doc = {**_doc(GOOD), **fields}
        assert node_from_doc(doc, DEK, open_node_attrs(doc, DEK))[0].fid == FID
