"""Attack round 53d: the fixes after round 52t (af073e2 reserved root names, b808763/e85022a the
answer cap, 1a0b85f the relay's session-name budget, 9da361b a dropped file's mode).

Six holes, each run (strict xfails then; fixed since: docs/SECURITY.md "Round 53d"): (1) a
twice-gzipped answer is unpacked whole before the cap
counts it (medium; tests/unit/test_attack_53d.py); (2) a trickling link store keeps ``fusevault
lock`` and the TTL from locking (medium-high; here); (3) a JSON answer within the cap parses to ~26
times its size: 1.5 GB for the link store's 65 MiB (medium-low; unit file); (4) drops and imports
named like ``shared`` / ``groups`` / ``.versions`` with look-alike letters or invisible characters
take the root as is (low; unit file); (5) an imported file keeps its source's 0666 / setuid (low;
here); (6) folders made for her are 0755 whatever her umask (low; here).

Held (tried, with the controls kept): a ``Content-Length`` over the cap, chunked and closing bodies
(tests/unit/test_http_answers.py, re-run); one gzip layer
(``test_one_gzip_layer_is_unpacked_a_read_at_a_time``); an honest-shaped JSON answer
(``test_an_honest_shaped_answer_of_that_size_takes_a_few_times_its_size``); a link store that answers
lets her lock (``test_a_link_store_that_answers_lets_her_lock``); the exact kept names go to ``NAME
(2)`` (``test_the_kept_names_themselves_take_another_name``). Read, held: redirects are not followed
(httpx default; a 3xx is an answer like any); an unknown ``Content-Encoding`` (br, zstd: not installed)
is passed raw, not decoded; a sync peer's calls are ``abandon_on_cancel`` (a trickling peer does not
hold the lock); a drop box under ``shared/bob`` or ``groups/team/proj`` whose share is gone while the
top view stays (another share) is refused by ``_make_node``'s write check on the virtual folder
(BoxWaits), never made real; ``restore --to shared/bob/x`` likewise; ``import_into`` is normalised
(``/``, ``//``, ``./`` are the root) and refuses ``.versions`` (``shared`` there is hers to choose;
make_dirs refuses it with no share); a watched folder holding both ``shared/a.txt`` and ``shared
(2)/a.txt`` imports the second beside the first ("no import record" alarm: a false one, low; read, not
run), nothing overwritten. The relay (read): a name not of 6 ASCII digits is refused uncounted
(``[0-9]`` on str is ASCII only; Arabic-Indic digits, spaces, newlines: 404); IPv4-mapped IPv6 clients
count as their IPv4 (not one /64 for all); the budget's window is fixed at its first name (not extended
by more); a name is given back only once the sender posted the manifest (after the confirmation), so a
scanner's hits are not refunded before it proves the code; X-Forwarded-For is believed only from listed
proxies. Seen, by design (shown by tests/services/test_relay_state.py
``::test_an_address_that_scans_names_is_held_at_its_budget_over_all_sessions``): one client behind a
shared address (a carrier's CGNAT, a campus NAT) spends the whole address's 16 names per 10 minutes, and
every honest receiver behind it gets 429 for the window, again at each window (low; SECURITY.md speaks
of a family's typos only).

Not tried: brotli/zstd bombs (the packages are not installed; with them, one layer's ratio is far
above gzip's); a trickle on ``link get``/``receive`` (a command: Ctrl-C twice ends it) and on the
unmount (it waits as the lock does, by reading); a user renaming himself to another's username to
mix his shares into ``shared/<name>/`` (outside this brief).

Hole 2 (medium-high: a link store she uses keeps her drive unlocked after ``fusevault lock`` and
  after her passphrase's TTL, for as long as it likes): a trickling answer to the mount's drop-box
  collection holds a worker thread that nothing cancels, and the lock waits for it.
  Attack: the link store (its operator, or whoever is on its path without TLS) answers ``GET
    /items/ID/versions`` of her drop box with a length it never reaches, one byte every half second
    (within httpx's 30 s read timeout: no timeout ever fires; within 52t (3)'s 65 MiB cap for
    ~a year at that pace).  The mount asks by itself, DROPS_FIRST after the unlock, every minute.
  Seen: ``test_a_trickling_link_store_does_not_keep_her_drive_unlocked`` (run, fails): with the
    collection under way, ``Agent.lock`` (``fusevault lock``, and the TTL's expiry, which calls the
    same) does not return in 5 s (nor in 15, run once); her session is still open (keys in
    memory, files readable); it locks only once the test's server stops trickling.
  Cause: links/owner.py:260 ``await trio.to_thread.run_sync(client.versions, ...)`` (and the
    other calls of the collection: ``delete_version``, the blocks read by ``_pull`` :526) run in
    threads that cannot be cancelled (no ``abandon_on_cancel``) and with no overall deadline
    (transfer/client.py ``httpx.Timeout(30.0, connect=5.0)`` is per read); agent/sessions.py:207
    ``Agent.lock`` cancels the session's scope then ``await session.stopped.wait()``, which waits
    for the session's nursery, which waits for that thread.  ``self._busy`` is held meanwhile, so
    the expiry's own lock and any unlock queue behind it too; the unmount waits likewise.
  Impact: "lock" and the TTL do not take her keys away while a server she only trusts with sizes
    and timing chooses: a laptop she locked before walking away stays readable by whoever sits at
    it (and by processes of her uid); not said anywhere (the lock command times out at best).
  Fix (suggested): a whole-answer deadline in ``capped_request`` (e.g. httpx ``timeout`` plus a
    monotonic deadline checked per part, or trio-side ``abandon_on_cancel=True`` for the link
    calls, whose thread then finds the client closed), and ``Agent.lock`` not waiting on network
    work: cancel, and let an abandoned thread end on its own.

Hole 5 (low: 52t (6)'s world-writable file, through the watched folder): an imported file keeps its
  source's mode whole, 0666 (and setuid/setgid) included, in a drive opened to other users.
  Scene: her watched folder is one another local user can put files in (a scanner's or a team's
    inbox, group-writable); he puts ``scan.pdf`` there in mode 0666 (or 06777).  Her mount imports it.
  Seen: ``test_an_imported_file_from_another_user_is_not_writable_by_others`` (run, fails): the
    vault's ``scan.pdf`` is 0666 (``_dropped_mode``'s rule, "never writable by group or others,
    whatever he gave", is not applied: the same file dropped is 0644); 06777 keeps setuid/setgid in
    her vault (run once by hand: 0o6777 kept; harmless while the mount is nosuid; export strips it).
  Cause: imports/importer.py ``take`` ``mode = stat.S_IMODE(st.st_mode)`` passed to ``write_file``
    unmasked (``_copy``).
  Impact: with ``--allow-other-users`` every local uid may rewrite that file in her vault (synced
    to her devices), after she thinks it is hers.  Low: the source was as writable where it lay.
  Fix (suggested): the drop's mask for imports (``mode & SAFE_MODE_BITS & ~(her_umask() | 0o022)``),
    or at least ``& SAFE_MODE_BITS``.
Hole 6 (low: her umask 077 is not kept on folders made for her): every folder a drop, a drop
  box, an import or ``restore --to`` makes is 0755, whatever her umask.
  Scene: alice's ``--allow-other-users`` drive, her umask 077 (nothing of hers for other local
    users); a stranger drops a folder ``medical/`` with ``results-alice.pdf``.
  Seen: ``test_a_folder_made_for_her_keeps_her_umask`` (run, fails): placing.py ``make_dirs``
    (which ``_write_drop`` uses for a dropped folder) makes ``Inbox/medical`` 0755 with her umask
    077 (the dropped file in it is 0600: ``_dropped_mode`` takes her umask).
  Cause: vault/services/placing.py ``make_dirs``: ``volume.mkdir(parent.ino, part, 0o755, caller)``.
  Impact: other local users list the names of what was dropped or imported for her (not the
    contents). Low.
  Fix (suggested): ``0o777 & ~her_umask()`` (or ``0o755 & ~her_umask()``) in make_dirs.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import trio
from holding_link_store import Held, answer, holding_link_store, let_go_before_the_cancel_ended

from fusevault import modes
from fusevault.agent import sessions
from fusevault.imports.importer import Importer
from fusevault.links.owner import Links
from fusevault.vault.model.settings import Settings
from fusevault.vault.services.placing import NoKernel, make_dirs
from fusevault.vault.tree.namespace import Caller
from inprocess.conftest import agent_for, make, read_all


@contextmanager
def trickling_link_store(trickle: bool = True) -> Iterator[Held]:
    """A link store that makes items (POST) and answers every GET one byte every half second, its
    length never reached, until ``stop`` is set: (url, asked, stop).  ``trickle`` False: an empty
    list of versions at once (the control)."""
    def hold(conn: socket.socket, stop: threading.Event) -> None:
        if not trickle:
            answer(conn, b'{"versions": []}')
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000000\r\n\r\n{")
        while not stop.wait(0.5):
            conn.sendall(b" ")

    with holding_link_store(hold) as held:
        yield held


async def test_a_trickling_link_store_does_not_keep_her_drive_unlocked(fs, monkeypatch) -> None:
    await _lock_while_collecting(fs, monkeypatch, trickle=True)


async def test_a_link_store_that_answers_lets_her_lock(fs, monkeypatch) -> None:
    """Control: the same with the store's answer given at once."""
    await _lock_while_collecting(fs, monkeypatch, trickle=False)


