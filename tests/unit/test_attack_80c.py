"""Attack round 80c (2)-(4), the pull's checks of what a server sends at a record's or any id
(the scenes through real mounts and a pouchdb-server: tests/mount/test_attack_80c.py)."""

from __future__ import annotations

import pytest

from fusevault.encoding import b64e, is_text
from fusevault.sync.content_docs import INDEX_DIGITS, malformed, parse_record_id

FID, VID, OWNER = "a" * 32, "b" * 32, "c" * 32


def _record(tail: str, size: int) -> dict:
    return {"_id": f"rec-{FID}-{VID}-{tail}", "type": "Record", "owner": OWNER, "fid": FID,
            "data": b64e(bytes(size))}


@pytest.mark.parametrize("tail", ["1" + "0" * 30, "n" + "9" * 30, "9" * (INDEX_DIGITS + 1)])
def test_80c_3_a_record_index_past_what_sqlite_holds_is_malformed(tail: str) -> None:
    with pytest.raises(ValueError):
        parse_record_id(f"rec-{FID}-{VID}-{tail}")
    assert malformed(_record(tail, 10)) == "a document that is no record"


def test_80c_3_the_largest_index_a_file_has_is_taken() -> None:
    assert parse_record_id(f"rec-{FID}-{VID}-{'9' * INDEX_DIGITS}") == (FID, VID, int("9" * INDEX_DIGITS))


def test_80c_2_a_block_record_larger_than_any_written_is_malformed() -> None:
    assert malformed(_record("0", 1 << 17)) == "a record larger than any fusevault writes"
    assert malformed(_record("0", 1 << 16)) is None


@pytest.mark.parametrize("text, ok", [("ab\ud800cd", False), ("\udc00", False), ("héllo", True), ("", True),
                                      (None, False), (3, False)])
def test_80c_4_text_a_store_holds(text: object, ok: bool) -> None:
    assert is_text(text) is ok
