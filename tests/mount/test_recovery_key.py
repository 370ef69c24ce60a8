"""The recovery key: 24 words that reset a forgotten passphrase, through the real command."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

from conftest import PASSPHRASE, docs_of, fusevault, mounted, server_pids

from fusevault.vault.model.trust import self_signed

WORD = re.compile(r"^[a-z]+$")


def _one_line(result: subprocess.CompletedProcess, code: int, words: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def _with_fd(data: bytes | None = None):
    """A pipe: (read end, write end); ``data`` already written and the write end closed."""
    read, write = os.pipe()
    if data is not None:
        os.write(write, data)
        os.close(write)
        return read, None
    return read, write


def _init_with_words(vault: Path, user: str = "alice") -> str:
    """``init`` writing the words to a file descriptor; returns them."""
    read, write = os.pipe()
    try:
        result = fusevault("init", vault, "--user", user, "--recovery-key-fd", str(write), pass_fds=(write,))
    finally:
        os.close(write)
    with os.fdopen(read, "rb") as pipe:
        words = pipe.read().decode().strip()
    assert result.returncode == 0, result.stderr
    assert words not in result.stdout + result.stderr
    assert len(words.split()) == 24 and all(WORD.match(w) for w in words.split())
    return words


def _recover(vault: Path, words: str, new: str, *extra: str) -> subprocess.CompletedProcess:
    """``passwd --recovery`` with the words on a descriptor, and no old passphrase anywhere."""
    read, _ = _with_fd((words + "\n").encode())
    try:
        return fusevault("passwd", "--recovery", vault, "--recovery-fd", str(read), *extra,
                         passphrase=None, env={"FUSEVAULT_NEW_PASSPHRASE": new}, pass_fds=(read,))
    finally:
        os.close(read)


def _info(vault: Path) -> dict:
    return json.loads(fusevault("info", vault, "--json", passphrase=None).stdout)


def _user_doc(vault: Path) -> dict:
    (doc,) = docs_of(vault, "UserDetails")
    return doc


def test_recover_after_a_forgotten_passphrase(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    words = _init_with_words(vault)
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "notes.txt").write_text("kept through a forgotten passphrase")
    files_before = {p: p.stat().st_mtime_ns for p in vault.rglob("*.vf")}
    result = _recover(vault, words, "a brand new passphrase")
    assert result.returncode == 0, result.stderr
    assert words not in result.stdout + result.stderr
    assert {p: p.stat().st_mtime_ns for p in vault.rglob("*.vf")} == files_before  # no file re-encrypted
    assert self_signed(_user_doc(vault))  # the changed document is signed again by its user
    assert fusevault("mount", vault, tmp_path / "mnt").returncode == 3  # the old passphrase is gone
    with mounted(vault, tmp_path / "mnt", passphrase="a brand new passphrase") as mnt:
        assert (mnt / "notes.txt").read_text() == "kept through a forgotten passphrase"


def test_the_words_still_recover_after_a_normal_passwd(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    words = _init_with_words(vault)
    changed = fusevault("passwd", vault, env={"FUSEVAULT_NEW_PASSPHRASE": "second"})
    assert changed.returncode == 0, changed.stderr
    (tmp_path / "words.txt").write_text(words + "\n")
    result = fusevault("passwd", vault, "--recovery", "--recovery-file", tmp_path / "words.txt",
                       passphrase=None, env={"FUSEVAULT_NEW_PASSPHRASE": "third"})
    assert result.returncode == 0, result.stderr
    with mounted(vault, tmp_path / "mnt", passphrase="third") as mnt:
        (mnt / "f").write_text("x")
    # ... and again: the recovery wrapping outlives every reset.
    assert _recover(vault, words, "fourth").returncode == 0
    assert _info(vault)["users_with_recovery_key"] == 1


def test_a_revoked_or_replaced_recovery_key_stops_working(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    words = _init_with_words(vault)
    assert fusevault("recovery-key", "revoke", vault, passphrase="wrong").returncode == 3
    revoked = fusevault("recovery-key", "revoke", vault)
    assert revoked.returncode == 0, revoked.stderr
    assert "recovery_key" not in _user_doc(vault) and self_signed(_user_doc(vault))
    assert _info(vault)["users_with_recovery_key"] == 0
    _one_line(_recover(vault, words, "new"), 30, "has no recovery key")
    _one_line(fusevault("recovery-key", "revoke", vault), 30, "has no recovery key")
    # A new one: the revoked words still open nothing, the new ones do.
    (tmp_path / "new-words").parent.mkdir(exist_ok=True)
    made = fusevault("recovery-key", "create", vault, "--recovery-key-file", tmp_path / "new-words")
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "new-words").stat().st_mode & 0o777 == 0o600
    fresh = (tmp_path / "new-words").read_text().strip()
    assert fresh != words and fresh not in made.stdout
    _one_line(_recover(vault, words, "new"), 29, "not this user's recovery key")
    replaced = fusevault("recovery-key", "create", vault, "--recovery-key-file", tmp_path / "third-words")
    assert replaced.returncode == 0 and "the old one opens nothing" in replaced.stdout
    _one_line(_recover(vault, fresh, "new"), 29, "not this user's recovery key")
    assert _recover(vault, (tmp_path / "third-words").read_text(), "new").returncode == 0
    with mounted(vault, tmp_path / "mnt", passphrase="new"):
        pass


def test_a_wrong_word_is_named_and_a_bad_checksum_has_its_own_error(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    words = _init_with_words(vault).split()
    typo = words.copy()
    typo[6] = "zebraa"
    _one_line(_recover(vault, " ".join(typo), "new"), 27, "word 7 of the recovery key, 'zebraa', is not in")
    swapped = words.copy()
    # Two list words swapped: every word is known, the checksum (almost surely) is not.
    i = next(i for i in range(23) if swapped[i] != swapped[i + 1])
    swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
    result = _recover(vault, " ".join(swapped), "new")
    if result.returncode != 29:  # 1 in 256: the swap keeps the checksum, and then opens nothing
        _one_line(result, 28, "checksum")
    _one_line(_recover(vault, " ".join(words[:23]), "new"), 12, "is 24 words; this has 23")
    # Still the old passphrase: nothing changed.
    with mounted(vault, tmp_path / "mnt"):
        pass


def test_the_words_reach_no_log_argv_or_environment(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    words = _init_with_words(vault)
    assert _recover(vault, words, "after").returncode == 0
    with mounted(vault, tmp_path / "mnt", passphrase="after") as mnt:
        (mnt / "f").write_text("y")
        (pid,) = server_pids(mnt)
        for part in ("environ", "cmdline"):
            seen = Path(f"/proc/{pid}/{part}").read_bytes().decode(errors="replace")
            assert words not in seen and " ".join(words.split()[:3]) not in seen
    logged = "".join(p.read_text(errors="replace")
                     for p in Path(os.environ["FUSEVAULT_STATE_DIR"]).rglob("*") if p.is_file())
    assert logged  # the mount logged something
    for three in (" ".join(words.split()[i:i + 3]) for i in range(22)):
        assert three not in logged
    # The vault stores the wrapping, never the words.
    stored = b"".join(p.read_bytes() for p in vault.rglob("*") if p.is_file()).decode(errors="replace")
    for three in (" ".join(words.split()[i:i + 3]) for i in range(22)):
        assert three not in stored


def test_init_without_a_terminal_makes_no_recovery_key_unless_asked(tmp_path: Path) -> None:
    quiet = fusevault("init", tmp_path / "a")
    assert quiet.returncode == 0 and "recovery-key create" in quiet.stdout
    assert _info(tmp_path / "a")["users_with_recovery_key"] == 0
    none = fusevault("init", tmp_path / "b", "--no-recovery-key")
    assert none.returncode == 0 and "recovery" not in none.stdout
    printed = fusevault("init", tmp_path / "c", "--recovery-key")
    assert printed.returncode == 0 and "write these 24 words down" in printed.stdout
    assert _recover(tmp_path / "c", _listed_words(printed.stdout), "new").returncode == 0
    both = fusevault("init", tmp_path / "d", "--no-recovery-key", "--recovery-key")
    _one_line(both, 12, "--no-recovery-key")
    assert not (tmp_path / "d").exists()


def _listed_words(out: str) -> str:
    """The 24 words of the numbered listing ("  1. word  2. word ...")."""
    return " ".join(re.findall(r"\d+\. ([a-z]+)", out))


def _on_terminal(args: list, env: dict, prompt: bytes = b"", answer: bytes = b"") -> tuple[int, bytes]:
    """Run ``fusevault ARGS`` on a pseudo-terminal; type ``answer`` when ``prompt`` shows."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "fusevault", *map(str, args)], env=env,
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out = b""
    sent = False
    try:
        while select.select([master], [], [], 60)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
            if prompt and not sent and prompt in out:
                os.write(master, answer)
                sent = True
        return proc.wait(60), out
    finally:
        os.close(master)


