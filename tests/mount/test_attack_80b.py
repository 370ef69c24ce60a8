"""Attack round 80b, through the real command and mounts: (4) of tests/inprocess/test_attack_80b.py on
her newest version (79a (1c) again, by the index instead of the body), and (5), 40c (1)'s fix bypassed.

(5) high (keys of her existing files sealed to a user she never chose; her key pairs replaced).
    Attacker: whoever writes the vault folder (bob, a member, on a shared disk or NAS; no key of
    hers, no older copy of anything).  Steps: alice has proj/plan.txt (shared with no one); the
    writer plants an unsigned Share of proj with bob (READ), takes off her current user document every
    trace of key pairs (``en_private_keys``, ``sig``, ``public_box``, ``public_sign``) and takes ``sig``
    off every document she owns (her nodes, versions: no "node of hers she signed" is left).  Alice
    mounts on a device with no mark of hers (a new laptop, a wiped state directory, the vault folder
    at another path).  Seen: the mount succeeds, nothing said; ``users.ensure_identity`` takes her for a
    user from before key pairs (``_had_pairs``: every sign it looks for was strippable) and mints new
    pairs; ``migrate.sign_own`` signs every unsigned document of hers with them, the planted Share too;
    the mount then seals proj's keys, plan.txt's included, to bob (users/<bob>/shared/*.vfkey): bob
    opens the DEK of her existing plan.txt with his own passphrase.  Her public key in the store is
    now the minted one.  Expected: as 40c (1)'s fix says ("a document without its pairs that shows any
    sign of a user who had them ... is refused, one line, nothing made"): refused, nothing sealed.
    Cause: vault/model/users.py ``_had_pairs`` (its signs are all fields the writer removes) and
    ``ensure_identity``; vault/model/migrate.py ``sign_own`` (signs whatever unsigned her documents
    hold).  Not the known limit of "Before the first signature" (a whole format-2 copy of her document
    from before the upgrade, put back): nothing older is needed.  Fix (suggested): never mint key pairs
    implicitly at a mount (an explicit, confirmed ``upgrade`` step for a format-1 user); or refuse when
    the vault's format (vault.json, pinned per device with marker_pins) is one whose users are made
    signed, or when anything in the vault folder signed by her exists (a ``.vfkey`` whose signature
    names her, a group body she owns); and never sign a Share (a grant) in a migration.
    Test: ``test_80b_5_every_signature_trace_stripped_gets_no_planted_share_signed_on_a_new_device``.

(4c) medium-high (her newest edit rolled back by ``check --repair``, under her own signature).  Attacker:
    whoever writes the vault folder (store.sqlite, no key).  Steps: plan.txt written twice (two
    versions); between mounts the head version's row is written through ``"type": "node"`` (SQLite sets
    its ``docs_kind`` entry to ``node``), then its own body written back while the two JSON index
    definitions are briefly changed (``PRAGMA writable_schema``), so the index keeps ``node``: every
    byte of the body is hers and as it was.  Seen: the mount reads the newest contents (``get`` by id);
    ``fusevault check`` says "the document of its current version is not its file's", "1 damaged
    file(s)" (``by_file`` selects by the index, never finds it; ``_head_unlisted``'s ``get`` finds it,
    agreeing with itself; the log says the version "left out: it reads as two kinds or files", which
    its intact body does not); ``check --repair`` restores the older version as the newest, and the next
    mount reads b"first".  Expected: the version found (the index rebuilt or not trusted), or at least
    nothing of hers replaced by a repair.  Cause: store/local.py ``by_file`` trusts index entries the
    folder's writer decides (``docs_kind``, ``docs_fid``); check.py ``_head_unlisted`` then calls an intact
    document "not its file's" and the repair treats the file as damaged.  Fix (suggested): ``REINDEX``
    the JSON indexes at open (or check them); in check, a current version ``get`` reads, genuine, naming
    this file, is its current version (no repair over it).
    Test: ``test_80b_4c_an_index_entry_left_at_another_kind_does_not_let_repair_roll_back_her_edit``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import adversary
from attack_scenes import recipients_dek
from conftest import PASSPHRASE, fusevault, mounted

from mount.test_attack_79a import _seq
from mount.test_sharing import _fid
from mount.test_trust_attack_40c import _alices_proj, _bobs_keys_of_alices, _planted_share, _user
from mount.test_trust_writes import BOB as BOB_SECRET

TRACES = ("en_private_keys", "sig", "public_box", "public_sign")  # every sign _had_pairs looks for
OWNED = ("node", "FilesMetaData", "ImportRecord", "LinkRecord", "Share")


def _write_past_indexes(vault: Path, doc_id: str, body: str) -> None:
    swap = "UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE name IN ('docs_kind', 'docs_fid')"
    for step in ("off", "write", "on"):
        db = sqlite3.connect(vault / "store.sqlite")
        try:
            if step == "write":
                assert db.execute("UPDATE docs SET body = ? WHERE id = ?", (body, doc_id)).rowcount == 1
            else:
                db.execute("PRAGMA writable_schema = ON")
                db.execute(swap, ("WHERE deleted = 0", "WHERE deleted = 7") if step == "off"
                           else ("WHERE deleted = 7", "WHERE deleted = 0"))
            db.commit()
        finally:
            db.close()


def test_80b_4c_an_index_entry_left_at_another_kind_does_not_let_repair_roll_back_her_edit(
        vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "plan.txt").write_bytes(b"first")
    with mounted(vault, mnt):
        (mnt / "plan.txt").write_bytes(b"second, the newest")
    versions = adversary.docs(vault, "FilesMetaData")
    assert len({v["fid"] for v in versions}) == 1 and len(versions) == 2, "the scene: plan.txt's two versions"
    head = max(versions, key=lambda v: _seq(vault, v["_id"]))
    db = sqlite3.connect(vault / "store.sqlite")
    try:
        (body,) = db.execute("SELECT body FROM docs WHERE id = ?", (head["_id"],)).fetchone()
        other = body.replace('"type": "FilesMetaData"', '"type": "node"', 1)
        assert other != body
        db.execute("UPDATE docs SET body = ? WHERE id = ?", (other, head["_id"]))  # docs_kind: node
        db.commit()
    finally:
        db.close()
    _write_past_indexes(vault, head["_id"], body)  # her body back, byte for byte; the index left
    with mounted(vault, mnt):
        assert (mnt / "plan.txt").read_bytes() == b"second, the newest", "the scene: the mount reads it"
    checked = fusevault("check", vault)
    repaired = fusevault("check", vault, "--repair")
    with mounted(vault, mnt):
        now = (mnt / "plan.txt").read_bytes()
    said = (checked.stdout + checked.stderr)[-300:], (repaired.stdout + repaired.stderr)[-300:]
    assert now == b"second, the newest", f"her newest edit rolled back: {said}"


def test_80b_5_every_signature_trace_stripped_gets_no_planted_share_signed_on_a_new_device(
        vault: Path, tmp_path: Path) -> None:
    mnt, proj = _alices_proj(vault, tmp_path)
    alice = _user(vault, "alice")
    plan = _fid(vault, "alice", "proj/plan.txt")
    adversary.put(vault, _planted_share(vault, proj))
    adversary.put(vault, {k: v for k, v in alice.items() if k not in TRACES})
    for kind in OWNED:
        for doc in adversary.docs(vault, kind):
            if doc.get("owner") == alice["_id"] and "sig" in doc:
                adversary.put(vault, {k: v for k, v in doc.items() if k != "sig"})
    device = {"FUSEVAULT_STATE_DIR": str(tmp_path / "new-device-state")}  # no mark, no memory
    said = fusevault("mount", vault, mnt, env=device)
    if said.returncode == 0:
        fusevault("unmount", mnt)
        with mounted(vault, mnt, env=device):  # her next mount there
            pass
    share = adversary.get(vault, _planted_share(vault, proj)["_id"])
    keys = _bobs_keys_of_alices(vault)
    try:
        dek = recipients_dek(vault, "bob", BOB_SECRET, plan)
    except AssertionError:
        dek = None
    assert said.returncode != 0 and keys == [] and dek is None, (
        f"mount exit {said.returncode}; the planted share now {share}; bob's keys of hers {keys}; "
        f"bob opens her plan.txt's DEK: {dek is not None}; her public key {alice.get('public_sign')} -> "
        f"{_user(vault, 'alice').get('public_sign')}")


def _from_before_pairs(vault: Path) -> None:
    """alice made as a user from before key pairs was (format 1, early): no pairs, nothing signed, her
    wrapping's validation string the older text (only her passphrase makes one: the test has it)."""
    from fusevault.crypto.kdf import KdfParams
    from fusevault.crypto.keys import checksum, unwrap_master, wrap_master

    alice = _user(vault, "alice")
    master = unwrap_master(alice["_id"], alice, PASSPHRASE.encode())
    fields = wrap_master(alice["_id"], master, PASSPHRASE.encode(), KdfParams.from_doc(alice["kdf"]),
                         pairs=False)
    adversary.put(vault, {**{k: v for k, v in alice.items() if k not in TRACES}, **fields,
                          "checksum": checksum(fields)})
    for kind in OWNED:
        for doc in adversary.docs(vault, kind):
            if doc.get("owner") == alice["_id"] and "sig" in doc:
                adversary.put(vault, {k: v for k, v in doc.items() if k != "sig"})