async def test_a_trickling_link_store_does_not_hold_the_unmount(fs, monkeypatch) -> None:
    """The unmount cancels every service as the lock does (fs/lifecycle.py): it ends without waiting
    for the store to let go (a timer lets go after 10 s, so that a wait ends)."""
    monkeypatch.setattr(sessions, "DROPS_FIRST", 0)
    with trickling_link_store() as (url, asked, stop):
        await Links(fs.volume, NoKernel()).create(b"Inbox", url, True, None)
        agent = agent_for(fs)
        let_go = await let_go_before_the_cancel_ended(
            lambda nursery: nursery.start(agent.run, fs.volume, 3600), asked, stop)
    assert not let_go, "the unmount waited for the link store's answer"


async def _lock_while_collecting(fs, monkeypatch, *, trickle: bool) -> None:
    await make(fs.ops, b"diary.txt", b"her diary")
    monkeypatch.setattr(sessions, "DROPS_FIRST", 0)  # the mount's first collection at once
    with trickling_link_store(trickle) as (url, asked, stop):
        await Links(fs.volume, NoKernel()).create(b"Inbox", url, True, None)
        agent = agent_for(fs)
        locked = False
        async with trio.open_nursery() as nursery:
            await nursery.start(agent.run, fs.volume, 3600)
            with trio.fail_after(30):
                while not asked.is_set():  # the collection is under way
                    await trio.sleep(0.05)
            with trio.move_on_after(5):  # a lock takes well under a second here
                locked = await agent.lock("fusevault lock")
            still_open = agent.session is not None
            if still_open:
                print("after 5 s of lock: still unlocked, diary reads",
                      await read_all(fs.ops, fs.volume.resolve(b"diary.txt").ino))
            stop.set()  # the server lets go: the thread ends, the session can stop
            if not locked:
                with trio.fail_after(30):
                    await agent.lock("after the server let go")
            nursery.cancel_scope.cancel()
    assert locked and not still_open, "fusevault lock waited on the link store's answer"


