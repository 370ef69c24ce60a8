"""Attack round 50d: the local safety of 45t (3) (``host_access/rights.py`` ``acting_as``, an export's
writes made with the user's rights) and 49t (2)-(5) (``fusevault/urls.py`` ``http_url``).

(1) A mapped user whose uid (or gid) is 2**31 or more can no longer export in a shared mount.
    Attack: root's shared mount maps a Linux uid of 2**31 or more (``user add --uid`` takes any uid
    below 2**32; directory services hand out such ids); he runs ``fusevault export``.
    Seen: ``acting_as(2**31 + 5, ...)`` raises PermissionError "this thread could not act as uid
    2147483653"; every export of his fails at its first write (``Destination.as_user``).
    Cause: ``rights._c`` declares ``setfsuid``/``setfsgid`` with ``c_int`` arguments and results: the
    kernel takes the id as ``uid_t`` and does switch, but ``setfsuid(-1)`` answers it as a negative
    int, so ``_now() != user`` and the block is refused (then undone: no rights are left behind).
    Impact: low; an export that worked before 89e8d59 fails for honest use (no rights given).
    Fix (suggested): ``c_uint`` for both (argument ``-1`` as ``0xFFFFFFFF``), or compare modulo 2**32.
    Tests: ``test_a_thread_acts_as_a_uid_above_2_31`` (strict xfail),
    ``test_a_thread_acts_as_an_ordinary_uid`` (control).

(2) An export into a folder where the files he makes are not shown as his now fails.
    Attack: a shared data partition (vfat, exfat, ntfs3 or cifs) mounted by fstab with ``uid=0`` (or
    another user's uid), ``gid=users,umask=002``: every user of the group may create files there, and
    every file shows that fixed owner.  He exports into it.
    Seen (emulated: the helper's new file owned by root, written through the same descriptor): the
    ``pwrite`` passes, then ``_finish``'s ``fchmod`` (and ``utime``) as the user is EPERM, the export
    fails with PermissionDenied and its temporary file is removed.  Before 89e8d59 root's thread set
    the mode (the kernel lets a capable caller through ``setattr_prepare``; vfat then drops a mode it
    cannot hold) and the export succeeded; ``cp`` of the same file there succeeds too.
    Cause: ``exporting._finish`` runs whole inside ``as_user``: its ``fchmod``/``utime`` need the
    caller to own the file (or CAP_FOWNER), which such a file system never grants him; a failure of
    either is fatal to the export.
    Impact: low; an honest export into a group-shared partition now fails (no rights given).  A
    personal mount had the same failure already (its writer is the user).
    Fix (suggested): keep the data writes (``pwrite``, ``ftruncate``: the quota and reserve checks) as
    the user, but take a refused ``fchmod``/``utime`` (EPERM on a file whose ``st_uid`` is not his) as
    cp does: said, not fatal.
    Tests: ``test_an_export_into_a_file_not_shown_as_his_is_finished`` (strict xfail),
    ``test_an_export_into_a_file_not_shown_as_his_was_finished_by_root`` (control, the old writer).

(3) ``http_url`` echoes a password that holds ``/``, ``?`` or ``#``.
    Attack (honest mistake): ``FUSEVAULT_RELAY_COUCHDB=http://admin:se/cret@db:5984/links`` in a
    relay's service file (or ``--couchdb``, a peer URL, a store URL) with the password typed raw.
    Seen: InvalidInput "not a valid port in http://admin:se/cret@db:5984/links (Port could not be
    cast to integer value as 'se')": user and password whole, in a line that goes to stderr, a
    service's journal, the mount's answer.
    Cause: urllib cuts the authority at the first ``/``, ``?`` or ``#`` ("admin:se" is host:port);
    ``urls._without_credentials`` looks for the ``@`` only before that same first ``/``, finds none
    and echoes the URL as given; ``_reason`` adds urllib's "port" (the password's start).
    Impact: low; a credential the docs keep out of argv (``$FUSEVAULT_COUCHDB_*``) is written to a log.
    Fix (suggested): cut at the last ``@`` before the first ``/`` that follows it (or simply echo
    scheme and host only when ``@`` is anywhere in the URL), and leave urllib's port text out.
    A URL missing a slash of "://" (``http:/admin:pw@db/x``) or its scheme is echoed whole too.
    Tests: ``test_a_refused_url_never_echoes_its_password``,
    ``test_a_url_without_its_double_slash_never_echoes_its_password`` (strict xfails),
    ``test_a_refused_url_with_a_plain_password_hides_it`` (control).

(4) Mistyped URLs that still pass the one check and exit 70 (49t (4)'s class).
    Attack (honest mistake): ``init --couchdb http://a..b:5984/db`` (a doubled dot), a label of 64+
    characters, ``http://.:5984/db``; or ``init --couchdb http://ann:pw@db:99999/db``.
    Seen: "internal error (UnicodeError: encoding with 'idna' codec failed (UnicodeError: label empty
    or too long))", exit 70 and a crash log (CouchStore, the relay's ItemStore, httpx clients alike);
    with credentials and a bad port: "internal error (ValueError: Port out of range 0-65535)", exit 70.
    Cause: neither urllib nor httpx checks an ASCII host's labels; the socket's idna encoding at the
    first request does, raising UnicodeError, which no caller maps (``_NETWORK_ERRORS`` has OSError).
    ``cli/vault.cmd_init`` calls ``strip_credentials`` (which reads ``.port``) before ``CouchStore``
    (and so ``http_url``) runs; without credentials it returns early and the check refuses in one line.
    Impact: low (a traceback, exit 70, for a typo).
    Fix (suggested): in ``http_url``, ``host.encode("idna")`` (or each label 1..63) for an ASCII host,
    mapped to InvalidInput; in ``cmd_init`` check (``split_url``) before ``strip_credentials``.
    Tests: ``test_a_host_with_an_empty_or_long_label_is_a_one_line_refusal`` (strict xfail),
    ``test_init_with_credentials_and_a_bad_port_is_a_one_line_refusal`` (strict xfail),
    ``test_init_with_a_bad_port_is_a_one_line_refusal`` (control).

(5) In a non-UTF-8 locale the passphrase from the environment is no longer the one the prompt gives.
    Attack (honest use): a Latin-1 locale (fr_FR.ISO-8859-1); her passphrase "café" was set at the
    prompt (or from FUSEVAULT_PASSPHRASE before 95f5fe2); her script or service unlocks with
    FUSEVAULT_PASSPHRASE.
    Seen: ``passphrase.get()`` gives b"caf\\xe9" (the environment's bytes); the prompt gives
    ``"café".encode()`` = b"caf\\xc3\\xa9", as the environment did before (Python decoded it with the
    locale's iso8859-1, then ``.encode()``).  Wrong passphrase: that vault no longer opens from the
    environment.
    Cause: 49t (5) reads ``os.environb`` (the raw bytes) to avoid the UTF-8 locale's surrogate crash;
    the prompt still encodes the locale's text to UTF-8, so the two sources differ in any non-UTF-8
    locale (a ``--passphrase-file`` differed already).
    Impact: low to medium: a vault made or re-keyed by prompt in such a locale cannot be unlocked by
    its service's environment (no key or right given; the prompt still works).
    Fix (suggested): read ``os.environ[env]`` and encode it ``"utf-8", "surrogateescape"`` (same as
    before for every decodable text, the raw byte for an undecodable one), or decide one rule (bytes
    as the locale's text in UTF-8) for prompt, environment and file and say it.
    Tests: ``test_the_environment_gives_the_passphrase_the_prompt_gives`` (strict xfail; skipped where
    no Latin-1 locale can be made), ``test_in_a_utf8_locale_the_environment_gives_what_the_prompt_gives``
    (control).

Held (runs below and read): ``acting_as`` leaves no other thread changed and restores the thread
after a refusal; nothing in the block awaits (trio's worker thread is never reused meanwhile, and a
cancellation waits for the thread); ``_back``'s ``os._exit`` needs a failing ``capset``/``setgroups``
with root's own permitted set, which no user input reaches; the groups go by the 32-bit setgroups
(116 on x86_64) for the thread alone and nothing in the mount process calls glibc's set*id (whose
broadcast would reach the acting thread); the kernel raises the file-system capabilities again at
``setfsuid(0)`` only from the permitted set (root's effective equals it); retention's bounds refuse
floats and bools (Policy), link expiry NaN/inf is refused at the socket; ``split_url`` still takes
underscores, IPv6 (now bracketed right), zone ids and IDNA hosts.

Leads, read only (not run):
- A mapped user's export into his own FUSE mount (fusermount) whose server never answers a write
  holds a worker thread of trio's default limiter for good (the writes have no timeout, a cancel
  waits for the thread: ``abandon_on_cancel`` is False); forty such exports fill the default
  limiter, which other users' first seat (``shared._host_access``) and their exports also use: a
  mount-wide stall.  Not this hour's (the writes were in worker threads before 89e8d59).
- The cyclic garbage collector may run finalizers of other requests' objects inside the acting
  thread (an allocation in ``_write_all``); none in fusevault does file work today (no ``__del__``,
  no ``weakref.finalize``), so nothing is made with his rights.
- ``_SETGROUPS`` knows x86_64, aarch64, riscv64, loongarch64: on ppc64le or s390x every export of a
  shared mount is refused (ENOSYS) where it worked before.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import pytest

import fusevault
from fusevault.errors import InvalidInput, StoreUnavailable
from fusevault.host_access import Direct, rights
from fusevault.host_access.way import Step
from fusevault.store.couch import CouchStore
from fusevault.urls import http_url
from fusevault.vault.services import exporting

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="acting as another uid needs root")


def _status() -> dict[str, list[str]]:
    """This thread's ids, groups and capabilities."""
    with open("/proc/thread-self/status") as f:
        fields = {k: v.split() for k, _, v in (line.partition(":") for line in f)}
    return {k: v for k, v in fields.items() if k in ("Uid", "Gid", "Groups") or k.startswith("Cap")}


