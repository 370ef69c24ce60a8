"""A relay that cheats: it swaps every receiver's public key for its own.

A real cheating relay cannot run here, so this stands in for one: the real
relay, with one operation replaced.  Run as a script by tests/test_relay.py.
"""

from __future__ import annotations

import sys

import trio
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fusevault.encoding import b64e
from fusevault.relay import app
from fusevault.relay.state import RelayState
from fusevault.transfer.crypto import public_bytes

ATTACKER = public_bytes(X25519PrivateKey.generate())
honest_add = RelayState.add_requests


def swapping_add(self, sid, uid, requests):
    return honest_add(self, sid, uid, [{**r, "public_key": b64e(ATTACKER)} for r in requests])


RelayState.add_requests = swapping_add

if __name__ == "__main__":
    host, _, port = sys.argv[1].rpartition(":")
    trio.run(app.serve, sys.argv[2], host, int(port))
