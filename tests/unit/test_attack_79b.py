"""Attack round 79b, at 141bf62: the lead's changes of the hour (d37fc17 the ledger's ``links``,
c9bca1e ``sharing.owing_keys`` / ``KeyMirror.unmirrored`` in ``pending_up``, 8e97c5f and 226d79b
vault/model/device_file.py ``read_own``: group_copies.py, trash_seen.py, verified.py moved onto it).

(1) low (a cost bounded but large; her honest record lost at upgrade and at every mount since).
    Attacker: none (honest use of a large vault); the change itself.  Steps: a device whose cache of
    signatures checked (verified.py) holds more than 2,097,151 digests, which ``Verified.add`` takes
    up to ``verified.LIMIT`` = 4,000,000 (128 MB, "far beyond any vault a mount loads") and
    ``Verified.save`` writes whole; or whose record of deletions first seen (trash_seen.py) holds
    about 730,000 deletions in her trash (no limit there before).  Seen: ``Verified.open`` /
    ``TrashSeen.open`` of the file the previous save wrote logs "larger than any record fusevault
    writes" and starts empty: every signature of the vault is checked again at every mount (issue 25's
    speed lost for good: the save writes the whole cache again, the next open refuses it again, 67 MB
    written each time), and every deletion another user signed counts from now at every open of the
    trash (gc's or ``trash``'s), so it never leaves her trash while she opens it within ``trash_days``.
    Files of that size written by the code before 226d79b / 8e97c5f (``path.read_bytes()``, no
    limit) are refused likewise at upgrade.  Expected: what ``save`` writes, ``open`` reads.  Cause:
    vault/model/device_file.py:43 ``LIMIT = 64 * 2**20`` used as the default by ``read_sealed`` /
    ``read_json`` (verified.py:68, trash_seen.py:74 pass none), below verified.py:40's own ``LIMIT``
    of digests (4,000,000 x 32 bytes = 128 MB) and with no bound at all on what trash_seen.py's
    ``save`` writes.  Suggested fix: verified.py passes ``limit=len(MAGIC) + LIMIT * DIGEST +
    sealing overhead`` (or device_file.LIMIT above it); trash_seen.py bounds what it keeps (or passes
    a limit above what its save can write); a unit test that a record at each module's own bound
    reads back.  Fixed: device_file's bound is what ``loads_untrusted`` parses (256 MiB, and the seal).
    Tests: ``test_79b_1_the_largest_record_each_module_saves_is_read_back`` (at each module's bound,
    by size: written, 18 s and 67 MB each) and ``test_79b_1_a_record_its_module_saved_whole_reads_back``
    (small round trips).

Tried and held (controls kept in tests/inprocess/test_attack_79b.py, in-process ``shared`` scenes, a
READ member's refused touch or deletion, or the server's replay, then her lock, unlock and save):
d37fc17's ``links`` after a hard link of hers removed (``unlink``), renamed (``rename_link``),
replaced by another file renamed over it (``rename_other_over``), her POSIX rename of one link onto the
other (kept both, as mounted); the server's replay of her older two-link state after her unlink (one
name, as mounted); a hard link in a subfolder S of D with READ bob's refused deletions of both S and
the file (``_parents_first`` rebuilds S first: both names back), and his refused touches of both.
Read, held: ``saw_name`` is called with ``fid_of`` on every path that commits or takes her node
(``committed``, ``check_loaded``, ``absorb_node``); a node back to one link drops its entry; ``links``
entries compare equal after a ledger load (no version churn); ``_where_it_was`` keeps only folders of
``was`` held as folders here, and names passing ``names.problem``.  c9bca1e: ``owing_keys`` is a
try/finally context manager (an exception or a trio cancellation in ``_rekey`` gives it back);
``_rekey`` is bounded (``RESEAL_TRIES`` x ``BEHIND_WAIT``); ``unmirrored``'s cue is set by every
``refresh`` that scans without a key write meanwhile, and ``push`` refreshes before it counts, so a
status reaches 0 one push after the last key write; the early return on ``_stored_since`` pushes
everything stored, as before.  device_file: ``read_own`` opens O_NOFOLLOW | O_NONBLOCK and checks the
fd it reads (no race between check and read); a planted folder, FIFO or link is ``Damaged``;
another local user needs write access to her 0700 state folder (``paths._own_place``) to plant any:
root only.  group_copies.py keeps its ``MAX_SIZE`` and its seal's kind and name; trash_seen.py and
verified.py seal under ``path.name``, equal to the ``name`` they sealed under before (files written
by the previous code open).
Not tried: a shared mount's several users (process-wide ``_keys_owed`` counts every seat's re-keys in
one replicator's status: transient); real mounts; two devices of hers (a link removed on her other
device, unseen here, then a refused state: the stale-ledger case, as for ``names`` before).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fusevault import encoding
from fusevault.crypto.keys import MasterKey
from fusevault.vault.model import device_file, verified
from fusevault.vault.model.trash_seen import TrashSeen
from fusevault.vault.model.verified import Verified

KEY = MasterKey("a" * 32, b"\1" * 32)
NOW = 1_800_000_000 * 10**9
SEAL = 12 + 16  # the seal's nonce and tag (MasterKey.seal_device: AES-GCM)


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))


def _verified(vault: Path, n: int) -> int:
    cache = Verified.open(KEY, vault)
    assert n <= verified.LIMIT
    for i in range(n):
        cache.add(i.to_bytes(32, "big"))  # as a load adds each signature it checked
    cache.save()
    return len(Verified.open(KEY, vault).known)


def _trash_seen(vault: Path, n: int) -> int:
    seen = TrashSeen.open(KEY, vault)
    for i in range(n):
        seen.first_seen({"_id": f"{i:032x}", "enc": f"sealed {i}"}, NOW)  # as the trash's listing notes each
    seen.save()
    return len(TrashSeen.open(KEY, vault).seen)


@pytest.mark.parametrize("which,n", [
    pytest.param("verified", 1000, id="verified_small"),
    pytest.param("trash_seen", 1000, id="trash_seen_small"),
])
def test_79b_1_a_record_its_module_saved_whole_reads_back(tmp_path: Path, which: str, n: int) -> None:
    vault = tmp_path / "vault"
    vault.mkdir()
    read = (_verified if which == "verified" else _trash_seen)(vault, n)
    assert read == n, f"{which}: {n} saved, {read} read back at the next open"


def test_79b_1_the_largest_record_each_module_saves_is_read_back() -> None:
    """At each module's own bound (not written here: 2 million digests and 740,000 deletions took 18 s and
    67 MB each, run by the attacker): the signature cache at ``verified.LIMIT`` digests, sealed, and a
    record of deletions as long as ``loads_untrusted`` parses (trash_seen.py keeps no bound of its own)
    fit what ``device_file`` reads (its 64 MiB refused both: 79b (1))."""
    sealed_cache = len(verified.MAGIC) + verified.LIMIT * verified.DIGEST + SEAL
    assert sealed_cache <= device_file.LIMIT, f"a cache of {verified.LIMIT} digests is refused at open"
    assert encoding.JSON_LIMIT + SEAL <= device_file.LIMIT, "a record of deletions parsed is refused at open"