def _in_thread(uid: int, gid: int) -> dict:
    """``acting_as(uid, gid, [gid])`` in a fresh thread: what it saw inside, and any refusal."""
    seen: dict = {}

    def run() -> None:
        before = _status()
        try:
            with rights.acting_as(uid, gid, [gid]):
                seen["inside"] = _status()
        except OSError as err:
            seen["refused"] = str(err)
        seen["restored"] = _status() == before

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    return seen


# --- (1) uids of 2**31 and more


@needs_root
def test_a_thread_acts_as_an_ordinary_uid() -> None:
    seen = _in_thread(54321, 54321)
    assert "refused" not in seen and seen["restored"]
    assert seen["inside"]["Uid"][3] == "54321" and seen["inside"]["Gid"][3] == "54321"


@needs_root
def test_a_thread_acts_as_a_uid_above_2_31() -> None:
    uid = 2**31 + 5
    seen = _in_thread(uid, uid)
    assert seen["restored"], "the thread kept another's rights"
    assert "refused" not in seen, f"a mapped uid {uid} cannot export: {seen.get('refused')}"
    assert seen["inside"]["Uid"][3] == str(uid)


# --- (2) a destination whose files are not shown as his


class _Foreign(Direct):
    """A host whose new files show a fixed owner (root), as vfat/exfat/cifs mounted ``uid=0,gid=users,
    umask=002`` show every file; the writes through their descriptors are made as ``uid``."""

    def __init__(self, uid: int | None) -> None:
        self.uid = uid

    def thread_as_user(self) -> AbstractContextManager[None]:
        return nullcontext() if self.uid is None else rights.acting_as(self.uid, self.uid, [self.uid])


