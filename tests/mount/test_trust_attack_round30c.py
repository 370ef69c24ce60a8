"""Attack round 30c: a fresh-eyes audit of issue 22's list, through the `fusevault` commands.

Both holes are fixed (docs/SECURITY.md "Attack round 30"): their tests pass now.

Holes
=====

1. A forged user document arriving while mounted is silent.
   Attack: the CouchDB server (or a peer) puts the issue's forged settings (unsigned:
   `source_dir_to_watch` = a folder of documents, `delete_file_from_source` on, a TTL of 3650 days)
   over alice's UserDetails while her laptop is mounted and syncing.
   Seen: the document arrives in her store (read back from store.sqlite) and the sync settles; the
   settings are NOT applied (import stays "off": that part holds), but no alarm is raised: `fusevault
   status` shows no WARNING and the log has nothing, 30 s later and for as long as nobody runs `config
   show` (the first probe waited 60 s). The alarm appears only when something reads the settings:
   `fusevault config show --mount` (then status says it), or the next mount/unlock.
   Cause: fusevault/vault/services/absorbing.py:88-96 takes an arriving UserDetails into sharing and
   pins (`sharing.reload`, `trust.save`) but never runs `confirmed.effective`
   (fusevault/vault/model/confirmed.py:164, which raises "forged-settings" at :178); the import
   service reads the settings once per start (fusevault/imports/watcher.py:149) and restarts only on
   `settings_changed`, which only `config set`/`config confirm` call
   (fusevault/vault/services/requests.py:184).
   Impact: the promise "a clear warning in the log and in status" fails for the settings attack on a
   running mount: a hostile server's forgery goes unnoticed for the whole session (often days). Not
   applied, so no file moves. The same cause gives hole 2.
   Fix: in `absorb`, when one of the docs is the unlocked user's own UserDetails, run
   `confirmed.effective(doc, key, root, alarms)` and call the volume's `settings_changed` if the
   effective settings differ from the ones the import service runs with.
   Test: `test_forged_settings_arriving_from_the_server_while_mounted_are_said_in_status` (xfail;
   fails "gave up waiting for the alarm in status"). Control: the same scene followed by `config show`
   raises the alarm — `test_forged_settings_from_the_server_while_mounted_and_on_a_device_that_joins`.

2. Deletion turned off on her other device keeps deleting on the mounted laptop.
   Scene (not an attack, the safety side of the same cause): alice's laptop, mounted, watches ~/Inbox
   with `delete_file_from_source` on (set there). On her desktop she runs `config set
   delete_file_from_source off` (signed; a safer value, which docs/SECURITY.md "Settings" says
   "applies at once"). Her new document reaches the laptop's store (its _rev read back equals the
   server's) and the sync settles.
   Seen: a file then dropped in ~/Inbox is imported and DELETED from ~/Inbox by the laptop. After a
   remount of the laptop the next file is kept (control).
   Cause: as hole 1: the import service runs with the settings it loaded at its start
   (fusevault/imports/watcher.py:149) and is restarted only by this device's `config set`/`confirm`
   (fusevault/vault/services/requests.py:184); an arriving UserDetails
   (fusevault/vault/services/absorbing.py:88) never re-evaluates `confirmed.effective` nor calls
   `settings_changed`.
   Impact: the user who turns deletion (or watching) off because it is doing harm (a folder she
   should not have watched, files vanishing from it) keeps losing originals from her folder on every
   device that stays mounted, for days; docs/SECURITY.md's claim does not hold while mounted. (The
   imported copies are in the vault, so the data is not lost, but it leaves the user's folder.)
   Fix: the same as hole 1 (re-evaluate the effective settings when her own UserDetails arrives and
   restart the import service when they changed); or have the watcher re-read `confirmed.load` before
   each deletion.
   Test: `test_deletion_turned_off_on_her_other_device_stops_deleting_on_the_mounted_laptop` (xfail;
   fails "deleted from the Inbox though deletion was turned off"); control:
   `test_deletion_turned_off_on_her_other_device_applies_at_the_laptops_next_mount`.

What held
=========

1. Forged settings of hostile types, through the commands rather than the mount. A writer of the
   vault folder puts an unsigned UserDetails with settings no valid document has:
   `source_dir_to_watch` a list, `delete_file_from_source` the string "yes", `passphrase_expiry_ttl`
   as `{"ttl": [1], "unit": {}}`, as the string "forever", as "1e400" days and as "-5" hr,
   `target_dir_to_dump` an object, `peer_dir_for_storage` a number, a folder with a NUL byte.
   `fusevault config show --vault` (text and `--json`), `fusevault check` and `fusevault user show`
   were run on each. Seen: no traceback anywhere; `config show` keeps the safe values (no folder, no
   deletion, 8 hr TTL, `import_into` Imported) and lists the forged values only as pending, marked
   "NOT signed with your key", with the one-line warning on stderr; `check` refuses the user document
   and exits 26 (not 0); `user show` shows the fingerprint, "NOT self-signed", and that the keys
   still match the pins — `test_hostile_typed_forged_settings_are_shown_pending_never_applied`.
2. Read, not tried as tests: `confirmed.record_name` (fusevault/paths.py:109) keys what a device
   confirmed, and the "saw her signed" mark that stops the migration from signing a forged unsigned
   user document (fusevault/vault/model/migrate.py:75-80), by the vault's realpath and the user id,
   never by `vault.json`'s text; a moved vault is a device that saw nothing, which docs/SECURITY.md
   ("Out of reach", "Before the first signature") already says.
3. Planted node and replaced contents (epoch + 1, forged owner_dek), read through the offline
   commands rather than the mount: `export --vault` exports only the genuine files with the genuine
   bytes and names both refused fids on stderr (exit 0, as the mount serves on); `history`/`restore`
   of the planted name exit 4 ("neither in the vault nor in its trash"); `check` exits 26 naming the
   planted fid; no traceback — `test_replaced_contents_and_a_planted_node_through_the_offline_commands`.
4. One file rolled back (her older signed node put back), read first by `export --vault` and `check`:
   the newer bytes are exported, the rollback is said naming /report.txt and its fid, `check` exits
   26, and the next mount still raises the rollback alarm (the offline run did not launder it) —
   `test_a_rolled_back_file_through_the_offline_commands`.
5. bob's public key replaced (self-signed by the attacker), then `share --vault`, `group add`,
   `group member add team bob`, `share team --with @team`: all three .vfkey records made are sealed to
   bob's pinned key (none opens with the attacker's), `share` names the pinned fingerprint and warns;
   status of the next mount warns — `test_a_replaced_key_gets_nothing_through_offline_share_and_a_group`.
   (Remark: `group member add` itself says nothing about bob's changed key; only the later `share`
   does. Nothing is sealed at that step.)
6. The forged settings through the server: on the mounted laptop nothing applied and `config show`
   lists them pending; a desktop that joins after the forgery watches nothing, keeps the 8 hr TTL and
   warns at its mount — `test_forged_settings_from_the_server_while_mounted_and_on_a_device_that_joins`.

Remarks (user-facing, not holes)
================================

- Alarms go to the log as their text only (fusevault/vault/model/alarms.py:42,
  `log.warning("%s", text)`), and `fusevault status` prints the text only
  (fusevault/cli/status.py:94), though the alarm carries its subject and user (`--json` has them).
  Some texts do not name the user: "this user's document is not signed with their key" (migrate.py:77),
  "the settings in this user's document are not signed" (confirmed.py:178), "two bodies of this
  user's settings" (confirmed.py:225), users.py:245. In a single-user mount that user is the asker;
  in the log of a shared mount serving several users the line does not say whose document it is.
  Proposed: log `"%s: %s", subject/user, text` and print the user in `status` for shared mounts.

Not tried
=========

A forged share or group membership through the server rather than the store, a READ recipient's
forged version through `restore --vault`, a traversal name signed by a WRITE grantee through `export`,
sidecar (.vf/.vfkey) forgeries through the offline commands, whole-store rollback read by `export
--vault`, the shared mount (several users' alarms in one log), and whether a signed *unsafe* change
from her other device (watching turned on) stays pending on a running mount (it should, as nothing
re-reads the settings; not run). The round was about 30 minutes.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import adversary
import pytest
from conftest import fusevault, mounted

from fusevault.crypto.identity import Identity, open_file_key
from fusevault.crypto.signing import sign_doc
from fusevault.errors import VaultError
from fusevault.vault.model.trust import doc_fingerprint
from tests.mount.test_trust_settings import forge_user

HOSTILE = [
    {"source_dir_to_watch": ["/etc"], "delete_file_from_source": "yes"},
    {"passphrase_expiry_ttl": {"ttl": [1], "unit": {}}},
    {"passphrase_expiry_ttl": "forever"},
    {"passphrase_expiry_ttl": {"ttl": "1e400", "unit": "day"}},
    {"passphrase_expiry_ttl": {"ttl": "-5", "unit": "hr"}},
    {"target_dir_to_dump": {"a": 1}, "peer_dir_for_storage": 5},
    {"source_dir_to_watch": "relative/x\x00y", "import_into": "../../escape"},
]
SAFE = {"source_dir_to_watch": None, "target_dir_to_dump": None, "peer_dir_for_storage": None,
        "delete_file_from_source": False, "passphrase_expiry_ttl": {"ttl": "8", "unit": "hr"},
        "import_into": "Imported"}


@pytest.mark.parametrize("changes", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_typed_forged_settings_are_shown_pending_never_applied(vault: Path, changes: dict) -> None:
    forge_user(vault, "unsigned", changes)

    shown = fusevault("config", "show", "--vault", vault, "--json")
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    config = json.loads(shown.stdout)
    assert {k: config[k] for k in SAFE} == SAFE
    assert "not signed with their key" in shown.stderr

    text = fusevault("config", "show", "--vault", vault)
    assert text.returncode == 0 and "Traceback" not in text.stderr, text.stderr
    assert "NOT signed with your key" in text.stdout

    check = fusevault("check", vault)
    assert check.returncode == 26 and "Traceback" not in check.stderr, check.stderr
    assert "refused: this user's document is not signed" in check.stdout

    user = fusevault("user", "show", "alice", "--vault", vault)
    assert user.returncode == 0 and "Traceback" not in user.stderr, user.stderr
    assert "NOT self-signed" in user.stdout and "matches the keys you pinned" in user.stdout


def test_replaced_contents_and_a_planted_node_through_the_offline_commands(vault: Path,
                                                                          tmp_path: Path) -> None:
    """Issue 22's planted node and replaced contents (tests/mount/test_trust_writes.py does them at the
    mount), read by `export --vault`, `history --vault`, `restore --vault` and `check` instead."""
    from tests.mount.test_trust_writes import _node_fid, _planted

    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "notes.txt").write_text("first")
        (mnt / "notes.txt").write_text("genuine notes")
    notes = _node_fid(vault, "alice", "notes.txt")
    old = adversary.get(vault, notes)
    forged = _planted(vault, "alice", "notes.txt", fid=notes, epoch=old["epoch"] + 1)
    planted = _planted(vault, "alice", "URGENT-from-your-bank.txt")
    adversary.put(vault, forged, planted)

    out = tmp_path / "out"
    out.mkdir()
    exported = fusevault("export", ".", out, "--vault", vault)
    assert exported.returncode == 0 and "Traceback" not in exported.stderr, exported.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "genuine notes"
    assert f"refused a change of file {notes}" in exported.stderr
    assert f"refused a change of file {planted['_id']}" in exported.stderr

    history = fusevault("history", "notes.txt", "--vault", vault)
    assert history.returncode == 0 and "13 B" in history.stdout and "Traceback" not in history.stderr
    gone = fusevault("history", "URGENT-from-your-bank.txt", "--vault", vault)
    assert gone.returncode == 4 and "Traceback" not in gone.stderr
    gone = fusevault("restore", "URGENT-from-your-bank.txt", "--vault", vault)
    assert gone.returncode == 4 and "Traceback" not in gone.stderr

    check = fusevault("check", vault)
    assert check.returncode == 26 and "Traceback" not in check.stderr
    assert planted["_id"] in check.stdout


def test_a_rolled_back_file_through_the_offline_commands(vault: Path, tmp_path: Path) -> None:
    """tests/mount/test_trust_rollback.py's one-file rollback, read by `export --vault` and `check`
    first: they export the newer contents, say the rollback, and the next mount still says it."""
    from tests.mount.test_trust_rollback import alarms, changed, nodes, root_fid

    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "report.txt").write_bytes(b"first draft")
    old = nodes(vault)
    with mounted(vault, mnt):
        (mnt / "report.txt").write_bytes(b"final, signed off")
    (fid,) = changed(old, nodes(vault), root_fid(vault))
    adversary.put(vault, old[fid])

    out = tmp_path / "out"
    out.mkdir()
    exported = fusevault("export", "report.txt", out, "--vault", vault)
    assert exported.returncode == 0, exported.stderr
    assert (out / "report.txt").read_bytes() == b"final, signed off"
    assert f"rollback: an older state of /report.txt ({fid})" in exported.stderr
    check = fusevault("check", vault)
    assert check.returncode == 26 and "rollback" in check.stdout
    with mounted(vault, mnt):
        assert [a["subject"] for a in alarms(mnt) if a["kind"] == "rollback"] == [fid]
        assert (mnt / "report.txt").read_bytes() == b"final, signed off"


def test_a_replaced_key_gets_nothing_through_offline_share_and_a_group(vault: Path, tmp_path: Path) -> None:
    """tests/mount/test_trust_grants.py's replaced public key, through `share --vault`, `group member
    add --vault` and a share with the group: every .vfkey made is sealed to bob's pinned key, none opens
    with the attacker's; `share` warns and names bob's pinned fingerprint."""
    from tests.mount.test_trust_grants import BOB, _admin, _user

    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):  # alice meets bob: his keys are pinned
        (mnt / "notes.txt").write_text("for bob")
        (mnt / "team").mkdir()
        (mnt / "team" / "t.txt").write_text("team file")
    bob = _user(vault, "bob")
    genuine = doc_fingerprint(bob)
    evil = Identity.new(bob["_id"])
    adversary.put(vault, sign_doc(bob["_id"], evil.sign, {**bob, **evil.public_fields()}))

    shared = fusevault("share", "notes.txt", "--with", "bob", "--perm", "READ", "--vault", vault)
    assert shared.returncode == 0 and f"bob: key fingerprint {genuine}" in shared.stdout
    assert "keys of user 'bob' changed" in shared.stderr
    for args in (("group", "add", "team"), ("group", "member", "add", "team", "bob", "--perm", "READ"),
                 ("share", "team", "--with", "@team", "--perm", "READ")):
        result = fusevault(*args, "--vault", vault)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    records = [json.loads(p.read_bytes()) for p in vault.rglob("*.vfkey")]
    assert len(records) == 3  # notes.txt for bob, team and team/t.txt for the group
    for record in records:
        with pytest.raises(VaultError):
            open_file_key(evil, record["owner"], record["fid"], record["epoch"],
                          base64.b64decode(record["key"]))
    with mounted(vault, mnt):
        assert "keys of user 'bob' changed" in fusevault("status", mnt, passphrase=None).stdout


def test_forged_settings_from_the_server_while_mounted_and_on_a_device_that_joins(couchdb_url: str,
                                                                                  tmp_path: Path) -> None:
    """The issue's forged settings, through the CouchDB server (not the store) while alice's laptop is
    mounted, and then to a new device of hers that joins after the forgery: neither watches the folder
    nor deletes from it, both list the values as pending, the laptop warns in `status`."""
    from conftest import first_device, new_device, settled, wait_for

    from tests.mount.test_trust_settings import FORGED, documents, status, warned

    folder, files = documents(tmp_path)
    laptop = first_device(couchdb_url, tmp_path)
    server = adversary.Server(couchdb_url)
    with mounted(laptop, tmp_path / "a") as a:
        wait_for(lambda: settled(a), "the first push")
        [me] = server.all("UserDetails")
        forged = {k: v for k, v in me.items() if k not in ("sig", "_rev")}
        forged.update({**FORGED, "source_dir_to_watch": str(folder), "import_into": "team"})
        server.put(forged)
        wait_for(lambda: "source_dir_to_watch" in json.loads(fusevault(
            "config", "show", "--mount", a, "--json", passphrase=None).stdout)["pending"], "pending")
        assert warned(a, "not signed with their key")
        assert status(a)["tasks"]["import"]["state"] == "off"
        shown = fusevault("status", a, passphrase=None).stdout
        assert "WARNING" in shown and "not signed with their key" in shown
        config = json.loads(fusevault("config", "show", "--mount", a, "--json", passphrase=None).stdout)
        assert config["source_dir_to_watch"] is None and config["import_into"] == "Imported"
        assert config["pending"]["source_dir_to_watch"] == str(folder)
    desktop = new_device(couchdb_url, tmp_path, "desktop")
    with mounted(desktop, tmp_path / "b") as b:
        wait_for(lambda: status(b)["tasks"]["import"]["state"] != "starting", "the import service")
        assert status(b)["tasks"]["import"]["state"] == "off"
        [unlocked] = status(b)["unlocked"]
        assert unlocked["expires"] - unlocked["since"] < 9 * 3600
        assert warned(b, "not signed with their key")
    for name, data in files.items():
        assert (folder / name).read_bytes() == data


def test_forged_settings_arriving_from_the_server_while_mounted_are_said_in_status(couchdb_url: str,
                                                                                   tmp_path: Path) -> None:
    """The server puts the issue's forged settings (unsigned) over alice's user document while her laptop
    is mounted and syncing.  The document arrives in her store (seen there), the sync settles, and then
    nobody runs `config show`: `fusevault status` should say the forgery, as it does at the next mount."""
    from conftest import first_device, settled, wait_for

    from tests.mount.test_trust_settings import FORGED, documents, status, warned

    folder, files = documents(tmp_path)
    laptop = first_device(couchdb_url, tmp_path)
    server = adversary.Server(couchdb_url)
    with mounted(laptop, tmp_path / "a") as a:
        wait_for(lambda: settled(a), "the first push")
        [me] = server.all("UserDetails")
        forged = {k: v for k, v in me.items() if k not in ("sig", "_rev")}
        forged.update({**FORGED, "source_dir_to_watch": str(folder)})
        server.put(forged)
        wait_for(lambda: adversary.get(laptop, me["_id"]).get("source_dir_to_watch") == str(folder),
                 "the forged document in her store")
        wait_for(lambda: settled(a), "the sync to settle")
        assert status(a)["tasks"]["import"]["state"] == "off"  # held: not applied
        wait_for(lambda: warned(a, "not signed with their key"), "the alarm in status", timeout=30)
    for name, data in files.items():
        assert (folder / name).read_bytes() == data



def _deletion_turned_off_elsewhere(couchdb_url: str, tmp_path: Path, remount: bool) -> None:
    """alice watches ~/Inbox with deletion on, on her laptop (mounted). On her desktop she turns deletion
    off (signed, a safer value: "applies at once" per docs/SECURITY.md "Settings"). Once the laptop has
    her new document (and, with ``remount``, is mounted again), a file dropped in the Inbox should be
    imported and kept."""
    from conftest import first_device, new_device, settled, wait_for

    laptop = first_device(couchdb_url, tmp_path)
    inbox = tmp_path / "Inbox"
    inbox.mkdir()
    with mounted(laptop, tmp_path / "a") as a:
        for key, value in (("settle_seconds", "0.1"), ("source_dir_to_watch", inbox),
                           ("delete_file_from_source", "on")):
            result = fusevault("config", "set", key, value, "--mount", a, passphrase=None)
            assert result.returncode == 0, result.stderr
        (inbox / "one.txt").write_bytes(b"one")
        wait_for(lambda: (a / "Imported" / "one.txt").exists() and not (inbox / "one.txt").exists(),
                 "the first import, deleted from the Inbox (deletion on)")
        wait_for(lambda: settled(a), "the push")
        desktop = new_device(couchdb_url, tmp_path, "desktop")
        with mounted(desktop, tmp_path / "b") as b:
            result = fusevault("config", "set", "delete_file_from_source", "off", "--mount", b,
                               passphrase=None)
            assert result.returncode == 0, result.stderr
            wait_for(lambda: settled(b), "the desktop's push")
        [me] = adversary.Server(couchdb_url).all("UserDetails")
        wait_for(lambda: adversary.get(laptop, me["_id"])["_rev"] == me["_rev"],
                 "her new document on the laptop")
        wait_for(lambda: settled(a), "the laptop's sync")
        if not remount:
            _drop_and_keep(inbox, a)
            return
    with mounted(laptop, tmp_path / "a") as a:
        _drop_and_keep(inbox, a)


def _drop_and_keep(inbox: Path, mnt: Path) -> None:
    from conftest import wait_for

    (inbox / "two.txt").write_bytes(b"two")
    wait_for(lambda: (mnt / "Imported" / "two.txt").exists(), "the second import")
    assert (inbox / "two.txt").exists(), "deleted from the Inbox though deletion was turned off"


def test_deletion_turned_off_on_her_other_device_applies_at_the_laptops_next_mount(couchdb_url: str,
                                                                                   tmp_path: Path) -> None:
    """Control for hole 2: the same scene with the laptop mounted again keeps the file."""
    _deletion_turned_off_elsewhere(couchdb_url, tmp_path, remount=True)


def test_deletion_turned_off_on_her_other_device_stops_deleting_on_the_mounted_laptop(
        couchdb_url: str, tmp_path: Path) -> None:
    _deletion_turned_off_elsewhere(couchdb_url, tmp_path, remount=False)


def _watch_starts(inbox: Path) -> int:
    """How many times a mount's import service started watching ``inbox`` (the mount logs)."""
    logs = Path(os.environ["FUSEVAULT_STATE_DIR"]) / "logs"
    return sum(log.read_text().count(f"import: watching {inbox}\n") for log in logs.glob("mount-*.log"))


def test_a_flood_of_her_unchanged_user_document_restarts_no_import(couchdb_url: str, tmp_path: Path) -> None:
    """Her user document arriving makes the import service read the settings again (hole 2's fix); the
    server sending her unchanged document again and again (each a new revision) changes no setting, so
    the watch is not started over each time (a restart drops what waits to settle), while a real change
    of the settings still starts it over (the control)."""
    from conftest import first_device, settled, wait_for

    laptop = first_device(couchdb_url, tmp_path)
    inbox = tmp_path / "Inbox"
    inbox.mkdir()
    server = adversary.Server(couchdb_url)
    with mounted(laptop, tmp_path / "a") as a:
        for key, value in (("settle_seconds", "0.1"), ("source_dir_to_watch", inbox)):
            result = fusevault("config", "set", key, value, "--mount", a, passphrase=None)
            assert result.returncode == 0, result.stderr
        (inbox / "one.txt").write_bytes(b"one")
        wait_for(lambda: (a / "Imported" / "one.txt").exists(), "the first import")
        wait_for(lambda: settled(a), "the push")
        started = _watch_starts(inbox)
        assert started >= 1
        for _ in range(4):
            [me] = server.all("UserDetails")
            rev = server.put(me)
            wait_for(lambda doc_id=me["_id"], rev=rev: adversary.get(laptop, doc_id)["_rev"] == rev,
                     "her document again on the laptop")
            wait_for(lambda: settled(a), "the laptop's sync")
        (inbox / "two.txt").write_bytes(b"two")
        wait_for(lambda: (a / "Imported" / "two.txt").exists(), "the second import")
        assert _watch_starts(inbox) == started, "the import service started over for an unchanged document"
        result = fusevault("config", "set", "settle_seconds", "0.2", "--mount", a, passphrase=None)
        assert result.returncode == 0, result.stderr
        wait_for(lambda: _watch_starts(inbox) == started + 1, "the watch started over for a changed setting")
