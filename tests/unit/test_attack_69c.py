"""Attack round 69c (the naming of copies and conflicts after rounds 65a-67a: ``copy_name``,
``copy_names``, ``label_of``, ``conflict_copy``; the importer's compare-and-place; the import records'
PATH_MAX bounds).

(1) low-medium (an exception out of the settling: the batch's later conflicts unsettled, at every arrival
and mount while the branch stands; 66a (2)'s and 67a (1)'s class, through the label's own document): a
losing edit whose head version seals a JSON value that is not an object (``[]``, ``"x"``, ``7``,
``null``).
Attacker: whoever signs a branch of her file that loses (rule 4) or is copied where he wrote it: her own
other device, or a WRITE member of a share of hers; the version document is sealed under the file's DEK,
which he holds, and ``version_ok`` judges its owner and signature only, never its plaintext's shape.
Steps: his version of the file (his head) seals ``[]``; his node state is concurrent with hers.
Seen: ``_device_of`` (conflicts.py:900) calls ``version_plain(doc, dek).get("device")``: ``version_plain``
(history.py:86-91) returns whatever ``loads_untrusted`` parsed, so ``.get`` raises AttributeError; the
same in ``history.made_over`` (history.py:167 through ``version_parents``, history.py:95), which
``descends`` (conflicts.py:729, rule 3) runs before any copy, and whose ``except (VaultError, KeyError,
TypeError, ValueError)`` does not hold it.  Not a VaultError: ``settle``'s ``except VaultError`` lets it
out, fs/arrivals.py ``_settle_conflicts`` logs "settling concurrent edits failed" and the rest of the
batch is not settled; his edit never gets its copy (hidden from her), and the same at each later arrival.
(``authorship.vouch_copy``, authorship.py:818, and absorbing.py:692 reach ``version_parents`` too.)
Expected: a version whose plaintext is not an object is malformed (CorruptData), as one that does not
parse is: the label "another device", the walk passes it over, the batch goes on.
Fix: ``version_plain`` raises CorruptData unless ``loads_untrusted`` gave a dict (every caller at once),
and ``_device_of`` takes a version that does not open as no label (None: "another device"), else the
loser is never copied ("could not settle", at each arrival); a scratch fix of both made all nine pass
(the first alone: the batch and ``made_over`` tests, not the copy's).
Tests: ``test_69c_1_a_loser_whose_version_seals_no_object_still_gets_a_copy`` (the real ``conflict_copy``
over 66a's fakes), ``test_69c_1_the_batch_after_it_is_settled`` (the real ``settle``),
``test_69c_1_made_over_passes_such_a_version_over`` (the real ``made_over``); control
``test_control_69c_1_a_version_object_names_the_copy``.

(2), (3): in ``tests/inprocess/test_attack_69c.py`` (each told in its test's docstring): (2) medium-low, a
folder ``.NAME.fvpart`` beside her source in the watched folder stops NAME's import for good; (3) low, a
conflict copy made in a folder she removed that the kernel still holds, shown nowhere until the next
unlock; (5) medium, a 255-byte look-alike of a kept root name (``shared`` and 249 dots) imported into
the root gets ``NAME (2)``, 259 bytes: the whole source written into her vault and thrown away at every
retry (65a (1)'s impact through ``names.away_from_reserved``).

(4) low (a copy's name that is not UTF-8 where her file's is: half a character): ``copy_name``
(conflicts.py:137) cuts the stem at a byte count, ``stem[:max(1, names.MAX_BYTES - len(tail))]``, so a
long UTF-8 name (80 x "\u20ac", 3 bytes each, ``.txt``) gets a copy whose stem ends inside a character
(the label is cut "never inside a character" since 65a; the stem is not).  Attacker: none (any long
non-ASCII name copied beside: an import's copy, a sync conflict's); a peer's label length moves the cut.
Seen: a valid Linux name (``names.valid``) that is not UTF-8: shown with U+FFFD by her file manager and
``ls``, refused by a file system that holds UTF-8 names only (an export to exFAT/NTFS/SMB).  Expected: the
stem cut at a character's start (as the label is: decode with "ignore" after the cut).  Fix: cut
``stem`` then ``.decode("utf-8", "ignore")`` where the name was UTF-8 (a name that was not stays bytes);
``names.beside`` cuts the same way (not run here).  Test:
``test_69c_4_a_copy_of_a_utf8_name_is_utf8`` (first and numbered names, two labels); control
``test_control_69c_4_a_copy_of_a_short_utf8_name_is_utf8``.

Tried and held (run, or read): ``label_of`` and ``copy_names`` as 67a's controls (kept there); the
importer's compare-and-place (``judged``/``nothing`` at ``Tree.rename(over=)``: a folder, a hard link,
her file renamed away and back, the place freed, a new file of hers there) and ``_move``
(noreplace); ``_past_path_max`` against every name ``_copy_names`` gives and ``_recorded_at``
(``path_of`` and ``put_at`` both without a leading "/", ``import_into`` normalised in settings.py);
``drop_unseen``'s bound; ``conflict_copy`` raising Exists (mknod) when its name is taken meanwhile
(the conflict stays open, settled at the next arrival, not dropped); a kill -9 after the copy's commit
(``_copy_there``: no second copy).  Not tried: a real mount; a kill -9 inside ``remove_if`` between its
rename aside and its look (her save moved aside then would stay as ``.NAME.fvpart-remove-XXXX``,
ignored: read only); a kill -9 mid-copy of an import beside (its temporary ``.NAME (conflict import
DATE).EXT.fvpart`` named after the minute, never cleaned: read only).
"""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import pytest
import trio

