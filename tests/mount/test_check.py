"""``fusevault check``: files made through a real mount, damaged on disk once it is
unmounted, then checked (and repaired) with the real command."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

from conftest import fusevault, mounted

DAMAGED = 26  # errors.Damaged
IN_USE = 17  # errors.VaultInUse


def check(vault: Path, *extra: str):
    return fusevault("check", vault, *extra)


def check_json(vault: Path, *extra: str) -> tuple[int, dict]:
    result = check(vault, "--json", *extra)
    assert result.returncode in (0, DAMAGED), result.stderr
    return result.returncode, json.loads(result.stdout)


def by_path(answer: dict) -> dict[str, dict]:
    return {f["path"]: f for f in answer["files"]}


def write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def vf(vault: Path, fid: str) -> Path:
    (found,) = vault.glob(f"users/*/own/{fid}.vf")
    return found


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x55]))


def flip_enc(vault: Path, doc_id: str) -> None:
    """Flip one byte of a document's sealed ``enc`` in the embedded store."""
    db = sqlite3.connect(vault / "store.sqlite")
    try:
        (body,) = db.execute("SELECT body FROM docs WHERE id = ?", (doc_id,)).fetchone()
        doc = json.loads(body)
        enc = bytearray(base64.b64decode(doc["enc"]))
        enc[len(enc) // 2] ^= 0x55
        doc["enc"] = base64.b64encode(bytes(enc)).decode()
        db.execute("UPDATE docs SET body = ? WHERE id = ?", (json.dumps(doc), doc_id))
        db.commit()
    finally:
        db.close()


def test_a_clean_vault_exits_0_and_a_mounted_one_is_refused(vault: Path, tmp_path: Path) -> None:
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "d").mkdir()
        write(mnt / "d" / "a.txt", b"one")
        write(mnt / "d" / "a.txt", b"two")
        write(mnt / "big.bin", bytes(range(256)) * 1000)
        busy = check(vault)
        assert busy.returncode == IN_USE
        assert "mounted" in busy.stderr and len(busy.stderr.strip().splitlines()) == 1
    result = check(vault)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 damaged file(s)" in result.stdout
    code, answer = check_json(vault)
    assert code == 0 and answer["clean"] and answer["damaged"] == 0
    files = by_path(answer)
    assert len(files["d/a.txt"]["versions"]) == 2 and files["d/a.txt"]["head_intact"]
    assert answer["checked"]["blocks"] >= 5


def test_every_kind_of_damage_is_reported_by_path(vault: Path, tmp_path: Path) -> None:
    names = ["block.txt", "manifest.txt", "sidecar.txt", "node.txt", "version.txt", "truncated.txt"]
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "docs").mkdir()
        for name in names:
            write(mnt / "docs" / name, f"old {name}\n".encode() * 100)
            write(mnt / "docs" / name, f"new {name}\n".encode() * 100)
    code, answer = check_json(vault)
    assert code == 0
    files = by_path(answer)
    fid = {name: files[f"docs/{name}"]["fid"] for name in names}
    newest = {name: files[f"docs/{name}"]["versions"][-1]["id"] for name in names}

    damages = {
        "block.txt": lambda: flip(vf(vault, fid["block.txt"]), 24 + 40),  # the first block's ciphertext
        "manifest.txt": lambda: flip(vf(vault, fid["manifest.txt"]), vf(vault, fid["manifest.txt"]).stat()
                                     .st_size - 20),  # the newest manifest, the last record
        "sidecar.txt": lambda: _edit_sidecar(vf(vault, fid["sidecar.txt"]).with_suffix(".vfmeta")),
        "node.txt": lambda: flip_enc(vault, fid["node.txt"]),
        "version.txt": lambda: flip_enc(vault, newest["version.txt"]),
        "truncated.txt": lambda: _truncate(vf(vault, fid["truncated.txt"]), 7),
    }
    expected = {"block.txt": "block 0 is damaged", "manifest.txt": "its manifest is damaged",
                "sidecar.txt": "its sidecar (.vfmeta) is damaged",
                "node.txt": "its node document does not open",
                "version.txt": "its version document does not open",
                "truncated.txt": "its manifest is damaged"}
    for name in names:  # one at a time: each is found, by its path, with exit code 26
        damages[name]()
        result = check(vault)
        assert result.returncode == DAMAGED, (name, result.stdout, result.stderr)
        assert f"docs/{name}" in result.stdout, (name, result.stdout)
        assert expected[name] in result.stdout, (name, result.stdout)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    code, answer = check_json(vault)
    assert code == DAMAGED and not answer["clean"]
    files = by_path(answer)
    assert {f"docs/{n}" for n in names} <= {p for p, f in files.items() if f["damaged"]}
    # Those whose newest version is damaged still have their first one intact.
    for name in ("manifest.txt", "version.txt", "truncated.txt"):
        state = files[f"docs/{name}"]
        assert state["versions"][0]["intact"] and not state["versions"][-1]["intact"], name
        assert state["newest_intact"] == state["versions"][0]["id"]
    block = files["docs/block.txt"]["versions"]  # the first block on disk is the first version's
    assert "block 0 is damaged" in block[0]["problem"] and block[-1]["intact"]
    assert files["docs/node.txt"]["where"] == "lost"  # named after its newest version document
    assert files["docs/truncated.txt"]["unreferenced_bytes"] > 0  # the cut manifest's remains


