"""Attack round 73a, unit controls (the holes are in tests/inprocess/test_attack_73a.py).

Held: a file her laptop re-keyed while in folder A (its record: ``above`` = plan, A), moved since into
folder B, which she unshared from bob on that laptop too, is not sealed to bob by her desktop served
his old Share on B (``above`` lacks B: "her move since"): B's own folder key, re-keyed by that unshare,
has a record leaving bob out, so ``fill_missing`` finds the grant taken back (72c (1)'s ``left``)
whatever the order of the nodes.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fusevault.encoding import b64e
from fusevault.vault.format.layout import Layout
from fusevault.vault.model import sealed_for, sharing
from fusevault.vault.model.nodes import Node
from fusevault.vault.model.sharing import Grant
from fusevault.vault.tree.guests import Guests

ME, BOB, A, B, PLAN = (uuid.uuid4().hex for _ in range(5))


@pytest.mark.parametrize("plan_first", [True, False])
def test_73a_control_a_file_moved_into_a_folder_she_unshared_is_not_sealed_to_the_replayed_share(
        tmp_path: Path, plan_first: bool) -> None:
    bob_pub = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    users = {BOB: {"_id": BOB, "public_box": b64e(bob_pub)}}
    guests = Guests(ME, [Grant(ME, B, BOB, False, "READ")], {}, users)  # his old Share on B, served again
    folder_a = Node(2, A, ME, b"a" * 32, 0o040700, 0, 0)
    folder_b = Node(3, B, ME, b"b" * 32, 0o040700, 0, 0)
    folder_b.epoch, folder_b.sealed_for = 1, sealed_for.record(1, [], {}, [B])  # her unshare's re-key of B
    plan = Node(4, PLAN, ME, b"k" * 32, 0o100600, 0, 0)
    plan.epoch, plan.sealed_for = 1, sealed_for.record(1, [], {}, [PLAN, A])  # re-keyed while in A
    plan.links = [(3, b"plan.txt")]  # moved into B since
    nodes = {2: folder_a, 3: folder_b, 4: plan}
    keys = [(plan, plan.dek, 1), (folder_b, folder_b.dek, 1)]
    layout = Layout(tmp_path, "", {})
    guests.fill_missing(layout, nodes, keys if plan_first else keys[::-1])
    assert (sharing.doc_id(B, BOB), BOB) in guests.left
    assert not sharing.user_key_path(layout, BOB, ME, PLAN).exists()
    assert not sharing.user_key_path(layout, BOB, ME, B).exists()