from fusevault.crypto import aead
from fusevault.encoding import b64e
from fusevault.errors import CorruptData
from fusevault.vault.model import names
from fusevault.vault.model.history import made_over, version_parents
from fusevault.vault.services import conflict_copies, conflicts
from fusevault.vault.services.conflict_copies import copy_name, copy_names
from fusevault.vault.tree.arrivals import Absorbed
from fusevault.vault.tree.rebuilding import _where_it_was
from tests.unit.test_attack_66a import WHEN, Created, _scene

NOT_OBJECTS = [[], "x", 7, None]
DEK, FID, HEAD = b"k" * 32, "f" * 32, "v" * 32  # _scene's


def _sealed_as(plain: object):
    """66a's scene of a losing edit of a.txt, its head version sealing ``plain``."""
    volume, store, loser, parent = _scene("laptop", taken=False)
    version = {"_id": HEAD, "fid": FID,
               "enc": b64e(aead.seal(DEK, json.dumps(plain).encode(), aead.ad("version", FID, HEAD)))}
    store.get = lambda doc_id: {HEAD: version}.get(doc_id)
    return volume, store, loser, parent


@pytest.mark.parametrize("plain", NOT_OBJECTS)
def test_69c_1_a_loser_whose_version_seals_no_object_still_gets_a_copy(plain: object) -> None:
    volume, store, loser, _ = _sealed_as(plain)
    with pytest.raises(Created):
        trio.run(conflict_copies.conflict_copy, volume, store, loser, Absorbed())


def test_69c_1_the_batch_after_it_is_settled(monkeypatch: pytest.MonkeyPatch) -> None:
    volume, store, loser, _ = _sealed_as([])
    settled: list[str] = []

    async def settle_one(volume, store, doc_id, out):  # his edit copied for real; hers only counted
        if doc_id == "his":
            await conflict_copies.conflict_copy(volume, store, loser, out)
        settled.append(doc_id)

    monkeypatch.setattr(conflicts, "_settle_one", settle_one)
    trio.run(conflicts.settle, volume, store, ["his", "hers"])
    assert settled == ["hers"]


@pytest.mark.parametrize("plain", NOT_OBJECTS)
def test_69c_1_made_over_passes_such_a_version_over(plain: object) -> None:
    _, store, _, _ = _sealed_as(plain)
    assert made_over(store, None, FID, DEK, HEAD, "w" * 32) is None


def test_control_69c_1_a_version_object_names_the_copy() -> None:
    volume, store, loser, _ = _sealed_as({"device": "laptop"})
    with pytest.raises(Created) as made:
        trio.run(conflict_copies.conflict_copy, volume, store, loser, Absorbed())
    assert made.value.args[0] == copy_name(b"a.txt", "laptop", WHEN)
    assert made_over(store, None, FID, DEK, HEAD, "w" * 32) is None


@pytest.mark.parametrize("label", ["laptopx", "import"])
def test_69c_4_a_copy_of_a_utf8_name_is_utf8(label: str) -> None:
    name = ("\u20ac" * 80 + ".txt").encode()  # 244 bytes, a valid UTF-8 name
    for copy in itertools.islice(copy_names(name, label, WHEN), 20):
        copy.decode("utf-8")  # raises UnicodeDecodeError on half a character


