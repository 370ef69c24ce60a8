"""Attack round 67a (a very short one at round 66a's fix, 96e33fa: ``label_of``, ``copy_name`` cutting a
label in its middle, ``copy_names`` first/numbered/random for conflicts and imports).

(1) low-medium (an exception out of the settling: the batch's later conflicts unsettled, at every arrival
and mount while the branch stands; older than 96e33fa: ``while copy in parent.children`` did the same): a
losing edit whose link names, as its parent, a file (not a folder) this device holds.
Attacker: whoever signs a branch of her file that is settled as a loser (rule 4) or copied where the writer
wrote it (``_writers_copy``): her own other device, or a WRITE member whose links ``may_write`` lets through
(``writes_at`` walks up from the node named, a file or a folder alike: a file inside his share is granted
like its folder; read, not run).
Steps: the branch's sealed links are ``[(FID_OF_A_FILE, b"a.txt")]``; it loses; ``conflict_copy`` takes
``parent = volume.find(parent_fid) or volume.root`` (conflicts.py:766): a regular file's node, whose
``children`` is None (nodes.py:275).
Seen: ``next(c for c in copy_names(...) if c not in parent.children)`` (conflicts.py:773) raises
TypeError ("argument of type 'NoneType' is not iterable"); not a VaultError: ``settle``'s
``except VaultError`` lets it out, the rest of the batch is not settled (fs/arrivals.py logs "settling
concurrent edits failed"), and the same at every later settling.  Expected: a parent that is not a folder
taken as no parent (the root, as for an unknown fid, or the file's own folder), the copy made, the batch
goes on.
Fix: ``parent = volume.find(parent_fid)``; ``if parent is None or parent.children is None: parent =
volume.root`` (said); and/or catch ValueError/TypeError per document in ``settle``.
Tests: ``test_67a_1_a_loser_whose_parent_is_a_file_still_gets_a_copy`` (the real ``conflict_copy`` over
66a's fakes), ``test_67a_1_the_batch_after_a_file_parent_is_settled`` (the real ``settle``).

Tried and held (run): ``label_of`` refuses a lone surrogate, a label past 64 bytes, a non-printable
one (U+2028, NUL), "/", "" and a non-str, keeps a 64-byte one (``test_control_67a_label_of_*``); 1,000
numbered names all taken in the folder: the names tried end in a random one, none repeats ("N" is
decimal, at most 4 digits; a random tail is 8 hex: ``test_control_67a_a_full_folder_of_numbered_names_
ends_in_a_random_one``); the label is never cut (at most 64 bytes + " " + 8 hex = 73, the room is at
least 97 bytes since an extension kept is at most 127): the middle cut is dead code today, so the
import's ``longest_copy_name`` ("import ffffffff", mtime 0) is the longest of its names (1,020 names, a
250-byte name, a 127/128-byte extension, mtimes clamped to years 1000 and 9999:
``test_control_67a_the_import_bound_is_the_longest_name``).  Cost per arrival: at most 1,001
``copy_name`` calls and set looks (a few ms) before a random name: bounded, said in ``copy_names``.
Not tried: a real mount; a WRITE member's branch through ``may_write`` with a file as its parent (read
only: ``writes_at`` walks up from a file as from a folder).
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import trio

from fusevault.imports.importer import _copy_names, longest_copy_name
from fusevault.vault.model import names
from fusevault.vault.services import conflict_copies, conflict_rules, conflicts
from fusevault.vault.services.conflict_copies import copy_name, copy_names, label_of
from fusevault.vault.tree.arrivals import Absorbed
from tests.unit.test_attack_66a import WHEN, Created, _scene


def _file_parent_scene() -> tuple[SimpleNamespace, SimpleNamespace, conflict_rules.Leaf]:
    volume, store, loser, _ = _scene("laptop", taken=False)
    a_file = SimpleNamespace(ino=9, children=None)  # a regular file's node (nodes.py: children None)
    volume.find = lambda fid: a_file
    return volume, store, loser


def test_67a_1_a_loser_whose_parent_is_a_file_still_gets_a_copy() -> None:
    volume, store, loser = _file_parent_scene()
    with pytest.raises(Created):
        trio.run(conflict_copies.conflict_copy, volume, store, loser, Absorbed())


def test_67a_1_the_batch_after_a_file_parent_is_settled(monkeypatch: pytest.MonkeyPatch) -> None:
    volume, store, loser = _file_parent_scene()
    settled: list[str] = []

    async def settle_one(volume, store, doc_id, out):  # his edit copied for real; hers only counted
        if doc_id == "his":
            await conflict_copies.conflict_copy(volume, store, loser, out)
        settled.append(doc_id)

    monkeypatch.setattr(conflicts, "_settle_one", settle_one)
    trio.run(conflicts.settle, volume, store, ["his", "hers"])
    assert settled == ["hers"]


@pytest.mark.parametrize("label", ["lap\udc80top", "x" * 65, "\U0001F600" * 17, "a\u2028b", "a/b", "",
                                   "a\x00b", 7, None])
def test_control_67a_label_of_refuses(label: object) -> None:
    assert label_of(label) == "another device"


def test_control_67a_label_of_keeps_a_64_byte_label() -> None:
    assert label_of("\U0001F600" * 16) == "\U0001F600" * 16


def test_control_67a_a_full_folder_of_numbered_names_ends_in_a_random_one() -> None:
    label = "\U0001F600" * 16
    given = list(itertools.islice(copy_names(b"a." + b"e" * 127, label, WHEN), conflict_copies.NUMBERED + 50))
    assert len(set(given)) == len(given)
    assert all(names.valid(name) and len(name) <= names.MAX_BYTES for name in given)
    taken = set(given[:conflict_copies.NUMBERED])
    free = next(c for c in copy_names(b"a." + b"e" * 127, label, WHEN) if c not in taken)
    assert free not in taken and label.encode() in free


@pytest.mark.parametrize("mtime", [-10**19, 0, WHEN, 10**19 - 1])
@pytest.mark.parametrize("name", [b"n" * 250, b"s" * 127 + b"." + b"e" * 127, b"a." + b"e" * 128])
def test_control_67a_the_import_bound_is_the_longest_name(name: bytes, mtime: int) -> None:
    longest = len(longest_copy_name(name))
    given = list(itertools.islice(_copy_names(name, mtime), conflict_copies.NUMBERED + 20))
    assert max(len(n) for n in given) <= longest and len(set(given)) == len(given)
    assert copy_name(name, "kept " + "f" * 6, mtime)  # source_paths' put-back names: valid too
