"""Attack round 79a, at 141bf62 (round 78b's and 78c's fixes: f061322, 92d9dc4, e24e4b7, 9c2064f,
27a1b44).  In-process: the ``vault_copy`` fixture and the personal in-process mount (``_composed``).

(1) medium (her live file hidden at every unlock, unsaid: no alarm, and the ledger quietly records it
    not live).  Attacker: whoever writes the vault folder (store.sqlite, no key).  Steps: alice writes
    keep.txt and victim.txt; between mounts the attacker rewrites victim.txt's node body so that SQLite
    and Python read its ``type`` differently, the signed fields untouched: a second ``type`` key put
    first (``{"type": "FilesMetaData", "type": "node", ...}``: SQLite's ``json_extract`` reads the
    first, Python's ``json`` the last) [dup_type], or the key spelt with an escape
    (``{"typ\\u0065": "node", ...}``: SQLite 3.40 matches no ``type``, Python reads ``type``)
    [escaped_key].  Seen at her next unlock: victim.txt not in her root, no alarm at all (nor a
    ``vanished``).  Expected: shown, or at least said (as 78c (3)'s test asks of a changed column).
    Cause: store/local.py ``iter_type`` selects by ``json_extract(body, '$.type')`` (9c2064f), so the
    row is never read for ``node`` and ``_readable``'s check (local.py:324) never sees it; the ledger's
    ``_missing`` (vault/model/ledger.py:1180) then finds the body by ``get`` (Python's reading: live,
    hers) and takes the branch "in the trash, or a share that no longer reaches this user"
    (``record(fid, None, False)``), unsaid.  The 78c paragraph names the duplicated key as "Left (not
    tried) ... said only under the first key's kind": nothing reads under that kind, so it is not said.
    Impact: a writer of a USB disk or a synced vault folder hides any file or folder (and all under
    it) of any user, silently, as 78c (3) did with the clear column.  Fix (suggested): refuse a body
    Python reads with a duplicated key (``object_pairs_hook``) and one whose ``json_extract(body,
    '$.type')`` differs from Python's ``type`` (in ``_doc``, so ``get`` refuses it too: then
    ``_missing`` says it malformed); or select by the column and the body both and say a disagreement;
    or in ``_missing``, a live body of hers that the load did not hold is said.
    Test: ``test_79a_1_her_file_with_an_oddly_written_type_key_is_shown_or_said`` (strict xfail);
    control ``test_79a_1_control_a_changed_type_column_is_shown`` (78c (3)'s fix holds).

(2) medium (every unlock of every user of the vault fails: the mount and commands cannot load).
    Attacker: whoever writes the vault folder.  Steps: one byte 0xff put inside a string of any
    ``docs`` body of kind ``node`` (``UPDATE docs SET body = CAST(? AS TEXT)``; SQLite keeps it as
    TEXT, its JSON functions do not check UTF-8).  Seen: ``Volume.load`` raises
    ``sqlite3.OperationalError: Could not decode to UTF-8 column 'body'`` from ``iter_type``'s
    ``fetchmany`` (store/local.py:307): the whole load stops.  Expected: that one document left out
    (said, as a body that is not JSON is: ``_readable``), the rest loaded.  Cause: the connection
    decodes TEXT as UTF-8 (no ``text_factory``); ``_doc`` checks the decoded value only, the decode
    error comes first, from the cursor, for the whole batch.  The same for an ``id`` or ``rev`` column.
    Fix (suggested): read with ``text_factory = bytes`` (or ``CAST(body AS BLOB)``) and decode in
    ``_doc`` (an undecodable body is ``Unreadable``), or select ``WHERE ... AND
    json_valid(body)``-like guards do not help here: decode per row.
    Test: ``test_79a_2_a_body_that_is_not_utf8_does_not_stop_her_unlock`` (strict xfail).

Tried and held: a changed clear ``type`` column (78c (3)'s fix) [control above]; a body with a lone
surrogate escape or a 500-digit integer (SQLite and Python agree on ``type``); a body with a raw
control character or a no-break space (both refuse it: left out).  A peer cannot bring (1) or (2):
store/replica.py writes every body as ``json.dumps`` of the parsed document (no duplicate, ASCII).
92d9dc4's put-back, with a WRITE member (D hers, shared WRITE with bob; his folder A and her R/f.txt in
D): bob signs her R into his A and his A into R (a loop of his states alone) [bobs_loop], or her other
device moves R into A while bob, apart, moves A into R [crossing_with_bob]: her unlock shows R and f.txt
(his states refused as placing outside his share, rebuilt): control
``test_79a_control_a_loop_with_a_writers_folder_hides_nothing_of_hers``.
Not tried: f061322's ``parents_again``; a loop of folders of another owner she holds as a guest.
"""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest
import trio
from attack_scenes import ALICE, BOB, ask

from fusevault.vault.services.absorbing import admit_new
from fusevault.vault.volume import Volume
from inprocess.conftest import ROOT, _composed, make, shared  # noqa: F401  (fixture)
from inprocess.test_attack_70a import _signed_by
from inprocess.test_attack_78b import LATE, _paths, _put
from inprocess.test_two_users import _write


