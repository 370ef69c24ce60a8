"""Keys a member's state claims for her files, judged at unlock: taken in at her epoch and given a
new key of hers (the ledger's ``rolled``), as on arrival."""

from __future__ import annotations

from fusevault.vault.model.her_keys import claim_said, her_key_unknown, key_not_hers
from fusevault.vault.model.ledger import Ledger
from fusevault.vault.model.nodes import Node
from fusevault.vault.tree.authorship import Authorship, Foreign
from fusevault.vault.tree.namespace import Tree


def claims_judged(tree: Tree, gate: Authorship, ledger: Ledger, foreign: list[Foreign],
                  others: dict[str, dict], ours: set[str]) -> None:
    """Her files loaded as a member's state claiming a key at an epoch above the newest this device
    saw, not the one her device derives there (vault/model/her_keys.py ``key_not_hers``): judged as on
    arrival (vault/services/absorbing.py ``_claims_a_key``), said, taken in at her epoch and given a
    new key of hers at unlock (the ledger's ``rolled``: rotation.py ``resume``).  Taken as stored, her
    node held her older key he kept at his epoch, unsaid; her next commit signed it, and her pending
    unshare's request (at her epoch) was dropped as done: her rotation undone (attack round 50b (1):
    a claim stored while she was locked, or held back while unlocked, then her unlock or restart).
    Only files this device saw (their newest epoch known); at it, judged by the digest of her key
    there the ledger keeps (``keys``: a state at exactly her epoch under her older key, 51b (1)), not
    judged where it keeps none (a ledger from before it).  Remembered (the ledger's ``claimed``, saved)
    until her re-key commits: a lock, or his next commit failing that re-key, no longer lets his key
    stand as hers (51b (2), (3))."""
    for node, _, signer, guest in foreign:
        if (guest or node.fid in ours or node.fid not in ledger.fids or (doc := others.get(node.fid)) is None
                or tree.get(node.ino) is not node):
            continue
        held = ledger.epochs.get(node.fid, 0)
        if (node.owner == tree.key.user_id and signer not in (None, node.owner) and node.dek
                and node.epoch < held):
            # Below her epoch (his state stored while she was locked): taken back, as on arrival
            # (absorbing.py, "written under an older key"), unsaid (an honest write during a revoke
            # looks alike), and re-keyed at unlock.  Taken as stored, her next commit signed the key
            # her rotation had retired, for good (attack round 53a (1)).
            ledger.claim(node.fid, node.epoch, said=False)
            ledger.rolled.add(node.fid)
            continue
        known = (ledger.key_known(node.fid, held, node.dek)
                 if node.epoch == held and node.dek and node.fid not in ledger.claimed else None)
        if not key_not_hers(tree, node, (None, held), node, signer, known=known):
            continue
        if ledger.claim(node.fid, held):  # said once a claim, not at each state or unlock
            gate.deny(doc, claim_said(signer, node.epoch, held))
        node.epoch = held  # his contents, under the key he holds, sealed again under hers at unlock
        ledger.rolled.add(node.fid)


def claimed_keys_signed(tree: Tree, ledger: Ledger, pending: list[tuple[Node, list[tuple[str, bytes]]]],
                        others: dict[str, dict]) -> None:
    """Her own signed states of her files at the epoch whose key of hers this device saw, under a key
    her device did not derive there (her_keys.py ``her_key_unknown``): a key a member claimed, which
    her other device's commit signed before its re-key landed.  Taken as hers, this device kept its
    digest as her key and sealed her writes under the key the removed member holds, until that
    device's re-key arrived, for good if it never did (attack round 53a (6)).  Claimed here too
    (unsaid: her other device said it), and given a new key of hers at unlock (``rolled``)."""
    for node, _ in pending:
        if node.fid in others or node.fid in ledger.claimed or tree.get(node.ino) is not node:
            continue
        held = ledger.keys.get(node.fid)
        if held is None or held[0] != node.epoch:
            continue
        if her_key_unknown(tree, node, node.epoch, node.dek,
                           ledger.key_known(node.fid, node.epoch, node.dek)):
            ledger.claim(node.fid, node.epoch, said=False)
            ledger.rolled.add(node.fid)
