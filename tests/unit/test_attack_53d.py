"""Attack round 53d, unit level: the answer cap of fusevault/http_answers.py (52t (3)'s fix).

See tests/inprocess/test_attack_53d.py's docstring for the round's whole report (holes, what held).

Hole 1 (medium: whoever runs the link store, the relay or a sync peer, or is on their path without
  TLS, makes the client allocate GiBs in one step, whatever the cap): the cap is counted after httpx
  has decoded a whole network read, and a read of a few KiB stacked in several ``Content-Encoding``
  layers (``gzip, gzip``) unpacks to GiBs in that one step.
  Attack: the server answers any route with ``Content-Encoding: gzip, gzip`` and a body of 1.8 KiB
    (1 GiB of zeros gzipped twice; 256 MiB here: a few hundred bytes).  httpx (0.29,
    ``_decoders.MultiDecoder``) passes each raw read (up to 64 KiB) through every layer, each a
    ``zlib.decompressobj().decompress(data)`` with no ``max_length``: the whole 256 MiB (or GiB) is
    one bytes object before ``capped_request`` counts one byte of it.
  Seen: ``test_a_twice_gzipped_answer_is_refused_before_it_is_unpacked`` (run, fails): for a cap of
    64 KiB, ``capped_request`` raises AnswerTooLarge (as meant) but the traced peak is 557 MiB
    (tracemalloc) for 590 bytes sent.  Run once by hand through the mount's own call
    (``LinkClient.versions``, JSON_CAP 65 MiB) with 1 GiB gzipped twice: 1,827 bytes sent, the
    process's peak (ru_maxrss) grew by 2,048 MiB, then "answered too much" (RelayUnavailable).
  Cause: fusevault/http_answers.py:38 ``for part in streamed.iter_bytes()`` (decoded parts, each the
    whole decoding of one read, counted at :39 after it exists); the module's docstring says "a gzip
    of a few KiB can unpack to GiBs" but only one layer's reads are bounded (about 1,032 times 64 KiB,
    66 MB); two layers multiply the ratios (a million), three more again.
  Impact: "unbounded memory from hostile input", the 52t (3) hole again through a header: the mount
    (her whole drive) killed by the kernel's OOM at its start and every minute (drop boxes), ``link
    get`` / ``receive`` likewise; a sync peer is capped at 256 MiB of JSON, so there the spike is per
    read, unbounded too.  Not run at GiBs here (the test machine is shared); 256 MiB shows the cap
    passed 4,096 times.
  Fix (suggested): ask ``Accept-Encoding: identity`` and refuse an answer whose ``Content-Encoding``
    is not identity (none of the routes compresses), before reading; or read ``iter_raw()`` and
    decode it with one's own ``zlib.decompressobj`` using ``max_length`` (the cap left) per layer.

Hole 3 (medium-low: the same server still takes the mount to ~1.5 GB each minute, within the cap):
  the cap counts the answer's bytes, and a JSON answer within it parses to ~24 times as much.
  Attack: the link store answers her drop box's ``GET /items/ID/versions`` with 64 MiB (under
    links/client.py JSON_CAP, 65 MiB) of ``{"versions": [{}, {}, ...]}``: 22 million empty objects.
  Seen: ``test_a_json_answer_within_the_cap_does_not_take_many_times_its_size`` (run, fails) at 8 MiB
    (for a quick test): ``LinkClient.versions`` raises CorruptData (as meant), its traced peak ~26
    times the answer (209 MiB for 8 MiB; the control, one 8 MiB version, stays within 6 times).
    At the cap, measured once by hand (``loads_untrusted`` of the 64 MiB answer): the process grew
    by 1,541 MiB (ru_maxrss), 9.7 s of CPU.  The mount asks at its start and every minute (drop
    boxes); ``link get`` (``latest``) and the relay's JSON routes (32 MiB: ~770 MB by the same
    ratio, not run) likewise; a sync peer's JSON is capped at 256 MiB (JSON_LIMIT, older than 52t):
    ~6 GB by the same ratio, not run.
  Cause: fusevault/links/client.py:21 (one JSON_CAP for every route, the largest honest manifest),
    then ``loads_untrusted`` (encoding.py:162) builds every object before ``_a_version`` looks at
    one; http_answers.py bounds bytes only.  52t (3) was "3.2 GB for a 1.5 GiB answer": half of
    that remains reachable with an answer the cap lets in.
  Impact: "unbounded-ish memory from hostile input": a mount on a small machine (1-2 GB: a
    Raspberry Pi, a small VPS) still killed at each start and every minute; 10 s of CPU a minute.
  Fix (suggested): a count of JSON values (or an object-hook budget) in ``loads_untrusted`` scaled to
    the bytes, e.g. refuse more than len/64 containers; or per-route caps (the list of versions
    could be asked as ids only, each version fetched alone).

Hole 4 (low: a stranger's drop still passes for the view ``shared`` to the eye): the root's kept
  names are kept byte for byte, so a drop (or an import into the root) named like one, with a
  look-alike letter or an invisible character, takes the root as is.
  Attack: a stranger with her root drop-box link drops ``\u0455hared/bob/contract.txt`` (Cyrillic
    dze), ``shared\u200b/...`` (a zero-width space) or ``shared /...``; she has a real share from bob.
  Seen: ``test_a_drop_named_like_a_kept_root_name_takes_another_name`` (run, fails): links/owner.py
    ``unique_name(_taken_in(root), name)`` gives each back unchanged (``shared`` itself goes to
    ``shared (2)``); so does ``names.away_from_reserved`` for an import.  ``ls`` (GNU, C.UTF-8, with
    its default quoting) prints ``shared``, ``shared``, ``shared`` for the real view and two of them.
  Cause: vault/model/names.py ``reserved_at_root`` (``first in RESERVED_AT_ROOT``, exact bytes).
  Impact: 52t (2)'s "a stranger's contract read as bob's" by eye (``fusevault shares`` no longer
    confirms it, as in 52t (2), unless bob does share a file of that name); two ``shared`` folders.
  Fix (suggested): compare a skeleton for drops and imports into the root: NFKC, casefold, invisible
    (Cf) characters, trailing dots and spaces removed, Unicode confusables mapped (or refuse names
    with non-ASCII look-alikes of the kept ones); such a name goes to ``NAME (2)`` too.

What held here: ``Content-Length`` larger than the cap refused unread; a chunked or closing body cut
at the cap; one gzip layer (each read unpacks to at most ~66 MB, then counted): the control
``test_one_gzip_layer_is_unpacked_a_read_at_a_time``; an honest-shaped JSON answer (one 8 MiB version)
reads within 3 times its size: ``test_an_honest_shaped_answer_of_that_size_takes_a_few_times_its_size``.
"""

