"""``fusevault check --repair`` (vault/services/repairing.py ``_rebuild_folder``), in-process: a folder
whose node document does not open, nor its key, is made again under a new key at the epoch its document
names; above the first epoch, with her proof of that key (``MasterKey.key_proof``), as her re-key gives
one.  With none, a member's honest state over the folder was judged by derivation alone (a random key is
never found so): his claim, said, and a new key of hers.  A key taken back from the damaged document
(its wrapping opens) is given none: nothing tells it from an older key of hers a member put there."""

from __future__ import annotations

import os
import secrets

import pytest

from fusevault.vault.model.her_keys import proven
from fusevault.vault.model.nodes import open_node_doc
from fusevault.vault.services.check_report import FileState, Report
from fusevault.vault.services.repairing import rebuild_folders


def _lost_folder(volume, epoch: int, dek: bytes = b"") -> FileState:
    """A folder of hers whose document does not open (its key too, unless ``dek``), at ``epoch``."""
    state = FileState(secrets.token_hex(16), "lost", "dir", "lost", volume.key.user_id, epoch=epoch, dek=dek)
    state.problems.append("its node document does not open")
    return state


async def _rebuilt(fs, state: FileState):
    volume = fs.volume
    report = Report(volume.key.user_id)
    report.files.append(state)
    assert await rebuild_folders(volume, report) == {state.fid}, state.repair
    node = volume.find(state.fid)
    doc = volume.store.get(state.fid)
    _, attrs = open_node_doc(doc, volume.key)
    return volume, node, attrs


@pytest.mark.parametrize("epoch", [1, 7])
async def test_a_rebuilt_folders_new_key_carries_her_proof(fs, epoch):
    state = _lost_folder(fs.volume, epoch)
    volume, node, attrs = await _rebuilt(fs, state)
    assert node.epoch == epoch and node.key_proof is not None, "a new key of hers with no proof of it"
    assert proven(volume.tree, node, epoch, node.dek, node.key_proof)
    assert attrs.get("key_proof") == node.key_proof, "her proof not in the stored document"


async def test_a_rebuilt_folders_first_key_or_recovered_key_gets_none(fs):
    _, first, attrs = await _rebuilt(fs, _lost_folder(fs.volume, 0))
    assert first.key_proof is None and "key_proof" not in attrs  # a first key: none looked for
    _, kept, attrs = await _rebuilt(fs, _lost_folder(fs.volume, 3, os.urandom(32)))
    assert kept.key_proof is None and "key_proof" not in attrs, "a proof made for a key taken back"
