"""Signatures over numbers survive a CouchDB-protocol server (attack round 9b, hole 2).

pouchdb-server and CouchDB hold numbers as JavaScript doubles: a whole-valued float
comes back as an integer (``2.0`` as ``2``).  The canonical form writes such a float as
the integer, and a signature made before that (over ``2.0``) still verifies.
"""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fusevault.crypto.signing import canonical, canonical_before_9b, sign_doc, verify_doc
from fusevault.errors import Forged

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
SIGNER = "a" * 32
BODY = {"_id": "u" * 32, "type": "user", "settle_seconds": 2.0, "nested": {"xs": [1.0, 2.5, -0.0]}, "n": 3}
# Signed by the code of main at 9b2364a (before round 9b): over "settle_seconds":2.0, [1.0,2.5,-0.0].
SIGNED_BEFORE = {**BODY, "sig": {"by": SIGNER, "ed25519": "sFE2KhgJ99uAsYaTKclkavSrf8BAwlfMHf0GoMJnDfE+2J"
                                                         "Nozpc44UFE/v0doalTeW7Gwo8YzizGAV5SgyHEDA=="}}


def _through_javascript(doc: dict) -> dict:
    """What a CouchDB-protocol server sends back: every whole-valued number as an integer."""
    def js(value: object) -> object:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, dict):
            return {k: js(v) for k, v in value.items()}
        if isinstance(value, list):
            return [js(v) for v in value]
        return value
    return json.loads(json.dumps(js(doc)))


def test_the_canonical_form_writes_a_whole_valued_float_as_the_integer() -> None:
    """Known answer: the bytes a signature covers, at any depth of the document."""
    assert canonical({**BODY, "_rev": "3-x", "sig": {}}) == (
        b'{"_id":"uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu","n":3,"nested":{"xs":[1,2.5,0]},'
        b'"settle_seconds":2,"type":"user"}')
    assert canonical_before_9b(BODY) == (
        b'{"_id":"uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu","n":3,"nested":{"xs":[1.0,2.5,-0.0]},'
        b'"settle_seconds":2.0,"type":"user"}')
    assert canonical({"_id": "x", "a": 2.0}) == canonical({"_id": "x", "a": 2})
    assert canonical({"_id": "x", "a": 0.1, "b": 1e-07, "c": 2.5e15}) == \
        b'{"_id":"x","a":0.1,"b":1e-07,"c":2500000000000000}'


def test_a_document_signed_with_a_whole_float_verifies_after_a_couchdb_server() -> None:
    doc = sign_doc(SIGNER, KEY, BODY)
    back = _through_javascript(doc)
    assert back["settle_seconds"] == 2 and isinstance(back["settle_seconds"], int)
    assert verify_doc(KEY.public_key(), back) == SIGNER
    assert verify_doc(KEY.public_key(), doc) == SIGNER
    with pytest.raises(Forged):  # the value itself is still covered
        verify_doc(KEY.public_key(), {**back, "settle_seconds": 3})


def test_fractional_floats_round_trip_through_javascript_and_verify() -> None:
    """Python and JavaScript both print the shortest repr that parses back to the same double;
    the value is parsed again before it is put in canonical form, so its spelling does not matter."""
    values = [0.1, 2.5, 1 / 3, 1e-7, 123456.789, -0.5, 5e-324, 2**51 + 0.5]
    doc = sign_doc(SIGNER, KEY, {"_id": "x", "values": values})
    js_spelling = json.dumps(doc).replace("1e-07", "1e-7").replace("5e-324", "5E-324")
    assert verify_doc(KEY.public_key(), json.loads(js_spelling)) == SIGNER


def test_a_document_signed_before_round_9b_over_2_0_still_verifies() -> None:
    """No existing signature breaks: the signature over the old form (``2.0``) verifies, and is
    remembered in the verified cache by the digest of the message it covers."""
    assert verify_doc(KEY.public_key(), SIGNED_BEFORE) == SIGNER
    with pytest.raises(Forged):
        verify_doc(KEY.public_key(), {**SIGNED_BEFORE, "settle_seconds": 2.5})
    cache: set[bytes] = set()
    assert verify_doc(KEY.public_key(), SIGNED_BEFORE, cache) == SIGNER
    assert len(cache) == 1
    assert verify_doc(KEY.public_key(), SIGNED_BEFORE, cache) == SIGNER  # found: not checked again
    assert len(cache) == 1
    with pytest.raises(Forged):  # a changed body is a new digest, checked afresh
        verify_doc(KEY.public_key(), {**SIGNED_BEFORE, "n": 4}, cache)


def test_a_whole_float_a_couchdb_server_would_print_rounded_is_not_signed() -> None:
    with pytest.raises(ValueError):
        sign_doc(SIGNER, KEY, {"_id": "x", "big": [float(2**60)]})
    assert verify_doc(KEY.public_key(), sign_doc(SIGNER, KEY, {"_id": "x", "big": float(2**53 - 1)}))
