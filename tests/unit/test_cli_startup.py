"""Every ``fusevault`` command starts fast: building the parser imports no heavy package.

The parser of every command is built for every command (app.py), so a module
of fusevault/cli/ imports httpx, trio, rich, the sync package, the vault's
services or cryptography only inside the function that uses it.  Each case
runs a fresh interpreter (this one has imported everything already).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import fusevault

HEAVY = ("httpx", "trio", "rich", "cryptography", "fusevault.sync", "fusevault.vault.services",
         "fusevault.transfer.client")
ROOT = str(Path(fusevault.__file__).resolve().parent.parent)


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=ROOT, FUSEVAULT_RUNTIME_DIR=str(tmp_path / "run"),
               FUSEVAULT_STATE_DIR=str(tmp_path / "state"), FUSEVAULT_CONFIG_DIR=str(tmp_path / "config"))
    env.pop("FUSEVAULT_SERVER", None)  # python -m fusevault would be a mount's server
    return env


def _loaded(names: list[str], wanted: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == w or n.startswith(w + ".") for w in wanted))


def _imported_by_run(tmp_path: Path, *argv: str) -> tuple[list[str], subprocess.CompletedProcess]:
    """The modules ``python -m fusevault ARGV`` imports, as -X importtime lists them on stderr."""
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "fusevault", *argv],
                         capture_output=True, text=True, env=_env(tmp_path), timeout=120)
    names = [line.rsplit("|", 1)[1].strip() for line in run.stderr.splitlines()
             if line.startswith("import time:") and "|" in line]
    assert "fusevault.cli.app" in names, run.stderr[-2000:]  # the listing is what we think it is
    return names, run


def test_building_the_parser_imports_no_heavy_package(tmp_path):
    code = ("import sys\n"
            "from fusevault.cli.app import build_parser\n"
            "build_parser().format_help()\n"
            "print('\\n'.join(sys.modules))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_env(tmp_path), timeout=120, check=True)
    assert "fusevault.cli.sync" in run.stdout.split()  # every command's parser was built
    assert _loaded(run.stdout.split(), HEAVY) == []


def test_version_and_help_import_no_heavy_package(tmp_path):
    names, run = _imported_by_run(tmp_path, "--version")
    assert run.returncode == 0 and run.stdout.startswith("fusevault ")
    assert _loaded(names, HEAVY) == []
    names, run = _imported_by_run(tmp_path, "--help")
    assert run.returncode == 0 and "Every day:" in run.stdout
    assert _loaded(names, HEAVY) == []
    names, run = _imported_by_run(tmp_path, "peer", "--help")  # a subcommand's help too
    assert run.returncode == 0 and "ACTION" in run.stdout
    assert _loaded(names, HEAVY) == []


def test_status_imports_no_network_or_vault_package(tmp_path):
    names, run = _imported_by_run(tmp_path, "status")
    assert run.returncode == 0, run.stderr[-2000:]
    if "no vault is mounted" in run.stdout:  # nothing to ask: not even the control socket's trio
        assert _loaded(names, HEAVY) == []
    else:  # a mount of another run, visible here, was asked on its socket (fs/control.py imports trio)
        assert _loaded(names, tuple(h for h in HEAVY if h != "trio")) == []


def test_a_mount_server_loads_no_http_client_until_a_peer_or_a_link_is_used(tmp_path):
    """Every mount's server imports the file system's modules, the sync service and the links' owner;
    the HTTP client (httpx, ~a tenth of the server's start) only once a peer is contacted
    (sync/service.py) or a link used (links/owner.py ``_client``)."""
    code = ("import sys\n"
            "import fusevault.fs.server, fusevault.fs.personal, fusevault.fs.shared\n"
            "print('\\n'.join(sys.modules))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_env(tmp_path), timeout=120, check=True)
    names = run.stdout.split()
    assert "fusevault.sync.replicator" in names and "fusevault.links.owner" in names  # what is looked at
    assert _loaded(names, ("httpx", "httpcore", "fusevault.sync.couch_api", "fusevault.links.client")) == []