def test_init_on_a_terminal_shows_the_words_once_and_they_recover(tmp_path: Path) -> None:
    """A person at a terminal gets a recovery key by default, shown with the note to write it down."""
    code, out = _on_terminal(["init", tmp_path / "vault"], {**os.environ, "FUSEVAULT_PASSPHRASE": PASSPHRASE})
    assert code == 0, out
    text = out.decode()
    assert "write these 24 words down" in text and "shown only now" in text
    words = _listed_words(text)
    assert len(words.split()) == 24
    # A copy of the numbered listing, as shown, reads as well.
    listing = "\n".join(line for line in text.splitlines() if re.search(r"\d+\. [a-z]", line))
    (tmp_path / "copied").write_text(listing)
    result = fusevault("passwd", tmp_path / "vault", "--recovery-file", tmp_path / "copied", passphrase=None,
                       env={"FUSEVAULT_NEW_PASSPHRASE": "typed back"})
    assert result.returncode == 0, result.stderr
    with mounted(tmp_path / "vault", tmp_path / "mnt", passphrase="typed back"):
        pass


def test_the_commands_are_in_help_and_completion(tmp_path: Path) -> None:
    assert "recovery-key" in fusevault(passphrase=None).stdout
    script = fusevault("completion", "bash", passphrase=None).stdout
    (tmp_path / "fusevault.bash").write_text(script)
    probe = f"""
source {tmp_path / 'fusevault.bash'}
COMP_WORDS=(fusevault recovery-); COMP_CWORD=1; _shtab_fusevault; echo "${{COMPREPLY[*]}}"
COMP_WORDS=(fusevault recovery-key ''); COMP_CWORD=2; _shtab_fusevault; echo "${{COMPREPLY[*]}}"
COMP_WORDS=(fusevault passwd --recovery-); COMP_CWORD=2; _shtab_fusevault; echo "${{COMPREPLY[*]}}"
"""
    result = subprocess.run(["bash", "-c", probe], capture_output=True, text=True)
    lines = result.stdout.splitlines()
    assert lines[0] == "recovery-key" and lines[1].split() == ["create", "revoke"], result.stdout
    assert set(lines[2].split()) == {"--recovery-fd", "--recovery-file"}, result.stdout