class _Node:
    mode = stat.S_IFREG | 0o644
    atime = mtime = 1_700_000_000 * 10**9


@pytest.fixture
def group_share() -> Iterator[Path]:
    place = Path(tempfile.mkdtemp(prefix="fv50d-"))
    os.chmod(place, 0o777)  # his group's to write (the fixed owner is root)
    try:
        yield place
    finally:
        for name in os.listdir(place):
            os.unlink(place / name)
        os.rmdir(place)


def _export_one(host: _Foreign, dest: Path) -> str | None:
    """The steps of ``exporting._write`` for one 5-byte file: the refusal, or None."""
    out = exporting.Destination(host, dest)
    try:
        parent, temp, fd = out.create(Step(None, "report.txt"))
        try:
            out.as_user(exporting._write_all, fd, 0, b"data\n")
            out.as_user(exporting._finish, fd, _Node(), 5)
        except OSError as err:
            out.discard(parent, temp)
            return str(exporting._failed(dest / "report.txt", err))
        finally:
            os.close(fd)
        out.place(parent, temp, Step(None, "report.txt"), False)
        return None
    finally:
        out.close()


@needs_root
def test_an_export_into_a_file_not_shown_as_his_was_finished_by_root(group_share: Path) -> None:
    assert _export_one(_Foreign(None), group_share) is None
    assert (group_share / "report.txt").read_bytes() == b"data\n"


@needs_root
def test_an_export_into_a_file_not_shown_as_his_is_finished(group_share: Path) -> None:
    refused = _export_one(_Foreign(54321), group_share)
    assert refused is None, f"his export into a group-shared partition failed: {refused}"
    assert (group_share / "report.txt").read_bytes() == b"data\n"


# --- (3) a refused URL's password


def _refusal(url: str) -> str:
    with pytest.raises(InvalidInput) as caught:
        http_url(url, "CouchDB database URL", "http://host:port/database")
    return str(caught.value)


