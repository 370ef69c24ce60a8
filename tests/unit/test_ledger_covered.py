"""The ledger's ``covered`` states and a commit's ``over`` (vault/model/ledger.py ``made_over``,
``cover``; vault/model/nodes.py ``Node.over``): a state another state was made over is an ancestor,
so put back it is a replay, though no older than its own device's newest (attack round 28b); a
writer's numbers never reach her lineage.  The mounts: tests/mount/test_trust_attack_round28b.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fusevault.crypto import aead
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64e
from fusevault.vault.model.ledger import Ledger
from fusevault.vault.model.nodes import MAX_OVER, Node, node_from_doc
from unit.test_ledger_closed import _open, _Tree

ALICE, BOB, FID = "a" * 32, "b" * 32, "f" * 32


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))
    return _open(tmp_path)


def _node(seq: tuple[str, int] | None, over: dict[str, int] | None = None) -> Node:
    node = Node(2, FID, ALICE, b"k" * 32, 0o100600, 0, 0)
    node.seq, node.over = seq, over
    return node


def test_a_commit_over_another_devices_state_covers_it_here_and_names_it(ledger: Ledger) -> None:
    ledger.record(FID, ("lap", 5), True)  # her laptop's state, taken here
    node = _node(("lap", 5))
    ledger.stamp([node])
    ledger.committed([node], [False])
    assert node.over == {"lap": 5} and node.seq == (ledger.device, ledger.counter)
    assert ledger.replayed(_Tree(), FID, ("lap", 5), "put back")  # the state this one went on top of
    assert not ledger.older(FID, ("lap", 6))  # a later laptop state: concurrent, never an alarm
    assert not ledger.newer(FID, ("lap", 5)) and ledger.newer(FID, ("lap", 6))


def test_a_taken_state_made_over_this_devices_own_state_makes_that_one_a_replay(ledger: Ledger) -> None:
    ledger.stamp([mine := _node(None)])
    ledger.committed([mine], [False])
    own = mine.seq
    ledger.record(FID, ("desk", 3), True)
    ledger.cover(FID, {own[0]: own[1]})  # the desktop's state, signed by her, made over this one's
    assert ledger.own_replay(FID, own)


def test_only_what_this_device_took_from_a_device_enters_the_lineage(ledger: Ledger) -> None:
    ledger.record(FID, ("lap", 5), True)
    ledger.record(FID, ("lap/" + BOB, 9), True)  # a writer's number, kept apart
    assert ledger.made_over(FID, None, ("lap", 9)) is None  # his raw seq naming her laptop: not taken
    assert ledger.made_over(FID, None, ("lap", 5)) == {"lap": 5}
    assert ledger.made_over(FID, None, ("lap/" + BOB, 9)) is None  # no device holds a "/"
    assert ledger.made_over(FID, {ledger.device: 4, "desk": 2}, (ledger.device, 7)) == {"desk": 2}
    full = {f"d{i}": 1 for i in range(MAX_OVER)}
    ledger.record(FID, ("new", 1), True)
    assert ledger.made_over(FID, full, ("new", 1)) == full  # bounded: the newest device is forgotten


def test_covered_states_are_saved(ledger: Ledger, tmp_path: Path) -> None:
    ledger.record(FID, ("desk", 3), True)
    ledger.cover(FID, {"lap": 5})
    ledger.save()
    assert _open(tmp_path).older(FID, ("lap", 5))


def _doc(signer: str, attrs: dict) -> dict:
    dek = b"k" * 32
    body = {"_id": FID, "_rev": "1-a", "type": "Node", "owner": ALICE, "epoch": 0,
            "enc": b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", FID)))}
    return sign_doc(signer, Ed25519PrivateKey.generate(), body)  # only who it names counts here


@pytest.mark.parametrize("signer, kept", [(ALICE, {"lap": 5}), (BOB, None)])
def test_over_counts_only_in_a_document_its_owner_signed(signer: str, kept: dict | None) -> None:
    attrs = {"mode": 0o100600, "uid": 0, "gid": 0, "rdev": 0, "size": 0, "atime": 0, "mtime": 0,
             "ctime": 0, "btime": 0, "links": [], "xattrs": {}, "target": None, "head": None,
             "manifest": None, "seq": ["desk", 3], "over": {"lap": 5, "desk": 2}}
    node, _ = node_from_doc(_doc(signer, attrs), b"k" * 32, attrs)
    assert node.over == kept  # her desk's own entry is left out: its seq says more
