"""vault/tree/inodes.py ``stand_on``: every way ``node.rev`` moves onto a revision whose state the node
did not take notes who signed the state it holds, so phantoms.py ``_signer_held`` never judges its
names by the document stored at that revision (attack round 74b (2): the ledger's refusal of a
replay, run through her desktop in tests/inprocess/test_attack_74b.py, here at the ledger: an older
``seq`` and a key epoch below one seen; arrivals.py ``reopen`` on a row that is no document; the load's
nodes of hers standing on a writer's revision: her leaf taken over his current one, a node rebuilt from
her own material over his refused document)."""

from __future__ import annotations

import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fusevault.crypto.keys import MasterKey
from fusevault.crypto.signing import sign_doc
from fusevault.store.unreadable import Unreadable
from fusevault.vault.model.alarms import Alarms
from fusevault.vault.model.ledger import Ledger, writer_seq
from fusevault.vault.model.nodes import Node
from fusevault.vault.tree import her_leaves, phantoms, rebuilding
from fusevault.vault.tree.arrivals import reopen, signed_state, stand_on

HERS, HIS, CAROL = "a" * 32, "b" * 32, "d" * 32
FID = "f" * 32


class _Store:
    """The stored row at the file's id: his document (signed by him, ``_signed_by_him``), or no document."""

    def __init__(self, rev: str, unreadable: bool = False) -> None:
        self.rev, self.unreadable = rev, unreadable

    def get(self, fid: str) -> dict:
        if self.unreadable:
            raise Unreadable("no document", self.rev)
        return {"_id": fid, "_rev": self.rev, "owner": HERS}


def _tree(store: _Store) -> SimpleNamespace:
    return SimpleNamespace(held_signers={}, store=store, sharing=None, get=lambda ino: None)


def _hers(rev: str) -> Node:
    node = Node(5, FID, HERS, b"k" * 32, stat.S_IFREG | 0o600, 0, 0)
    node.rev = rev
    return node


@pytest.fixture
def _signed_by_him(monkeypatch) -> None:
    """Any document stored at the id reads as his, signature checked (``judge``)."""
    monkeypatch.setattr(phantoms, "judge", lambda tree, doc, node: (doc, HIS))


@pytest.mark.parametrize("writers", [False, True], ids=["her_state", "a_writers_state"])
def test_a_row_that_is_no_document_carries_who_signed_the_state_held(writers: bool) -> None:
    """``reopen`` refuses a row that is no document (a store writer's) and stands on its revision: the
    names held are still judged by their signer, his when he signed them (read from the row, his state
    in her phantom folder was judged as hers: a name of his there kept as if she gave it)."""
    tree = _tree(_Store("3-junk", unreadable=True))
    node = _hers("2-state")
    signed_state(tree, node, HIS if writers else None)  # type: ignore[arg-type]
    assert reopen(tree, node)  # type: ignore[arg-type]
    assert node.rev == "3-junk"  # her next commit goes over the row
    assert phantoms._signer_held(tree, node) == (HIS if writers else HERS)  # type: ignore[arg-type]


def test_her_leaf_taken_over_his_current_revision_is_judged_as_hers(_signed_by_him) -> None:
    """The load takes her own leaf over a writer's current revision (``_take_her_leaf``), standing on
    his: her names are hers, not judged by his document stored there."""
    tree = _tree(_Store("4-his"))
    node = _hers("4-his")
    mine = _hers("3-hers")
    mine.size = 7
    assert her_leaves._take_her_leaf(tree, node, mine, []) == []  # type: ignore[arg-type]
    assert (node.rev, node.size) == ("4-his", 7)
    assert phantoms._signer_held(tree, node) == HERS  # type: ignore[arg-type]


def test_her_node_rebuilt_over_his_refused_document_is_judged_as_hers(_signed_by_him, monkeypatch) -> None:
    """A node of hers rebuilt from her own material over his refused document (``rebuilt_in_place``,
    ``keep_undeleted``: ``_as_seen``) stands on his revision: her names are hers."""
    tree = _tree(_Store("4-his"))
    node = _hers("4-his")  # as undeleting.rebuilt leaves it: her state, his revision
    ledger = SimpleNamespace(fids={}, epochs={}, rolled=set(), name_seen=lambda fid: None,
                             links_seen=lambda fid: [])
    monkeypatch.setattr(rebuilding.undeleting, "name_of", lambda *args: b"plan.txt")
    monkeypatch.setattr(rebuilding, "_where_it_was", lambda *args: [])
    rebuilding._as_seen(tree, None, ledger, {"_id": FID, "_rev": "4-his"}, node,  # type: ignore[arg-type]
                        None, [], None, False, [])
    assert node.rev == "4-his"
    assert phantoms._signer_held(tree, node) == HERS  # type: ignore[arg-type]


@pytest.mark.parametrize("how", ["older_seq", "older_key"])
def test_a_replay_the_ledger_refuses_is_stood_on_never_taken(
        _signed_by_him, tmp_path: Path, monkeypatch, how: str) -> None:
    """The ledger refuses a replay (``Ledger.admit``) and her next commit goes over it: the node stands
    on its revision, and the state held stays judged by who signed it (hers), never by the replay's
    signer stored there (round 74b (2): her name in her folder taken out, by his WRITE)."""
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))
    ledger = Ledger.open(MasterKey("c" * 32, b"m" * 32), tmp_path / "vault", "vault-id", Alarms())
    node = _hers("5-hers")
    tree = _tree(_Store("6-replay"))
    tree.find, tree.path_of = (lambda fid: node if fid == FID else None), (lambda held: b"plan.txt")
    tree.stand_on = lambda held, rev: stand_on(tree, held, rev)  # as ``Inodes.stand_on``
    if how == "older_seq":  # his older state of her file, opened here
        replay = sign_doc(HIS, Ed25519PrivateKey.generate(), {"_id": FID, "_rev": "6-replay", "type": "node",
                                                              "owner": HERS, "epoch": 0, "enc": ""})
        ledger.record(FID, writer_seq(("d" * 8, 5), replay, ledger.key.user_id), True)
        fresh = SimpleNamespace(fid=FID, owner=HERS, epoch=0, seq=("d" * 8, 3), over=None,
                                mode=stat.S_IFREG | 0o600)
    else:  # its owner's state under a key epoch below one taken here, not opened here
        replay = sign_doc(HERS, Ed25519PrivateKey.generate(), {"_id": FID, "_rev": "6-replay", "type": "node",
                                                               "owner": HERS, "epoch": 2, "enc": ""})
        ledger.record(FID, None, True)
        ledger.keyed(FID, 3)
        signed_state(tree, node, CAROL)  # type: ignore[arg-type]  # the state held: a writer's
        fresh = None
    assert not ledger.admit(tree, replay, fresh)  # type: ignore[arg-type]
    assert node.rev == "6-replay"  # her next commit goes over it
    assert phantoms._signer_held(tree, node) == (HERS if how == "older_seq" else CAROL)  # type: ignore[arg-type]


def test_control_a_state_taken_at_the_stored_revision_is_judged_by_its_document(_signed_by_him) -> None:
    """No note (a state taken and not noted, as before): the stored document at the revision held says."""
    tree = _tree(_Store("4-his"))
    assert phantoms._signer_held(tree, _hers("4-his")) == HIS  # type: ignore[arg-type]