def _edit_sidecar(path: Path) -> None:
    fields = json.loads(path.read_bytes())
    fields["ACL"] = ["00000000000000000000000000000000:READ"]
    path.write_text(json.dumps(fields))


def _truncate(path: Path, cut: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - cut)


def test_repair_restores_the_last_intact_version_and_trashes_a_lost_file(vault: Path, tmp_path: Path) -> None:
    with mounted(vault, tmp_path / "mnt") as mnt:
        write(mnt / "report.txt", b"intact older bytes\n" * 50)
        write(mnt / "report.txt", b"newer bytes, soon damaged\n" * 50)
        write(mnt / "lost.txt", b"only version\n" * 50)
        write(mnt / "fine.txt", b"fine\n")
        (mnt / "d").mkdir()
        write(mnt / "d" / "nameless.txt", b"first\n")
        write(mnt / "d" / "nameless.txt", b"second\n")
        (mnt / "folder" / "sub").mkdir(parents=True)
        write(mnt / "folder" / "sub" / "in.txt", b"in a folder whose document is lost\n")
        write(mnt / "undocumented.txt", b"first\n")
        write(mnt / "undocumented.txt", b"contents intact, document not\n")
    files = by_path(check_json(vault)[1])
    flip_enc(vault, files["undocumented.txt"]["versions"][-1]["id"])
    flip_enc(vault, files["folder"]["fid"])  # a folder: no version names it, its entries do
    flip_enc(vault, files["d/nameless.txt"]["fid"])  # its name, mode, head: all in the sealed part
    report_vf, lost_vf = vf(vault, files["report.txt"]["fid"]), vf(vault, files["lost.txt"]["fid"])
    flip(report_vf, report_vf.stat().st_size - 20)  # the newest manifest
    flip(lost_vf, 24 + 40)  # its only block
    code, answer = check_json(vault, "--repair")
    assert code == DAMAGED
    files = by_path(answer)
    assert "restored version" in files["report.txt"]["repair"]
    assert "moved to the trash" in files["lost.txt"]["repair"]
    assert "node document was made again" in files["d/nameless.txt"]["repair"]
    # its current contents could not be verified: never signed again, the version that verifies is back
    assert "could not be verified" in files["undocumented.txt"]["repair"]
    assert "restored version" in files["undocumented.txt"]["repair"]
    assert files["folder"]["kind"] == "dir" and "folder is back at folder" in files["folder"]["repair"]
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "report.txt").read_bytes() == b"intact older bytes\n" * 50
        assert not (mnt / "lost.txt").exists()
        assert (mnt / "fine.txt").read_bytes() == b"fine\n"
        assert (mnt / "d" / "nameless.txt").read_bytes() == b"second\n"  # the tree loads again
        assert (mnt / "undocumented.txt").read_bytes() == b"first\n"  # what a signed digest vouches for
        assert (mnt / "folder" / "sub" / "in.txt").read_bytes() == b"in a folder whose document is lost\n"
        trash = fusevault("trash", mnt, "--json")
        assert trash.returncode == 0, trash.stderr
        assert "lost.txt" in [t["path"] for t in json.loads(trash.stdout)["trash"]]
        history = json.loads(fusevault("history", mnt / "report.txt", "--json").stdout)["versions"]
        assert len(history) == 3  # nothing destroyed: the damaged one stays in the history
    # Checked again: the file reads its new, intact newest version.
    files = by_path(check_json(vault)[1])
    for name in ("report.txt", "undocumented.txt", "d/nameless.txt"):
        assert files[name]["head_intact"] and files[name]["head"] in files[name]["intact_versions"], name


def test_mistakes_are_one_line_with_their_exit_code(vault: Path, tmp_path: Path) -> None:
    for args, env, code, words in [((tmp_path / "nope",), {}, 4, "no vault"),
                                   ((vault,), {"FUSEVAULT_PASSPHRASE": "wrong"}, 3, "wrong passphrase"),
                                   ((vault, "--user", "bob"), {}, 4, "no user")]:
        result = fusevault("check", *args, env=env)
        assert result.returncode == code, (args, result.stderr)
        assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_check_is_in_the_help_and_the_completion_scripts() -> None:
    assert "  check " in fusevault("--help", passphrase=None).stdout
    for shell in ("bash", "zsh"):
        assert "--repair" in fusevault("completion", shell, passphrase=None).stdout