def test_control_69c_4_a_copy_of_a_short_utf8_name_is_utf8() -> None:
    name = ("\u20ac" * 10 + ".txt").encode()
    assert all(copy.decode("utf-8") for copy in itertools.islice(copy_names(name, "laptopx", WHEN), 20))


# --- the fix's abuse tests: every name made from another by adding to it, at its longest


LONG_NAMES = [
    ("\u20ac" * 85).encode(),  # 255 bytes of UTF-8, 3 a character
    ("a" + "\U0001f600" * 63 + "bc").encode(),  # 255 bytes, 4 a character, cut off by one
    b"\xff\xfe" * 127 + b"x",  # not UTF-8: cut by bytes
    b"\x80" * 255,  # continuation bytes alone: not UTF-8, never backed over to nothing
]


def _utf8_if_it_was(made: bytes, source: bytes) -> None:
    try:
        source.decode("utf-8")
    except UnicodeDecodeError:
        return
    made.decode("utf-8")  # half a character raises


@pytest.mark.parametrize("name", LONG_NAMES)
def test_69c_4_ending_cuts_within_the_limit_at_a_character(name: bytes) -> None:
    for tail in (b" (2)", b" (recovered 01234567)", b" (also 01234567 12).txt", b" (" + b"x" * 200 + b")"):
        made = names.ending(name, tail)
        assert made.endswith(tail) and names.valid(made) and len(made) <= names.MAX_BYTES
        assert len(made) >= names.MAX_BYTES - 3  # cut no further than a character's start
        _utf8_if_it_was(made, name)


@pytest.mark.parametrize("name", LONG_NAMES)
def test_69c_4_names_beside_and_copies_of_a_long_name(name: bytes) -> None:
    for source in (name, name[:251] + b".txt", b"." + name[:254]):
        made = [names.beside(source, "0123456789abcdef", {names.beside(source, "0123456789abcdef", ())}),
                *itertools.islice(copy_names(source, "laptop \u20ac", WHEN), 3)]
        for one in made:
            assert names.valid(one), one
            _utf8_if_it_was(one, source)


LOOK_ALIKES = ["shared" + "." * 249, "shared" + " " * 249, "groups" + "." * 249, ".versions" + " " * 246,
               "shared" + "\u200b" * 83, "\u0455hared" + "." * 248]


@pytest.mark.parametrize("top", LOOK_ALIKES)
def test_69c_5_away_from_reserved_stays_a_name(top: str) -> None:
    raw = top.encode()
    assert len(raw) <= names.MAX_BYTES and names.looks_reserved(raw)
    for path in (raw, raw + b"/inner/file.txt"):
        moved = names.away_from_reserved(path)
        first, _, rest = moved.partition(b"/")
        assert names.path_problem(moved) is None and first.endswith(b" (2)")
        assert not names.looks_reserved(first) and moved == names.away_from_reserved(path)  # stable
        assert rest == path.partition(b"/")[2]
        first.decode("utf-8")


def test_control_69c_5_a_short_look_alike_keeps_its_whole_name() -> None:
    assert names.away_from_reserved(b"shared.../a") == b"shared... (2)/a"
    assert names.away_from_reserved(b"sharedx/a") == b"sharedx/a"


def test_69c_5_a_refused_delete_recovered_beside_a_255_byte_name_stays_a_name() -> None:
    """Its own name even where held: the clash rule names it beside (``place_taken``, bounded as every
    name beside is), no name made here (77c (1))."""
    name = ("\u20ac" * 85).encode()
    parent = SimpleNamespace(is_dir=True, children={name: 2})
    tree = SimpleNamespace(find=lambda fid: parent)
    [(_, placed)] = _where_it_was(tree, ["p" * 32], name, [])  # type: ignore[arg-type]
    assert names.valid(placed) and placed == name


@pytest.mark.parametrize("parents", [7, "ab", {"a": 1}])
def test_69c_1_parents_that_are_no_list_are_malformed(parents: object) -> None:
    version = {"_id": HEAD, "fid": FID, "enc": b64e(aead.seal(
        DEK, json.dumps({"parents": parents}).encode(), aead.ad("version", FID, HEAD)))}
    with pytest.raises(CorruptData):
        version_parents(version, DEK)


def test_69c_1_only_the_ids_listed_as_parents_are_read() -> None:
    version = {"_id": HEAD, "fid": FID, "enc": b64e(aead.seal(
        DEK, json.dumps({"parents": ["a" * 32, 7, None]}).encode(), aead.ad("version", FID, HEAD)))}
    assert version_parents(version, DEK) == ["a" * 32]