from __future__ import annotations

import json
import tracemalloc
import zlib
from collections.abc import Iterator

import httpx
import pytest

from fusevault.errors import CorruptData
from fusevault.http_answers import AnswerTooLarge, capped_request
from fusevault.links.client import LinkClient
from fusevault.links.owner import _taken_in, unique_name
from fusevault.vault.model import names
from fusevault.vault.model.nodes import ROOT_INODE
from unit.test_http_answers import answering

UNPACKED = 256 * 1024 * 1024
CAP = 64 * 1024


def _gzip(chunks: Iterator[bytes]) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    return b"".join(packer.compress(c) for c in chunks) + packer.flush()


def _zeros(total: int) -> Iterator[bytes]:
    piece = b"\0" * (1 << 20)
    for _ in range(total // len(piece)):
        yield piece


def _peak_of_get(head: bytes, body: bytes, cap: int = CAP,
                 refused: type[Exception] = AnswerTooLarge) -> int:
    """The traced peak (bytes) of one capped GET of ``body`` sent after ``head``, ``refused``."""
    with answering(head + b"Content-Length: %d\r\n\r\n" % len(body), iter([body])) as url:
        with httpx.Client(timeout=30) as client:
            tracemalloc.start()
            try:
                with pytest.raises(refused):
                    capped_request(client, "GET", f"{url}/items/x/versions", cap)
                return tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()


def test_a_twice_gzipped_answer_is_refused_before_it_is_unpacked() -> None:
    bomb = _gzip(iter([_gzip(_zeros(UNPACKED))]))
    assert len(bomb) < 4096  # what travels
    peak = _peak_of_get(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip, gzip\r\n", bomb,
                        refused=httpx.DecodingError)
    print(f"{len(bomb)} bytes sent, cap {CAP}: peak {peak >> 20} MiB")
    assert peak < 16 * 1024 * 1024, f"peak {peak >> 20} MiB for a cap of {CAP >> 10} KiB"


def test_one_gzip_layer_is_unpacked_a_read_at_a_time() -> None:
    """Control: one layer of the same size is counted read by read (each read unpacks to <= ~66 MB)."""
    bomb = _gzip(_zeros(UNPACKED))
    peak = _peak_of_get(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n", bomb)
    print(f"{len(bomb)} bytes sent, cap {CAP}: peak {peak >> 20} MiB")
    assert peak < 160 * 1024 * 1024, f"peak {peak >> 20} MiB"


def test_the_layers_in_two_headers_are_refused_alike() -> None:
    bomb = _gzip(iter([_gzip(_zeros(UNPACKED))]))
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Encoding: gzip\r\n"
    assert _peak_of_get(head, bomb, refused=httpx.DecodingError) < 16 * 1024 * 1024


def _versions_peak(body: bytes) -> int:
    """The traced peak of ``LinkClient.versions`` reading ``body`` (its error, if any, passed)."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    with answering(head, iter([body])) as url, LinkClient(url) as links:
        tracemalloc.start()
        try:
            try:
                links.versions("item", b"k" * 32)
            except CorruptData:
                pass  # the many empty objects: malformed, said
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()


ANSWER = 8 << 20


def test_a_json_answer_within_the_cap_does_not_take_many_times_its_size() -> None:
    count = ANSWER // 3
    peak = _versions_peak(b'{"versions": [' + b"{}," * (count - 1) + b"{}]}")
    print(f"{ANSWER >> 20} MiB of empty objects: peak {peak >> 20} MiB")
    assert peak < 6 * ANSWER, f"{ANSWER >> 20} MiB answer: peak {peak >> 20} MiB"


def test_an_honest_shaped_answer_of_that_size_takes_a_few_times_its_size() -> None:
    """Control: one version holding 8 MiB (a sealed manifest's size) reads within the same bound."""
    one = b'{"versions": [{"id": "v1", "deleted": false, "manifest": "%s"}]}' % (b"A" * ANSWER)
    peak = _versions_peak(one)
    print(f"one version of {ANSWER >> 20} MiB: peak {peak >> 20} MiB")
    assert peak < 6 * ANSWER, f"peak {peak >> 20} MiB"


@pytest.mark.parametrize("one", [b"[]", b'"ab"', b"1.5", b'{"a":{"b":"c"}}', b'{"%d":0}',
                                 b'{"id":"v","deleted":true}'])
def test_a_list_of_versions_crowded_with_small_values_is_refused_unparsed(one: bytes) -> None:
    """Any shape of many small values, not only ``{}``: refused before parsing (its peak: the answer
    read, a few times its size), never parsed to many times it."""
    items = b",".join(one.replace(b"%d", b"%d" % i) for i in range(ANSWER // (len(one) + 1)))
    peak = _versions_peak(b'{"versions": [' + items + b"]}")
    assert peak < 6 * ANSWER, f"peak {peak >> 20} MiB"


def test_an_honest_list_of_many_deleted_versions_is_read() -> None:
    """Control: the link store's own answer (relay/items.py ``_full``, as Starlette writes it) of
    thousands of collected versions, each its smallest (deleted: no manifest, no blocks)."""
    stamp = "2026-12-06T18:31:02.123456Z"
    versions = [{"id": f"{i:024d}", "created_at": stamp, "updated_at": stamp, "deleted": True, "public": None,
                 "protected": None, "private_enc": None, "blocks": []} for i in range(5000)]
    body = json.dumps({"versions": versions}, separators=(",", ":")).encode()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    with answering(head, iter([body])) as url, LinkClient(url) as links:
        assert len(links.versions("item", b"k" * 32)) == 5000


# Each printed as the kept name by GNU ls (C.UTF-8) and file managers: a Cyrillic dze, a zero-width
# space, a trailing space, a Latin script g, a Greek omicron.
LOOK_ALIKES = ["\u0455hared", "shared\u200b", "shared ", "\u0261roups", ".versi\u03bfns"]


def test_a_drop_named_like_a_kept_root_name_takes_another_name() -> None:
    root = type("Root", (), {"ino": ROOT_INODE, "children": {b"shared": 7, b"notes.txt": 8}})()
    kept = [name for name in LOOK_ALIKES
            if unique_name(_taken_in(root), name.encode()) == name.encode()
            or names.away_from_reserved(name.encode() + b"/bob/x").startswith(name.encode() + b"/")]
    assert not kept, f"taken as is at her root: {kept!r}"


def test_the_kept_names_themselves_take_another_name() -> None:
    """Control: the exact names go to ``NAME (2)``."""
    root = type("Root", (), {"ino": ROOT_INODE, "children": {b"notes.txt": 8}})()
    for name in names.RESERVED_AT_ROOT:
        assert unique_name(_taken_in(root), name) == name + b" (2)"
        assert names.away_from_reserved(name + b"/x") == name + b" (2)/x"


@pytest.mark.parametrize("name", [
    "\uff53\uff48\uff41\uff52\uff45\uff44", "SHARED", "Shared.", " shared", "shared\u3164", "sh\ufe0fared",
    "\u2060groups", "gr\u043eups", ".VERSIONS", "\u0455h\u0430red", "shared\u00a0", "shar\u0435d\u200d"])
def test_more_look_alikes_of_the_kept_names_take_another_name(name: str) -> None:
    """Full-width letters, case, trailing dots, fillers, selectors, joiners, no-break spaces, two
    Cyrillic letters: each read as a kept name, each kept from the root."""
    assert names.looks_reserved(name.encode())
    assert names.away_from_reserved(name.encode() + b"/x") == name.encode() + b" (2)/x"


@pytest.mark.parametrize("name", ["shares", "shared2", "my shared", "\u043f\u0440\u0438\u0432\u0435\u0442",
                                  "gro\u00fcp", ".version", "versions", "sh\u00e4red stuff", "\xff\xfe"])
def test_names_that_do_not_read_as_kept_ones_stay(name: str) -> None:
    """Control: other names, a word of another script of the same length among them, stay as they are."""
    raw = name.encode("latin-1") if name == "\xff\xfe" else name.encode()  # bytes that are no UTF-8
    root = type("Root", (), {"ino": ROOT_INODE, "children": {b"notes.txt": 8}})()
    assert not names.looks_reserved(raw)
    assert unique_name(_taken_in(root), raw) == raw
