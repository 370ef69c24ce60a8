"""Her file's key at an epoch, as her devices give it, and a member's state claiming another.

A member cannot re-key her file (only her devices do: ``derived_dek``); he can seal any epoch and
carry any wrapping of her older key he once held.  A member's state of her file under another key at
an epoch not below hers is his claim (attack round 45c (4), (5)): taken as it is, her node held her
older key at his epoch, her next commit signed it, and her rotation was undone.  Judged alike where
such a state arrives (vault/services/absorbing.py ``_claims_a_key``) and where the load takes the
store's current revision (vault/tree/key_claims.py ``claims_judged``, attack round 50b (1)): the floor
below both.

Her key at an epoch is known by her proof of it (``MasterKey.key_proof``: her re-key writes it into
the node with the key, a member's commit under that key carries it over), whatever the recipients her
re-key saw; a key with none (one from before proofs, her re-key's state sealed again by a member's
older client) by her derivation, under the recipient lists her re-key may have seen.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any, Protocol

from fusevault.crypto.keys import MasterKey
from fusevault.vault.model.nodes import Node
from fusevault.vault.model.sharing import doc_id


class Keyed(Protocol):
    """What the judging asks of the tree (vault/tree/namespace.py's Tree answers)."""
    key: MasterKey
    sharing: Any  # vault/tree/guests.py's Guests, or None

    def covering(self, node: Node) -> list: ...


def derived_dek(tree: Keyed, node: Node, epoch: int) -> bytes:
    """The key her device gives the node at ``epoch`` (vault/files/rekeying.py ``rekey``): derived
    from her master key, the epoch and the recipients seen here, so none of those who hold only her
    older keys can make it."""
    return tree.key.rekey_dek(node.fid, epoch, recipients(tree, node))


# ``her_key_at``: how many recipient lists a key is derived for, at most, to find the one her device
# re-keyed for (the ones seen here, then those less one grant or one recipient): a derivation each.
RECIPIENT_LISTS = 64


def _reached(tree: Keyed, node: Node) -> list[tuple[object, str]]:
    """Each grant covering the node here, with each recipient it reaches, as the derivation names it;
    never one her newer re-key took back (``Guests.left``: a grant her other device took back, served
    again here): no key of hers is made for it, nor says it a recipient (attack round 74a (1)), and the
    key is the one her other device derived without it."""
    if tree.sharing is None:
        return []
    left = tree.sharing.left
    return [(g, f"{r.grant.owner}:{r.grant.fid}:{r.grant.grantee}:{r.recipient}:{r.perm}")
            for g in tree.covering(node) for r in tree.sharing.reaches(g)
            if not left or (doc_id(g.fid, g.grantee), r.recipient) not in left]


def recipients(tree: Keyed, node: Node) -> list[str]:
    """Who the new key is sealed to, as the grants and recipients (a group's members) covering the
    node here: a device of hers that sees them otherwise (a member's removal not taken in yet)
    derives another key (``MasterKey.rekey_dek``)."""
    return [each for _, each in _reached(tree, node)]


def _recipient_lists(tree: Keyed, node: Node) -> Iterator[list[str]]:
    """The recipients seen here, then those less one grant, then less one recipient: what her device
    saw at its re-key when one grant or one member was added since (a share made again after her
    unshare, a member added to a group), at most ``RECIPIENT_LISTS``."""
    reached = _reached(tree, node)
    grants = list(dict.fromkeys(g for g, _ in reached))
    lists = itertools.chain(
        [[each for _, each in reached]],
        ([each for g, each in reached if g != left] for left in grants),
        ([each for i, (_, each) in enumerate(reached) if i != left] for left in range(len(reached))))
    return itertools.islice(lists, RECIPIENT_LISTS)


def proven(tree: Keyed, node: Node, epoch: int, dek: bytes, proof: str | None) -> bool:
    """Whether ``proof`` (a state's, anyone's input) is her proof that her device gave the node ``dek``
    at ``epoch`` (vault/files/rekeying.py ``rekey``): bound to the file, the epoch and the key, so her
    proof of a key a member holds (her older one, another file's) proves nothing else."""
    return proof is not None and tree.key.proves_key(node.fid, epoch, dek, proof)


def her_key_at(tree: Keyed, node: Node, epoch: int, dek: bytes, proof: str | None = None) -> bool:
    """Whether ``dek`` is a key her device gave the node at ``epoch``: one ``proof`` proves hers there
    (``proven``), whatever the recipients her re-key saw; else one she derived for it there, as only
    her master key derives it and the epoch is part of it (``MasterKey.rekey_dek``), so a key of hers
    from another epoch (one a member kept) never passes.  Without a proof (a key from before proofs),
    looked for under the recipient lists her re-key may have seen (``_recipient_lists``): more changes
    of grants since her re-key than one, a change of a share's permission, a member past the 62nd of
    a big group added since, are not found (her key then taken for a claim: a false alarm, and a new
    key of hers; attack round 51b (4), (6), lifted by the proof)."""
    return proven(tree, node, epoch, dek, proof) or any(
        tree.key.rekey_dek(node.fid, epoch, recipients) == dek for recipients in _recipient_lists(tree, node))


def key_not_hers(tree: Keyed, node: Node, held: tuple[bytes | None, int], fresh: Node,
                 signer: str | None, *, seen_here: bool = False, known: bool | None = None) -> bool:
    """Whether ``fresh``, a state of her ``node`` signed by ``signer``, carries a key other than the
    one held (``held``: her key, None where unknown, and its epoch) at an epoch not below the held
    one's, and not a key of hers at its epoch: his claim.  Above the held epoch, a key of hers is one
    her proof proves there (the state's ``key_proof``: ``proven``), or one ``her_key_at`` finds;
    ``seen_here``: one proven, or the one derived for the recipients seen here (43c (8)'s hold, in
    vault/services/absorbing.py, waits for her re-key's change of grants to arrive before it takes an
    unproven key in).  At the held epoch, only the one derived for the recipients seen here, proven or
    not: one epoch has one key of hers for what one device sees, and another key of hers there is her
    other device's re-key for other recipients at once (one she removed may hold it: judged a claim,
    her file re-keyed, as before proofs).  Where her key at the held epoch is not known (at load), only
    a state above that epoch is judged: at it, her key may be one no derivation here gives (a first
    key, or one derived for the recipients seen at its re-key), unless ``known`` says whether
    ``fresh``'s key is the one this device saw hers have there (the ledger's digest:
    vault/model/ledger.py ``keys``, attack round 51b (1)).  A key held that a member claimed (the
    ledger's ``claimed``) is no key of hers: given as unknown (None), so his later states under it are
    judged too (51b (3))."""
    dek, epoch = held
    if signer in (None, fresh.owner) or node.owner != tree.key.user_id or fresh.epoch < epoch:
        return False
    if fresh.dek == dek:
        # The key held, at an epoch above the held one: never her re-key, which always gives a new key
        # (``derived_dek``); taken as it was, his older key walked up to her epoch unsaid (52a (1), (4)).
        return fresh.epoch > epoch
    if dek is None and fresh.epoch == epoch:
        return known is False
    if fresh.epoch == epoch:
        return derived_dek(tree, node, fresh.epoch) != fresh.dek
    if proven(tree, node, fresh.epoch, fresh.dek, fresh.key_proof):
        return False  # her re-key's key, whatever its recipients were (attack round 51b (4), (6))
    if seen_here:
        return derived_dek(tree, node, fresh.epoch) != fresh.dek
    return not her_key_at(tree, node, fresh.epoch, fresh.dek)


def claim_said(signer: str | None, epoch: int, held: int) -> str:
    """The alarm's words for a claim (``key_not_hers``) taken in at her epoch ``held``."""
    return (f"a state signed by {signer} claims key epoch {epoch} under a key not hers at it (held: "
            f"epoch {held}): taken in at the epoch held, and sealed again under a new key of hers")


def her_key_unknown(tree: Keyed, node: Node, epoch: int, dek: bytes, known: bool | None) -> bool:
    """Whether her own signed state of ``node`` carries ``dek`` at ``epoch``, the epoch whose key of hers
    this device saw (``known`` False: the ledger's digest there is another key's), a key her device did
    not derive at that epoch: a key a member claimed, which her other device's commit signed before its
    re-key landed (attack round 53a (6)).  Her two devices' re-keys at one epoch for the recipients
    each saw give keys ``her_key_at`` finds."""
    return known is False and bool(dek) and not her_key_at(tree, node, epoch, dek)
