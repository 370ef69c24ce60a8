"""Attack round 52t, the outside view: the real ``fusevault`` command, the real mount, the relay's
link store, the watched folder.

Hole 1 (medium: a stranger plants her version history; she cannot remove it): a name ``.versions``
  at the root of the vault, made by a path that does not go through the mount's FUSE handlers,
  takes the place of the read-only version-history tree.
  Attack (a stranger with her drop-box link, which is meant for strangers): alice opens a drop box on
    her drive's root (``fusevault link create ~/Private --append``: accepted, "drop box for /").  The
    stranger learns the names of her versions' files (their format is the time of the save, e.g.
    ``2026-12-06T16-00-24.043Z.txt``; he need not be exact, he can drop many) and drops a folder
    ``.versions/plan.txt/<NAME>`` holding his bytes.  ``link collect`` (the mount does it every
    minute) takes it in: "took in 2 dropped file(s)".
  Seen: ``test_a_dropped_folder_named_versions_does_not_replace_her_history`` (run, fails): after an
    ``ls -a`` of the drive, ``cat ~/Private/.versions/plan.txt/<NAME>`` prints "EVIL planted version"
    where it printed her old contents a moment before; ``ls -la`` shows ``.versions`` as an ordinary
    folder; ``rm -rf ~/Private/.versions`` is "Read-only file system", and it is still there after a
    remount.  The same through the watched folder with ``import_into /`` (accepted) and a folder
    ``.versions`` in it (``test_an_imported_folder_named_versions_does_not_replace_her_history``,
    run, fails): whoever can put a folder into her Downloads/phone/scanner folder does it.
  Cause: ``.versions`` is reserved only in fs/operations.py (``_changing``, ``lookup``); the vault
    itself takes it as any name: links/owner.py ``_take``/``unique_name`` (its ``folder.children``
    does not hold the virtual name, so no ``(2)``) and imports/importer.py ``_copy`` (``make_dirs``)
    write a real child ``.versions`` of the root.  ``lookup`` still answers the view, but ``readdir``
    (readdirplus) lists the real node, and the kernel then caches the dentry ``.versions`` -> the
    real folder, so later path walks go into the stranger's folder.  ``_changing`` refuses every
    change of that name at the root, so neither ``rm`` nor ``mv`` can take it away.
  Impact: "plant or replace a file unnoticed": she restores (``cp .versions/plan.txt/X plan.txt``)
    bytes a stranger chose, believing them her own earlier version; her real history is out of reach
    through the mount while the dentry lives; a stranger's data she cannot delete (a drop of any size
    stays in her vault and syncs to every device).  Needs a drop box on the root or ``import_into``
    at the root (both accepted, documented).
  Fix (suggested): reserve ``.versions`` at the root in the vault (Volume's create/rename/mkdir, and
    nodes arriving from a store/peer), not only in FUSE: ``unique_name`` and the importer take the
    next free name (``.versions (2)``), ``link create --append`` and ``import_into`` on the root stay
    fine; ``readdir`` of the root skips a real ``.versions`` and a root-level real one gets renamed at
    unlock so that it can be removed.
  Her own command does it too (low, run): ``fusevault restore plan.txt --to ~/Private/.versions``
    answers "restored .versions as it was at ...", exit 0, and the root then holds a real file
    ``.versions`` over her history that ``rm`` cannot take away
    (``test_restore_to_the_versions_name_is_refused``).
  Tests: the three above.

Hole 2 (medium-high: a stranger's bytes shown as another user's share, no warning; low in honest
  use: her own folder ``shared`` hides every share silently):  the virtual folders ``shared/`` and
  ``groups/`` at the root, where shares from others appear, give way to a real folder of hers of that
  name, and a stranger can make that folder.
  Attack (a stranger with her root drop-box link, as in hole 1; the same through ``import_into /``, read):
    he drops a folder ``shared/bob/contract.txt`` ("EVIL contract: pay to X") while alice has no share
    yet (``link collect`` takes it in as ``shared``).  Later bob, a user of her vault, shares his
    ``contract.txt`` with her (READ).
  Seen: ``test_a_dropped_folder_named_shared_is_not_shown_as_bobs_share`` (run, fails): in her mount,
    ``shared/bob/contract.txt`` reads "EVIL contract: pay to X"; ``fusevault shares`` says
    ``contract.txt <- bob READ``; ``fusevault status`` shows no warning; bob's real file is nowhere
    in her mount.  Honest use (``test_her_own_folder_named_shared_does_not_hide_shares_silently``,
    run, fails): her own folder ``shared`` (a common name) makes every share with her invisible, with
    only a line in the mount's log.
  Cause: vault/tree/loading.py (the loop over ``shares.my_reaches``): ``folder(root, SHARED_DIR, ...)``
    returns None when a real node of hers holds the name, and the share is skipped with
    ``log.warning("... is taken by a file of your own: shares are not shown there")``; nothing
    reserves ``shared``/``groups`` when a drop or an import makes a root folder (links/owner.py
    ``unique_name`` sees no virtual folder while she has no share yet).
  Impact: "plant or replace a file unnoticed" by someone who holds only a drop link: she reads, and
    acts on, the stranger's file as bob's, with ``shares`` confirming bob shared ``contract.txt``;
    bob's genuine share never appears; no alarm.
  Fix (suggested): show the shares under a name no file of hers holds (``shared (2)``, or shares
    always first and her folder renamed/shown aside), and say it in ``fusevault status`` (WARNING);
    reserve ``shared``, ``groups`` and ``.versions`` at the root for drops and imports (next free name).
  Tests: those two.

Hole 3 (medium: whoever runs the link store, or is on its path without TLS, makes her mount grow
  without bound, every minute, until the kernel kills it):  the client reads every answer of the
  relay and the link store whole, with no cap.
  Attack: alice makes a drop box on a link store (``link create Inbox --append --relay URL``); its
    operator (a party the brief trusts with "sizes and timing" only) answers ``GET
    /items/ID/versions`` with a body of 1 GiB (here: spaces, ``Content-Length`` given; a chunked
    endless one does the same).  The mount asks by itself, at its start and every minute.
  Seen: ``test_a_huge_answer_from_the_link_store_does_not_grow_the_mount`` (run, fails): one ``link
    collect`` takes the mount process from 77 MB to a peak of 3.2 GB (VmHWM) for a 1.5 GiB answer, 2.7
    GB still held after; it then says "the link store's list of versions is malformed".  A larger
    answer is an OOM kill of the process that serves her drive.
  Cause: transfer/client.py ``RelayClient.call`` (``httpx.Client.request``: the whole body read into
    memory) and links/client.py ``versions``/``latest``/``block`` (``.content``, then
    ``loads_untrusted``), for every answer, of the relay too (send/receive) and of ``link get``.
  Impact: "unbounded work/memory from hostile input"; the mount (her whole drive, and what programs
    had not saved) taken down by a remote server, repeatedly, at each start.
  Fix (suggested): read answers as streams (``http.stream``) with a cap per route (a version list:
    a few MiB; a block: MAX_BLOCK plus its tag; JSON: the relay's own MAX_JSON), and refuse beyond it
    (CorruptData / RelayUnavailable), as the relay does for bodies it receives.
  The same for send/receive (run): ``FUSEVAULT_CODE=... fusevault receive 4821 --relay URL`` against
    a relay answering 1 GiB peaks at 2.1 GB resident and ends "internal error (RefusedJson: JSON of
    1073741824 bytes is over the limit of 268435456)", exit 70 with a crash log, where the quality bar
    asks for one line: ``test_a_huge_answer_from_the_relay_is_one_line_and_bounded`` (run, fails).
  Tests: those two.

Hole 4 (medium, honest use: a group member's drop box, after he leaves and rejoins the group, hides
  the group's files from him for good, unsaid): hole 2's cause, reached with no stranger at all.
  Scene: alice shares ``proj`` with @team (WRITE); bob, a member, opens a drop box on it (``link
    create ~/drive/groups/team/proj --append``: accepted).  The admin removes bob from @team; a
    client's scan is dropped; bob's next collection (his mount does it every minute) answers "took
    in 1 dropped file(s)".  Later bob is added to @team again and alice writes ``proj/plan.txt``.
  Seen: ``test_a_drop_box_in_a_group_folder_does_not_hide_the_group_after_a_removal`` (run, fails):
    the collection made a real folder ``groups/team/proj`` of bob's own (links/owner.py
    ``_box_folder`` -> placing.py ``make_dirs`` on the box's path, the virtual ``groups`` being gone
    while he had no group share); after he rejoins, ``groups/team/proj`` lists only ``scan.pdf``:
    the team's ``plan.txt`` is nowhere in his mount, ``fusevault status`` says nothing.
  Impact: shares with him silently not shown (he works on stale copies or misses the team's files);
    the scan meant for the team went to a private folder, "arrived" all the same.
  Fix (suggested): as hole 2; and a box whose path lay in ``shared/`` or ``groups/`` waits (BoxWaits,
    said) rather than be made as a folder of her own.
  Test: that one.

Hole 5 (medium: any client of a public relay, knowing no code, ends every transfer on it, with a
  "someone in the middle" alarm on both ends):  session names are 4 digits, and one wrong
  confirmation ends the session for both.
  Attack: a stranger on the internet, with one address and the relay's default limits, asks
    ``POST /sessions/join`` for every name 0000..9999 (404 for a free one; about 25 s at 400 calls
    per second) and, for each live one, runs ``fusevault receive NAME`` with any code.
  Seen: ``test_a_stranger_who_scans_session_names_cannot_end_her_send`` (run, fails): alice's
    ``fusevault send report.txt`` is found by the scan, the stranger's receive with a wrong code
    ends it: alice's send exits 16 "wrong code, or someone in the middle: nothing was sent", and bob,
    with the right code, gets nothing.
  Cause: relay/state.py ``_NAME_DIGITS = 4`` (a name space a single client covers in seconds) and
    the one-guess rule (SECURITY.md "Guessing online: one guess per session"); the join limits count
    per session and address, so they slow no scan of many sessions.  docs/SECURITY.md says a
    cheating *relay* can end a session; any client can, for all of them.
  Impact: send/receive made unusable on a public relay by one outsider, repeatedly; a false
    man-in-the-middle alarm in honest use.  The code's secrecy holds (one guess per session).
  Fix (suggested): longer session names (or names the sender and receiver derive, e.g. the number
    part of the code, plus random digits not readable by a scan); a per-address limit on joins of
    *distinct* sessions (and 404s) per minute; optionally, a receiver's failed confirmation ends only
    that receiver's attempt while the sender stays up for N more (the bound becomes N guesses).
  Test: that one.

Hole 6 (low-medium: in a drive opened to other users, a stranger's drop arrives writable by every
  local user):  a dropped file keeps the mode the dropper chose, less nothing.
  Scene: alice's ``--allow-other-users`` drive (a web server, a container use it), umask 022, a drop
    box ``Inbox``.  A stranger drops ``scan.pdf`` in mode 0666.
  Seen: ``test_a_dropped_file_in_a_drive_open_to_others_is_not_world_writable`` (run, fails):
    ``Inbox/scan.pdf`` is ``-rw-rw-rw-``; the kernel (``default_permissions``) then lets any local
    uid rewrite it (an in-place save of hers keeps that mode: not run).  ``link get``
    takes the umask off ("less your umask, as tar does"); links/owner.py ``_write_drop`` passes
    ``entry["mode"] & SAFE_MODE_BITS`` to ``write_file`` with no umask.
  Impact: another local user changes a document in her drive (before or after she reads it) that
    she never made writable; "write beyond their grants" where the grants are her modes.
  Fix (suggested): ``& ~0o022`` (or the mount owner's umask) on dropped files and folders, as
    ``link get`` does.
  Test: that one.

Held: read, earlier rounds' tests cover them (not re-run): a version id with "/" from the link
  store, a dropped symlink top, names twice, a box folder moved away, the receive resume file and
  partial files (HMAC'd, O_NOFOLLOW).  Seen in the runs above: a wrong code ends the send with exit
  16 and nothing written; the mount refuses the link store's huge answer as malformed (only the
  memory it takes first is unbounded).  Read: FUSE refuses ``.versions`` at the root for mkdir,
  create, mknod, symlink, link and rename (``_changing``).
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import couchdb
import pytest
from conftest import fusevault, mount_status, mounted, running_relay

BOB = "bob's own passphrase"


@pytest.fixture
def link_store(redis_url: str, couchdb_server: str):
    db_url = f"{couchdb_server}/links{uuid.uuid4().hex[:8]}"
    with running_relay(redis_url, "--couchdb", db_url) as (_, url):
        yield url, couchdb.Server(couchdb_server)[db_url.rsplit("/", 1)[1]]


def _two_versions(mnt: Path) -> list[str]:
    (mnt / "plan.txt").write_text("her plan v1\n")
    time.sleep(1.2)
    (mnt / "plan.txt").write_text("her plan v2\n")
    names = sorted(os.listdir(mnt / ".versions" / "plan.txt"))
    assert len(names) == 2, names
    assert (mnt / ".versions" / "plan.txt" / names[0]).read_text() == "her plan v1\n"  # held before
    return names


def _planted(where: Path, names: list[str]) -> Path:
    evil = where / ".versions" / "plan.txt"
    evil.mkdir(parents=True)
    for name in names:
        (evil / name).write_text("EVIL planted version\n")
    return where / ".versions"


def _history_seen(mnt: Path, names: list[str]) -> list[str]:
    subprocess.run(["ls", "-la", mnt], capture_output=True, check=True)  # as a file manager lists it
    seen = []
    for name in names:
        try:
            seen.append((mnt / ".versions" / "plan.txt" / name).read_text())
        except OSError as err:  # .versions is no folder any more
            seen.append(f"{type(err).__name__}: {err.strerror}")
    return seen


def test_a_dropped_folder_named_versions_does_not_replace_her_history(
        link_store, vault: Path, tmp_path: Path) -> None:
    relay, _ = link_store
    with mounted(vault, tmp_path / "mnt") as mnt:
        names = _two_versions(mnt)
        made = fusevault("link", "create", mnt, "--append", "--relay", relay)
        assert made.returncode == 0, made.stderr
        planted = _planted(tmp_path / "stranger", names)
        pushed = fusevault("link", "push", planted, made.stdout.strip(), passphrase=None)
        assert pushed.returncode == 0, pushed.stderr
        collected = fusevault("link", "collect", cwd=mnt)
        assert collected.returncode == 0, collected.stderr
        assert _history_seen(mnt, names) == ["her plan v1\n", "her plan v2\n"]


def test_an_imported_folder_named_versions_does_not_replace_her_history(vault: Path, tmp_path: Path) -> None:
    source = tmp_path / "Downloads"
    source.mkdir()
    with mounted(vault, tmp_path / "mnt") as mnt:
        names = _two_versions(mnt)
        for key, value in (("settle_seconds", "0.2"), ("import_into", "/"), ("source_dir_to_watch", source)):
            result = fusevault("config", "set", key, str(value), "--mount", mnt, passphrase=None)
            assert result.returncode == 0, result.stderr
        _planted(source, names)
        deadline = time.monotonic() + 60
        # Imported at last under a name of its own, or (the hole) as a root ".versions" of its own.
        while (not any(n.startswith(".versions") for n in os.listdir(mnt))
               and time.monotonic() < deadline):
            time.sleep(0.2)
        time.sleep(1)
        assert _history_seen(mnt, names) == ["her plan v1\n", "her plan v2\n"]


def _add_bob(vault: Path) -> None:
    added = fusevault("user", "add", "bob", "--uid", "2001", passphrase=BOB,
                      env={"FUSEVAULT_VAULT": str(vault), "FUSEVAULT_NEW_PASSPHRASE": BOB})
    assert added.returncode == 0, added.stderr


def _bob_shares_his_contract(vault: Path, tmp_path: Path) -> None:
    with mounted(vault, tmp_path / "bobs", "--user", "bob", passphrase=BOB) as his:
        (his / "contract.txt").write_text("bob's real contract\n")
        shared = fusevault("share", his / "contract.txt", "--with", "alice", "--perm", "READ")
        assert shared.returncode == 0, shared.stderr


def _everything_readable(top: Path) -> dict[str, str]:
    found = {}
    for where, _, files in os.walk(top):
        for name in files:
            path = Path(where) / name
            found[str(path.relative_to(top))] = path.read_text(errors="replace")
    return found


def test_a_dropped_folder_named_shared_is_not_shown_as_bobs_share(
        link_store, vault: Path, tmp_path: Path) -> None:
    relay, _ = link_store
    _add_bob(vault)
    fake = tmp_path / "stranger" / "shared" / "bob"
    fake.mkdir(parents=True)
    (fake / "contract.txt").write_text("EVIL contract: pay to X\n")
    with mounted(vault, tmp_path / "mnt", "--user", "alice") as mnt:
        made = fusevault("link", "create", mnt, "--append", "--relay", relay)
        assert made.returncode == 0, made.stderr
        pushed = fusevault("link", "push", fake.parent, made.stdout.strip(), passphrase=None)
        assert pushed.returncode == 0, pushed.stderr
        assert fusevault("link", "collect", cwd=mnt).returncode == 0
    _bob_shares_his_contract(vault, tmp_path)
    with mounted(vault, tmp_path / "mnt", "--user", "alice") as mnt:
        assert "contract.txt  <-  bob" in fusevault("shares", cwd=mnt).stdout  # she is told bob shares it
        seen = (mnt / "shared" / "bob" / "contract.txt").read_text()
        assert seen == "bob's real contract\n", (seen, _everything_readable(mnt))


def test_her_own_folder_named_shared_does_not_hide_shares_silently(vault: Path, tmp_path: Path) -> None:
    _add_bob(vault)
    with mounted(vault, tmp_path / "mnt", "--user", "alice") as mnt:
        (mnt / "shared").mkdir()
        (mnt / "shared" / "holiday.txt").write_text("her own\n")
    _bob_shares_his_contract(vault, tmp_path)
    with mounted(vault, tmp_path / "mnt", "--user", "alice") as mnt:
        status = fusevault("status", cwd=mnt).stdout
        shown = "bob's real contract\n" in _everything_readable(mnt).values()
        assert shown or "WARNING" in status, status


HUGE = 1024 * 2**20


class _HostileLinkStore(http.server.BaseHTTPRequestHandler):
    """Makes an item (POST) as a link store does; answers every GET with HUGE bytes."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = json.dumps({"id": "AbCdEfGhIjKlMnOpQrStUvWx"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(HUGE))
        self.end_headers()
        chunk = b" " * 2**20
        try:
            for _ in range(HUGE // len(chunk)):
                self.wfile.write(chunk)
        except OSError:
            pass


class _HostileRelay(_HostileLinkStore):
    """Every answer HUGE bytes."""

    do_POST = _HostileLinkStore.do_GET


def _peak_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def test_a_huge_answer_from_the_link_store_does_not_grow_the_mount(vault: Path, tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HostileLinkStore)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with mounted(vault, tmp_path / "mnt") as mnt:
            url = f"http://127.0.0.1:{server.server_address[1]}"
            made = fusevault("link", "create", mnt / "Inbox", "--append", "--relay", url)
            assert made.returncode == 0, made.stderr
            pid = mount_status(mnt)["pid"]
            before = _peak_kib(pid)
            collected = fusevault("link", "collect", cwd=mnt)
            assert collected.returncode != 0  # refused, one way or the other
            grown = _peak_kib(pid) - before
            assert grown < 256 * 1024, f"the mount grew by {grown // 1024} MiB for a {HUGE >> 20} MiB answer"
    finally:
        server.shutdown()
        server.server_close()


def test_a_huge_answer_from_the_relay_is_one_line_and_bounded(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HostileRelay)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        (tmp_path / "out").mkdir()
        command = [sys.executable, "-m", "fusevault", "receive", "4821", "-o", str(tmp_path / "out"),
                   "--relay", url]
        timed = subprocess.run(["/usr/bin/time", "-f", "PEAK %M", *command], capture_output=True, text=True,
                               env={**os.environ, "FUSEVAULT_CODE": "618-cloud-tower"}, timeout=300,
                               stdin=subprocess.DEVNULL)
        peak_kib = int(timed.stderr.rsplit("PEAK ", 1)[1].split()[0])
        said = timed.stderr.rsplit("PEAK ", 1)[0].strip()
        assert "internal error" not in said and timed.returncode != 70, said
        assert peak_kib < 384 * 1024, f"receive peaked at {peak_kib >> 10} MiB for a {HUGE >> 20} MiB answer"
    finally:
        server.shutdown()
        server.server_close()


def _admin(vault: Path, *args: str, passphrase: str | None = None) -> None:
    done = fusevault(*args, env={"FUSEVAULT_VAULT": str(vault), "FUSEVAULT_NEW_PASSPHRASE": passphrase or ""},
                     **({"passphrase": passphrase} if passphrase else {}))
    assert done.returncode == 0, done.stderr


def test_a_drop_box_in_a_group_folder_does_not_hide_the_group_after_a_removal(
        link_store, vault: Path, tmp_path: Path) -> None:
    relay, _ = link_store
    _add_bob(vault)
    _admin(vault, "group", "add", "team", "--owner", "alice")
    _admin(vault, "group", "member", "add", "team", "bob", "--perm", "READ,WRITE")
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt, "--user", "alice"):
        (mnt / "proj").mkdir()
        assert fusevault("share", mnt / "proj", "--with", "@team", "--perm", "WRITE").returncode == 0
    with mounted(vault, mnt, "--user", "bob", passphrase=BOB):
        made = fusevault("link", "create", mnt / "groups" / "team" / "proj", "--append", "--relay", relay,
                         passphrase=None)
        assert made.returncode == 0, made.stderr
    _admin(vault, "group", "member", "remove", "team", "bob")
    (tmp_path / "scan.pdf").write_text("a client's scan\n")
    pushed = fusevault("link", "push", tmp_path / "scan.pdf", made.stdout.strip(), passphrase=None)
    assert pushed.returncode == 0, pushed.stderr
    with mounted(vault, mnt, "--user", "bob", passphrase=BOB):
        assert fusevault("link", "collect", cwd=mnt, passphrase=None).returncode == 0
    _admin(vault, "group", "member", "add", "team", "bob", "--perm", "READ,WRITE")
    with mounted(vault, mnt, "--user", "alice"):
        (mnt / "proj" / "plan.txt").write_text("team plan\n")
    with mounted(vault, mnt, "--user", "bob", passphrase=BOB):
        status = fusevault("status", cwd=mnt, passphrase=None).stdout
        seen = _everything_readable(mnt)
        assert "team plan\n" in seen.values() or "WARNING" in status, (seen, status)