def _two_files(vault: Path) -> str:
    with _composed(vault) as fs:
        async def write() -> None:
            await make(fs.ops, b"keep.txt", b"kept")
            await make(fs.ops, b"victim.txt", b"to be hidden")
        trio.run(write)
        return fs.volume.resolve(b"victim.txt").fid


def _set(vault: Path, fid: str, sql: str, how) -> None:
    db = sqlite3.connect(vault / "store.sqlite")
    try:
        (value,) = db.execute("SELECT body FROM docs WHERE id = ?", (fid,)).fetchone()
        assert db.execute(sql, (how(value), fid)).rowcount == 1
        db.commit()
    finally:
        db.close()


def _shown_or_said(vault: Path, fid: str) -> tuple[bool, list]:
    with _composed(vault) as fs:
        volume = fs.volume
        assert volume.resolve(b"keep.txt").fid != fid, "the scene: keep.txt shown"
        try:
            shown = volume.resolve(b"victim.txt").fid == fid
        except Exception:  # NotFound
            shown = False
        said = [(a["kind"], a["text"][:80]) for a in volume.trust.alarms.as_list() if a["subject"] == fid]
        return shown, said


ODD = {"dup_type": lambda body: '{"type": "FilesMetaData", ' + body[1:],
       "escaped_key": lambda body: body.replace('"type": "node"', '"typ\\u0065": "node"', 1)}


@pytest.mark.parametrize("odd", ODD.values(), ids=ODD.keys())
def test_79a_1_her_file_with_an_oddly_written_type_key_is_shown_or_said(vault_copy: Path, odd) -> None:
    fid = _two_files(vault_copy)
    _set(vault_copy, fid, "UPDATE docs SET body = ? WHERE id = ?", odd)
    shown, said = _shown_or_said(vault_copy, fid)
    assert shown or said, f"victim.txt ({fid}), its signed body intact and live, is hidden, unsaid"


def test_79a_1_control_a_changed_type_column_is_shown(vault_copy: Path) -> None:
    fid = _two_files(vault_copy)
    _set(vault_copy, fid, "UPDATE docs SET type = ? WHERE id = ?", lambda body: "FilesMetaData")
    shown, _ = _shown_or_said(vault_copy, fid)
    assert shown


def test_79a_2_a_body_that_is_not_utf8_does_not_stop_her_unlock(vault_copy: Path) -> None:
    fid = _two_files(vault_copy)

    def not_utf8(body: str) -> bytes:
        raw = body.encode().replace(b'"delete": false', b'"x": "\xff", "delete": false', 1)
        assert raw != body.encode(), "the scene: the node body names delete"
        return raw

    _set(vault_copy, fid, "UPDATE docs SET body = CAST(? AS TEXT) WHERE id = ?", not_utf8)
    try:
        with _composed(vault_copy) as fs:
            kept = fs.volume.resolve(b"keep.txt").fid
    except sqlite3.OperationalError as err:
        raise AssertionError(f"her unlock fails on one planted body: {err!r:.120}") from None
    assert kept


@pytest.mark.parametrize("how", ["bobs_loop", "crossing_with_bob"])
def test_79a_control_a_loop_with_a_writers_folder_hides_nothing_of_hers(shared, how: str) -> None:  # noqa: F811
    async def scene() -> list[bytes]:
        drive, alice, bob = shared.drive, shared.volumes["alice"], shared.volumes["bob"]
        d = await drive.mkdir(ROOT, b"D", stat.S_IFDIR | 0o755, ALICE)
        r = await drive.mkdir(d.st_ino, b"R", stat.S_IFDIR | 0o755, ALICE)
        await _write(drive, r.st_ino, b"f.txt", b"her f\n", ALICE)
        await ask(shared, "share", "D", "WRITE")
        admit_new(bob)
        ino = ROOT
        for part in b"shared/alice/D".split(b"/"):
            ino = (await drive.lookup(ino, part, BOB)).st_ino
        await drive.mkdir(ino, b"A", stat.S_IFDIR | 0o755, BOB)
        await bob.save_all()
        rfid, afid = alice.resolve(b"D/R").fid, alice.resolve(b"D/A").fid
        await alice.save_all()  # her lock
        who = "bob" if how == "bobs_loop" else "alice"  # R into A: bob's state of her R, or her laptop's
        _put(shared, _signed_by(shared, who, rfid, {"links": [[afid, "R"]], "ctime": LATE}))
        _put(shared, _signed_by(shared, "bob", afid, {"links": [[rfid, "A"]], "ctime": LATE + 1}))
        again = Volume.load(alice.layout, alice.store, alice.key, alice.tree.get(1).fid)
        try:
            return _paths(again)
        finally:
            await again.close()

    seen = trio.run(scene)
    assert b"D/R/f.txt" in seen or b"D/A/R/f.txt" in seen, seen
