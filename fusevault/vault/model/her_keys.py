"""Her file's key at an epoch, as her devices give it, and a member's state claiming another.

A member cannot re-key her file (only her devices do: ``derived_dek``); he can seal any epoch and
carry any wrapping of her older key he once held.  A member's state of her file under another key at
an epoch not below hers is his claim (attack round 45c (4), (5)): taken as it is, her node held her
older key at his epoch, her next commit signed it, and her rotation was undone.  Judged alike where
such a state arrives (vault/services/absorbing.py ``_claims_a_key``) and where the load takes the
store's current revision (vault/tree/loading.py ``_claims_judged``, attack round 50b (1)): the floor
below both.
"""

from __future__ import annotations

from typing import Any, Protocol

from fusevault.crypto.keys import MasterKey
from fusevault.vault.model.nodes import Node


class Keyed(Protocol):
    """What the judging asks of the tree (vault/tree/namespace.py's Tree answers)."""
    key: MasterKey
    sharing: Any  # vault/tree/guests.py's Guests, or None

    def covering(self, node: Node) -> list: ...


def derived_dek(tree: Keyed, node: Node, epoch: int) -> bytes:
    """The key her device gives the node at ``epoch`` (vault/files/rekeying.py ``rekey``): derived
    from her master key, the epoch and the recipients seen here, so none of those who hold only her
    older keys can make it."""
    return tree.key.rekey_dek(node.fid, epoch, _recipients(tree, node))


def _recipients(tree: Keyed, node: Node) -> list[str]:
    """Who the new key is sealed to, as the grants and recipients (a group's members) covering the
    node here: a device of hers that sees them otherwise (a member's removal not taken in yet)
    derives another key (``MasterKey.rekey_dek``)."""
    if tree.sharing is None:
        return []
    return [f"{r.grant.owner}:{r.grant.fid}:{r.grant.grantee}:{r.recipient}:{r.perm}"
            for g in tree.covering(node) for r in tree.sharing.reaches(g)]


def key_not_hers(tree: Keyed, node: Node, held: tuple[bytes | None, int], fresh: Node,
                 signer: str | None) -> bool:
    """Whether ``fresh``, a state of her ``node`` signed by ``signer``, carries a key other than the
    one held (``held``: her key, None where unknown, and its epoch) at an epoch not below the held
    one's, and not the key her device derives at that epoch for the recipients it sees: his claim, or
    her other device's re-key for recipients seen otherwise there (a share or member it removed, not
    heard of here yet).  Where her key at the held epoch is not known (at load), only a state above
    that epoch is judged: at it, her key may be one no derivation here gives (a first key, or one
    derived for the recipients seen at its re-key)."""
    dek, epoch = held
    if (signer in (None, fresh.owner) or node.owner != tree.key.user_id or fresh.epoch < epoch
            or fresh.dek == dek or (dek is None and fresh.epoch == epoch)):
        return False
    return derived_dek(tree, node, fresh.epoch) != fresh.dek


def claim_said(signer: str | None, epoch: int, held: int) -> str:
    """The alarm's words for a claim (``key_not_hers``) taken in at her epoch ``held``."""
    return (f"a state signed by {signer} claims key epoch {epoch} under a key not hers at it (held: "
            f"epoch {held}): taken in at the epoch held, and sealed again under a new key of hers")
