"""scripts/install.sh: a system-wide install every user of the machine can run.

Installed into a temporary prefix and link folder (never /opt or /usr/local),
under root's most private umask, then run by a real Linux user without root's
rights.  The dependencies come from this virtualenv (--deps-from), so the test
does not download and compile them; fusevault itself is built from the checkout.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest
from conftest import linux_users

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("setpriv"),
    reason="needs root, useradd and setpriv (a real Linux user)")


@pytest.fixture(scope="module")
def someone() -> pwd.struct_passwd:
    with linux_users("install") as users:
        yield users["install"]


def as_user(user: pwd.struct_passwd, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
                           "env", "-i", "PATH=/usr/bin:/bin", "LANG=C.UTF-8", *command],
                          capture_output=True, text=True, timeout=120, cwd="/", stdin=subprocess.DEVNULL)


@pytest.fixture
def place():
    base = Path(tempfile.mkdtemp(prefix="fvinst", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_install_sh_makes_fusevault_runnable_by_every_user(someone, place: Path) -> None:
    minor = f"python3.{sys.version_info.minor}"  # the dependencies' version
    candidates = [os.path.realpath(sys.executable), f"/usr/bin/{minor}", f"/usr/local/bin/{minor}"]
    python = next((c for c in candidates if as_user(someone, c, "-c", "pass").returncode == 0), None)
    if python is None:
        pytest.fail(f"no {minor} that {someone.pw_name} may run")
    prefix, bindir = place / "opt" / "fusevault", place / "bin"
    left_before = {*ROOT.glob("*.egg-info"), *ROOT.glob("build")}  # the checkout's own editable install
    command = [ROOT / "scripts" / "install.sh", "--prefix", prefix, "--bindir", bindir, "--python", python,
               "--deps-from", sysconfig.get_paths()["purelib"]]
    done = subprocess.run(list(map(str, command)), env={**os.environ, "FUSEVAULT_SYSTEM_PACKAGES": "no"},
                          capture_output=True, text=True, timeout=600,
                          preexec_fn=lambda: os.umask(0o077))  # root's most private umask
    assert done.returncode == 0, done.stdout + done.stderr
    assert (bindir / "fusevault").resolve() == (prefix / "bin" / "fusevault").resolve()
    # Everything readable by everyone, writable by root alone.
    for path in [prefix, *prefix.rglob("*")]:
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode):
            assert mode & 0o004 and not mode & 0o022, (path, oct(mode))
    version = as_user(someone, str(bindir / "fusevault"), "--version")
    assert version.returncode == 0 and version.stdout.startswith("fusevault "), version.stderr
    where = as_user(someone, str(prefix / "bin" / "python"), "-c",
                    "import fusevault; print(fusevault.__file__)")
    assert where.stdout.startswith(str(prefix)), where.stdout + where.stderr  # the copy, not the checkout
    assert {*ROOT.glob("*.egg-info"), *ROOT.glob("build")} == left_before  # nothing left in the checkout


def test_the_relay_unit_runs_what_install_sh_installs() -> None:
    script = (ROOT / "scripts" / "install.sh").read_text()
    bindir = re.search(r'bindir="\$\{FUSEVAULT_BINDIR:-([^}]+)\}"', script).group(1)
    unit = (ROOT / "contrib" / "systemd" / "fusevault-relay.service").read_text()
    exec_start = re.search(r"^ExecStart=(\S+)", unit, re.MULTILINE).group(1)
    assert exec_start == f"{bindir}/fusevault"