def test_80b_5_a_user_from_before_pairs_gets_hers_and_no_planted_share_signed(
        vault: Path, tmp_path: Path) -> None:
    """The fix's other half: a genuine user from before key pairs still gets hers at a mount, and her
    files signed; a Share in her name (which such a user could not have given) is left unsigned, said,
    and seals no key to bob."""
    mnt, proj = _alices_proj(vault, tmp_path)
    _from_before_pairs(vault)
    adversary.put(vault, _planted_share(vault, proj))
    device = {"FUSEVAULT_STATE_DIR": str(tmp_path / "new-device-state")}
    with mounted(vault, mnt, env=device) as m:
        assert (m / "proj" / "plan.txt").read_text() == "alice's plan\n"
        said = fusevault("status", m, "--json", passphrase=None, env=device)
        assert "unsigned Share document(s) in this user's name were not signed" in said.stdout, said.stdout
    with mounted(vault, mnt, env=device) as m:  # her next mount there: her files signed, the share not
        assert (m / "proj" / "plan.txt").read_text() == "alice's plan\n"
    assert "sig" in _user(vault, "alice") and "en_private_keys" in _user(vault, "alice")
    assert "sig" not in adversary.get(vault, _planted_share(vault, proj)["_id"])
    assert _bobs_keys_of_alices(vault) == []