async def test_an_imported_file_from_another_user_is_not_writable_by_others(fs, tmp_path) -> None:
    source = tmp_path / "scans"
    source.mkdir()
    (source / "scan.pdf").write_bytes(b"a scan")
    (source / "scan.pdf").chmod(0o666)  # as another local user left it there
    importer = Importer(fs.volume, Settings(source_dir_to_watch=str(source), import_into="Scans"), NoKernel())
    await importer.load()
    try:
        outcome = await importer.take("scan.pdf")
    finally:
        importer.close()
    mode = fs.volume.resolve(b"Scans/scan.pdf").mode & 0o7777
    print(outcome, oct(mode))
    assert not mode & 0o022, oct(mode)


async def test_an_imported_setuid_file_loses_it_and_keeps_her_umask(fs, tmp_path, monkeypatch) -> None:
    """An import takes the drop's rule whole: no setuid, setgid or sticky; her umask (here 077)."""
    monkeypatch.setattr(modes, "_her_umask", 0o077)
    source = tmp_path / "scans"
    source.mkdir()
    (source / "tool").write_bytes(b"#!/bin/sh\n")
    (source / "tool").chmod(0o6777)
    importer = Importer(fs.volume, Settings(source_dir_to_watch=str(source), import_into="In"), NoKernel())
    await importer.load()
    try:
        await importer.take("tool")
    finally:
        importer.close()
    assert fs.volume.resolve(b"In/tool").mode & 0o7777 == 0o700
    assert fs.volume.resolve(b"In").mode & 0o777 == 0o700  # the folder made for it (53d (6))


async def test_a_folder_made_for_her_keeps_her_umask(fs, monkeypatch) -> None:
    monkeypatch.setattr(modes, "_her_umask", 0o077)  # as cli/app.py keeps it at the command's start
    made = await make_dirs(fs.volume, b"Inbox/medical", Caller(os.getuid(), os.getgid()))
    mode = made.mode & 0o777
    print(oct(mode))
    assert not mode & 0o077, oct(mode)