def test_a_refused_url_with_a_plain_password_hides_it() -> None:
    said = _refusal("http://admin:hunter2@db:99999/links")
    assert "hunter2" not in said and "admin" not in said


@pytest.mark.parametrize("password", ["se/cret", "se?cret", "se#cret"])
def test_a_refused_url_never_echoes_its_password(password: str) -> None:
    said = _refusal(f"http://admin:{password}@db:5984/links")
    assert password not in said and "admin:" not in said and "'se'" not in said, said


# --- (4) a host name whose label is empty or too long; a bad port beside credentials at init


@pytest.mark.parametrize("url", ["http://a..b:5984/db", f"http://{'a' * 64}.example:5984/db", "http://.:5984/db"])
def test_a_host_with_an_empty_or_long_label_is_a_one_line_refusal(url: str) -> None:
    try:
        CouchStore(url, create=True)
        raised: BaseException | None = None
    except BaseException as err:  # noqa: BLE001 - what the command's guard would see
        raised = err
    assert isinstance(raised, (InvalidInput, StoreUnavailable)), \
        f"{url}: {type(raised).__name__}: {raised} (guard.py: internal error, exit 70)"


def _init(tmp_path: Path, url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(fusevault.__file__).parents[1]),
           "FUSEVAULT_PASSPHRASE": "correct horse battery staple", "HOME": str(tmp_path),
           "XDG_STATE_HOME": str(tmp_path / "state")}
    return subprocess.run([sys.executable, "-m", "fusevault", "init", "--user", "ann", "--no-recovery-key",
                           "--couchdb", url, str(tmp_path / "v")], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)


def test_init_with_a_bad_port_is_a_one_line_refusal(tmp_path: Path) -> None:
    run = _init(tmp_path, "http://db:99999/db")
    assert run.returncode == 12 and "internal error" not in run.stderr, run.stderr


def test_init_with_credentials_and_a_bad_port_is_a_one_line_refusal(tmp_path: Path) -> None:
    run = _init(tmp_path, "http://ann:pw@db:99999/db")
    assert run.returncode == 12 and "internal error" not in run.stderr, run.stderr


# --- (5) the passphrase from the environment in a non-UTF-8 locale


def _env_passphrase(tmp_path: Path, locale: dict[str, str], given: bytes = b"caf\xe9") -> bytes:
    """What ``passphrase.get()`` reads from FUSEVAULT_PASSPHRASE=``given`` (a Latin-1 "café")."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONUTF8"))}
    env.update(locale, PYTHONPATH=str(Path(fusevault.__file__).parents[1]))
    envb = {os.fsencode(k): os.fsencode(v) for k, v in env.items()}
    envb[b"FUSEVAULT_PASSPHRASE"] = given
    run = subprocess.run([sys.executable, "-c", "import sys; from fusevault import passphrase; "
                          "sys.stdout.write(passphrase.get().hex())"],
                         env=envb, capture_output=True, timeout=60, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    return bytes.fromhex(run.stdout.decode())


@pytest.fixture
def latin1(tmp_path: Path) -> dict[str, str]:
    charmaps = Path("/usr/share/i18n/charmaps")
    if shutil.which("localedef") is None or not (charmaps / "ISO-8859-1.gz").exists():
        pytest.skip("no localedef or ISO-8859-1 charmap to make a Latin-1 locale")
    subprocess.run(["localedef", "-i", "fr_FR", "-f", "ISO-8859-1", str(tmp_path / "fr_FR.ISO-8859-1")],
                   capture_output=True, timeout=120)
    if not (tmp_path / "fr_FR.ISO-8859-1").exists():
        pytest.skip("localedef made no Latin-1 locale")
    return {"LOCPATH": str(tmp_path), "LC_ALL": "fr_FR.ISO-8859-1"}


def test_in_a_utf8_locale_the_environment_gives_what_the_prompt_gives(tmp_path: Path) -> None:
    assert _env_passphrase(tmp_path, {"LC_ALL": "C.UTF-8"}, "café".encode()) == "café".encode()


def test_the_environment_gives_the_passphrase_the_prompt_gives(tmp_path: Path, latin1: dict) -> None:
    typed = "café".encode()  # passphrase._prompt: getpass(...).encode(), the locale's text as UTF-8
    got = _env_passphrase(tmp_path, latin1)
    assert got == typed, f"the environment gives {got!r}, the prompt {typed!r} (the same text 'café')"


@pytest.mark.parametrize("url", ["http:/admin:hunter2@db:5984/links", "admin:hunter2@db:5984/links"])
def test_a_url_without_its_double_slash_never_echoes_its_password(url: str) -> None:
    said = _refusal(url)
    assert "hunter2" not in said, said
