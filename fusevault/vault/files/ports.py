"""What the files floor asks of the tree beside it (vault/tree/namespace.py's Tree answers).

Declared here, as a Protocol, because tree/ and files/ are side by side:
neither imports the other, and vault/volume.py hands a Tree to Files.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from fusevault.crypto.keys import MasterKey
from fusevault.store import Store
from fusevault.vault.format.layout import Layout
from fusevault.vault.model.ledger import Ledger
from fusevault.vault.model.nodes import Node


class TreePort(Protocol):
    layout: Layout
    store: Store
    key: MasterKey
    sharing: Any  # vault/tree/guests.py's Guests, or None
    device: str | None
    ledger: Ledger | None
    lazy: set[int]
    top_epochs: dict[str, int]
    vouched: dict[str, tuple[str, str | None, str]]

    def nodes(self) -> list[Node]: ...

    def new_fh(self) -> int: ...

    def require(self, ino: int, write: bool = False) -> Node: ...

    def check(self, node: Node, write: bool = False) -> Node: ...

    def writable(self, node: Node) -> bool: ...

    def owned(self, node: Node) -> Node: ...

    def covering(self, node: Node) -> list: ...

    def get(self, ino: int | None) -> Node | None: ...

    def acl(self, node: Node) -> list[str] | None: ...

    def path_of(self, node: Node) -> bytes: ...

    def purge_if_unused(self, node: Node) -> None: ...

    async def commit_node(self, node: Node,
                          change: Callable[[], tuple[list[dict], list[tuple]] | None]) -> None: ...

    async def save_new(self, node: Node) -> None:
        """Commit a new file's document still waiting for its first commit."""

    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any: ...
