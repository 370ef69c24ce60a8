"""The suite's own parallel run (scripts/test.sh: pytest-xdist workers, a file per worker): workers do
not meet in global state.  Each check runs a small suite of its own with the real tests/conftest.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent  # tests/

# Two files, so that `--dist loadfile` puts them on two workers.  Each mounts a vault, waits until the
# other's mount is up too, then runs a command outside any mount, which takes the only mount it sees.
MOUNTING = '''
import os, time
from pathlib import Path
from conftest import fusevault, mounted

BARRIER = Path(os.environ["BARRIER"])


def meet(step):
    (BARRIER / f"{step}-{os.environ['PYTEST_XDIST_WORKER']}").touch()
    deadline = time.monotonic() + 300
    while len(list(BARRIER.glob(f"{step}-*"))) < 2:
        assert time.monotonic() < deadline, f"the other worker never reached {step}"
        time.sleep(0.1)


def test_a_command_outside_a_mount_finds_this_workers_own(vault, tmp_path):
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "mine.txt").write_text(str(mnt))
        meet("mounted")
        try:
            trash = fusevault("trash", "--json", passphrase=None, cwd=tmp_path)
            assert trash.returncode == 0, trash.stderr
            status = fusevault("status", passphrase=None, cwd=tmp_path)
            listed = [line.split(": vault ")[0] for line in status.stdout.splitlines() if ": vault " in line]
            assert listed == [str(mnt)], status.stdout
        finally:
            meet("asked")
'''

# Run one after another: what the first file's tests leave in redis is not there for the second's.
LEAVING = '''
import redis
from fusevault.relay import keys


def test_a_relay_leaves_a_session_open(redis_url):
    redis.Redis.from_url(redis_url).set(keys.created_sessions("127.0.0.1"), "a session id", ex=600)
'''
ARRIVING = '''
import redis


def test_the_next_file_starts_with_an_empty_redis(redis_url):
    assert redis.Redis.from_url(redis_url).dbsize() == 0
'''


def _suite(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "suite"
    root.mkdir()
    shutil.copy(HERE / "conftest.py", root)  # the real one: its hooks and fixtures are what is tested
    (root / "pytest.ini").write_text("[pytest]\n")
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def _pytest(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    # Not this run's worker: the inner run has a controller and workers of its own.
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "FUSEVAULT_"))}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE",
                           "--basetemp", str(root / "tmp"), *args, str(root)], cwd=root,
                          env={**clean, **env}, capture_output=True, text=True, timeout=900)


def test_workers_see_only_their_own_mounts(tmp_path: Path) -> None:
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    root = _suite(tmp_path, {"test_one.py": MOUNTING, "test_two.py": MOUNTING})
    run = _pytest(root, "-n", "2", "--dist", "loadfile", BARRIER=str(barrier))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed" in run.stdout, run.stdout
    assert sorted(p.name.split("-")[0] for p in barrier.iterdir()) == ["asked"] * 2 + ["mounted"] * 2


def test_each_test_file_has_a_redis_of_its_own(tmp_path: Path) -> None:
    root = _suite(tmp_path, {"test_a_leaves.py": LEAVING, "test_b_arrives.py": ARRIVING})
    run = _pytest(root, "-p", "no:xdist")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed" in run.stdout, run.stdout