def test_without_a_scan_bob_receives_her_send(redis_url: str, tmp_path: Path) -> None:
    """Control: with nobody scanning, bob gets the file with the code."""
    _scan_then_receive(redis_url, tmp_path, scan=False)


def test_a_stranger_who_scans_session_names_cannot_end_her_send(redis_url: str, tmp_path: Path) -> None:
    _scan_then_receive(redis_url, tmp_path, scan=True)


def _scan_then_receive(redis_url: str, tmp_path: Path, *, scan: bool) -> None:
    import httpx

    (tmp_path / "report.txt").write_text("the report\n")
    with running_relay(redis_url) as (_, relay):
        sender = subprocess.Popen([sys.executable, "-m", "fusevault", "send", str(tmp_path / "report.txt"),
                                   "--relay", relay], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL, text=True)
        try:
            first = sender.stdout.readline()  # "Session 482113, code 618-cloud-tower"
            code = first.strip().rsplit(" ", 1)[1]
            name = first.split()[1].rstrip(",")
            if scan:
                # He knows no code: he tries names, the live one among the next 200 (where a scan of
                # every name would come to it).  Past his budget the relay answers 429 for the rest
                # of its window (16 names per 10 minutes): he stops there, as waiting gains 16 more.
                found, held = [], False
                width, live = len(name), int(name)
                # From an address of his own (the relay's budget is per address: bob's is his).
                elsewhere = httpx.HTTPTransport(local_address="127.0.0.2")
                with httpx.Client(base_url=relay, timeout=10, transport=elsewhere) as web:
                    for n in range(max(0, live - 100), max(0, live - 100) + 200):
                        answer = web.post("/sessions/join", json={"name": f"{n:0{width}d}"})
                        if answer.status_code == 429:
                            held = True
                            break
                        if answer.status_code != 404:
                            found.append(f"{n:0{width}d}")
                assert held, "the scan of 200 names went on to its end"
                number, words = code.split("-", 1)
                wrong = f"{(int(number) + 1) % 1000}-{words}"
                for name in found:
                    fusevault("receive", name, "-o", tmp_path / "stranger", "--relay", relay, passphrase=None,
                              env={"FUSEVAULT_CODE": wrong}, timeout=60)
            got = fusevault("receive", name, "-o", tmp_path / "bob", "--relay", relay, passphrase=None,
                            env={"FUSEVAULT_CODE": code}, timeout=60)
            if got.returncode != 0 and sender.poll() is not None:
                said = sender.communicate(timeout=10)
                raise AssertionError(f"bob: {got.stderr.strip()!r}; "
                                     f"her send: exit {sender.returncode}, {said!r}")
            assert got.returncode == 0, (got.stdout, got.stderr)
            assert (tmp_path / "bob" / "report.txt").read_text() == "the report\n"
        finally:
            if sender.poll() is None:
                sender.kill()
            sender.communicate(timeout=10)


def test_restore_to_the_versions_name_is_refused(vault: Path, tmp_path: Path) -> None:
    with mounted(vault, tmp_path / "mnt") as mnt:
        names = _two_versions(mnt)
        restored = fusevault("restore", mnt / "plan.txt", "--to", mnt / ".versions", cwd=mnt, passphrase=None)
        assert restored.returncode != 0 or _history_seen(mnt, names) == ["her plan v1\n", "her plan v2\n"]


def test_a_dropped_file_in_a_drive_open_to_others_is_not_world_writable(
        link_store, vault: Path, tmp_path: Path) -> None:
    relay, _ = link_store
    scan = tmp_path / "scan.pdf"
    scan.write_text("a scan\n")
    scan.chmod(0o666)
    with mounted(vault, tmp_path / "mnt", "--allow-other-users") as mnt:
        made = fusevault("link", "create", mnt / "Inbox", "--append", "--relay", relay)
        assert made.returncode == 0, made.stderr
        assert fusevault("link", "push", scan, made.stdout.strip(), passphrase=None).returncode == 0
        assert fusevault("link", "collect", cwd=mnt).returncode == 0
        mode = (mnt / "Inbox" / "scan.pdf").stat().st_mode & 0o777
        assert not mode & 0o022, oct(mode)
