"""contrib/containers: what can be checked without a container engine (none runs here).

- compose.yaml is read by ``docker-compose config`` (Debian's docker-compose), and what it
  resolves to has the three services, their volumes and health checks, and the relay's
  link store on the CouchDB service.
- The relay's command line in the Containerfile and compose.yaml is one ``fusevault relay``
  accepts.
- With FUSEVAULT_TEST_CONTAINERFILE=1, the Containerfile's instructions run as a shell script
  on this machine (apt-get, a fresh virtualenv, pip install of this checkout: minutes, and
  the network): the installed relay then starts as the image's ENTRYPOINT + CMD would and
  serves /health and a link's browser page from the installed package.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from conftest import _free_port

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "contrib" / "containers"
COMPOSE = shutil.which("docker-compose")
SYSTEM_PYTHON = "/usr/bin/python3"  # docker-compose's own, which has PyYAML


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, its arguments) of a Containerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def resolved_compose(env: dict) -> dict:
    out = subprocess.run([COMPOSE, "-f", str(HERE / "compose.yaml"), "config"], env={**os.environ, **env},
                         capture_output=True, text=True, cwd=HERE)
    assert out.returncode == 0, out.stderr
    as_json = subprocess.run([SYSTEM_PYTHON, "-c", "import json, sys, yaml; "
                              "print(json.dumps(yaml.safe_load(sys.stdin)))"],
                             input=out.stdout, capture_output=True, text=True, check=True)
    return json.loads(as_json.stdout)


needs_compose = pytest.mark.skipif(COMPOSE is None and not os.environ.get("CI"),
                                   reason="docker-compose is not installed (setup.sh test installs it)")


@needs_compose
def test_the_compose_file_runs_couchdb_redis_and_the_relay_with_volumes_and_health_checks():
    config = resolved_compose({"COUCHDB_PASSWORD": "pw-from-env", "COUCHDB_USER": "vaultadmin"})
    services = config["services"]
    assert set(services) == {"couchdb", "redis", "relay"}
    assert services["couchdb"]["image"].startswith("docker.io/library/couchdb:")  # the official image
    assert services["redis"]["image"].startswith("docker.io/library/redis:")
    assert services["relay"]["build"]["dockerfile"] == "contrib/containers/Containerfile"
    assert Path(services["relay"]["build"]["context"]).resolve() == ROOT
    for name, data_dir in (("couchdb", "/opt/couchdb/data"), ("redis", "/data"),
                           ("relay", "/var/lib/fusevault-relay")):
        service = services[name]
        assert service["healthcheck"]["test"], name
        volumes = [v.split(":")[:2] if isinstance(v, str) else [v["source"], v["target"]]
                   for v in service["volumes"]]
        assert any(target == data_dir and source in config["volumes"] for source, target in volumes), name
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), port  # nothing open to the network by default
    relay = services["relay"]
    assert {name: dep["condition"] for name, dep in relay["depends_on"].items()} == {
        "couchdb": "service_healthy", "redis": "service_healthy"}
    command = relay["command"]
    assert command[command.index("--couchdb") + 1].startswith("http://couchdb:5984/")
    assert command[command.index("--redis") + 1].startswith("redis://redis:6379/")
    # The CouchDB login reaches the relay through its environment, not the URL or argv.
    assert relay["environment"]["FUSEVAULT_COUCHDB_PASSWORD"] == "pw-from-env"
    assert relay["environment"]["FUSEVAULT_COUCHDB_USER"] == "vaultadmin"
    assert "pw-from-env" not in " ".join(command)
    assert services["couchdb"]["environment"]["COUCHDB_PASSWORD"] == "pw-from-env"


@needs_compose
def test_the_compose_file_refuses_to_run_without_a_couchdb_password():
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUCHDB_")}
    out = subprocess.run([COMPOSE, "-f", str(HERE / "compose.yaml"), "config"], env=env,
                         capture_output=True, text=True, cwd=HERE)
    assert out.returncode != 0
    assert "COUCHDB_PASSWORD" in out.stderr


def test_the_relay_command_lines_are_ones_the_relay_accepts():
    steps = instructions(HERE / "Containerfile")
    entry = json.loads(dict(steps)["ENTRYPOINT"])
    cmd = json.loads(dict(steps)["CMD"])
    assert entry == ["fusevault", "relay"]
    compose_command = re.search(r"command: (\[\"--listen\".*?\])", (HERE / "compose.yaml").read_text(), re.S)
    assert compose_command
    for args in (cmd, json.loads(compose_command.group(1))):
        flags = [a for a in args if a.startswith("--")]
        help_text = subprocess.run([sys.executable, "-m", "fusevault", "relay", "--help"],
                                   capture_output=True, text=True, check=True).stdout
        for flag in flags:
            assert flag in help_text, flag
        assert args[args.index("--listen") + 1].startswith("0.0.0.0:")  # reachable from the host
    for word, rest in steps:
        if word == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), source


def as_script(steps: list[tuple[str, str]], overrides: dict[str, str]) -> str:
    """The Containerfile as a bash script: ARGs from ``overrides``, COPY from the checkout."""
    lines = ["set -euo pipefail"]
    for word, rest in steps:
        if word == "ARG":
            name, _, default = rest.partition("=")
            lines.append(f"export {name}={shlex.quote(overrides.get(name, default))}")
        elif word == "WORKDIR":
            lines.append(f'mkdir -p {rest} && cd {rest}')
        elif word == "COPY" and rest.startswith("--from"):
            continue  # one machine: what the build stage made is already where the run stage wants it
        elif word == "COPY":
            *sources, dest = rest.split()
            for source in sources:
                lines.append(f"cp -r {shlex.quote(str(ROOT / source))} {dest}")
        elif word == "RUN":
            # Emptying apt's lists keeps an image small; on this machine it would only hurt.
            lines.append(rest.replace("&& rm -rf /var/lib/apt/lists/*", ""))
        elif word == "ENV":
            lines.append(f"export {rest}")
    return "\n".join(lines) + "\n"


@pytest.mark.skipif(not os.environ.get("FUSEVAULT_TEST_CONTAINERFILE"),
                    reason="installs packages and this checkout (network, minutes): "
                           "set FUSEVAULT_TEST_CONTAINERFILE=1")
def test_the_containerfile_commands_build_a_relay_that_serves_links(tmp_path, redis_url, couchdb_server):
    steps = instructions(HERE / "Containerfile")
    overrides = {name: str(tmp_path / name.lower()) for name in ("SRC", "VENV", "STATE")}
    script = as_script(steps, overrides)
    assert "rm -rf" not in script
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:" + env.get("PATH", "")
    built = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert (tmp_path / "state").stat().st_uid == 65532

    # The image's ENTRYPOINT + CMD, with this machine's Redis and CouchDB and a free port.
    cmd = json.loads(dict(steps)["CMD"])
    port = _free_port()
    cmd[cmd.index("--listen") + 1] = f"127.0.0.1:{port}"
    cmd[cmd.index("--redis") + 1] = redis_url
    cmd[cmd.index("--token-key") + 1] = str(tmp_path / "state" / "relay-token.key")
    cmd += ["--couchdb", f"{couchdb_server}/links{uuid.uuid4().hex[:8]}"]
    relay = subprocess.Popen([str(tmp_path / "venv" / "bin" / "fusevault"), "relay", *cmd], env=env,
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=2).read()
                break
            except OSError:
                assert relay.poll() is None and time.monotonic() < deadline, relay.stderr.read().decode()
                time.sleep(0.2)
        # The page and its script come from the installed package (package data), not this checkout.
        with urllib.request.urlopen(url + "/l/some-item", timeout=5) as page:
            assert "Content-Security-Policy" in page.headers and b"link.js" in page.read()
        with urllib.request.urlopen(url + "/web/link.js", timeout=5) as script_file:
            assert script_file.read() == (ROOT / "fusevault" / "relay" / "web" / "link.js").read_bytes()
    finally:
        relay.kill()
        relay.wait(10)
        relay.stderr.close()