def test_the_field_is_signed_and_a_damaged_wrapping_is_not_wrong_words(tmp_path: Path) -> None:
    from fusevault.store.local import LocalStore

    vault = tmp_path / "vault"
    words = _init_with_words(vault)
    doc = _user_doc(vault)
    assert "recovery_key" in doc and self_signed(doc)
    # The user's signature covers the field: anyone else's change to it shows.
    assert not self_signed({**doc, "recovery_key": {**doc["recovery_key"], "created_at": 1}})
    assert not self_signed({k: v for k, v in doc.items() if k != "recovery_key"})
    sealed = doc["recovery_key"]["en_master"]
    damaged = {**doc, "recovery_key": {**doc["recovery_key"], "en_master": sealed[:-4] + "AAAA"}}
    store = LocalStore(vault / "store.sqlite")
    try:
        store.put_many([damaged])
    finally:
        store.close()
    # On a device that never saw her keys (this one remembers them: vault/model/key_memory.py, and would
    # use its own copy of the field), the damage is said as such.
    for kept in (Path(os.environ["FUSEVAULT_STATE_DIR"]) / "confirmed").glob("*.keys"):
        kept.unlink()
    _one_line(_recover(vault, words, "new"), 5, "damaged")


def test_the_words_typed_at_the_prompt_are_not_echoed(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    words = _init_with_words(vault)
    env = {k: v for k, v in os.environ.items() if k != "FUSEVAULT_PASSPHRASE"}
    env["FUSEVAULT_NEW_PASSPHRASE"] = "from the prompt"
    code, out = _on_terminal(["passwd", "--recovery", vault], env, b"Recovery key (24 words): ",
                             words.encode() + b"\n")
    assert code == 0, out
    assert b"passphrase reset with the recovery key" in out
    assert words.split()[0].encode() + b" " + words.split()[1].encode() not in out  # not echoed
    with mounted(vault, tmp_path / "mnt", passphrase="from the prompt"):
        pass
