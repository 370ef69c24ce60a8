"""Attack round 54b (1), where the thread was not abandoned: ``link push`` / ``link create`` of a share
(links/owner.py ``_publish``) ran its uploads in a thread no cancel abandons, under the links' lock; a
link store holding an answer's head held both as long as it liked (the scene and its cause:
tests/unit/test_attack_54b.py).  Fixed: ``_publish`` goes through ``_network`` (abandoned on a cancel),
and its vault reads stop once it is abandoned (``_vault_blocks``)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import trio
from holding_link_store import Held, holding_link_store, let_go_before_the_cancel_ended

from fusevault.links.owner import Links
from fusevault.vault.services.placing import NoKernel
from inprocess.conftest import make


@contextmanager
def head_holding_link_store() -> Iterator[Held]:
    """A link store that makes items (``POST /items``) at once and answers every other request with
    a head trickled a byte every 0.2 s until ``stop`` is set: (url, asked, stop)."""
    def hold(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while not stop.wait(0.2):
            conn.sendall(b"X")  # one endless header line, each byte well within httpx's timeout

    with holding_link_store(hold) as held:
        yield held


async def test_a_link_store_holding_a_push_does_not_hold_its_cancel_nor_the_links_lock(fs) -> None:
    """The push is cancelled (an unmount) while the store holds a block's answer: the cancel ends at
    once, not when the store lets go (a timer lets go after 10 s so that a wait ends): until then the
    links' lock was held, every other link command of hers waiting."""
    await make(fs.ops, b"diary.txt", b"her diary")
    links = Links(fs.volume, NoKernel())
    with head_holding_link_store() as (url, asked, stop):
        async def push(nursery: trio.Nursery) -> None:
            nursery.start_soon(links.create, b"diary.txt", url, False, None)  # a block's upload held

        let_go = await let_go_before_the_cancel_ended(push, asked, stop)
    assert not let_go, "the cancel waited for the link store to let go of the push (and the links' lock)"
