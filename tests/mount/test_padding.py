"""Size padding through real mounts: what the disk and a peer see, and that
every byte of every version still reads back exactly (docs/FORMAT.md,
docs/SECURITY.md "Sizes")."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

from conftest import PASSPHRASE, fusevault, mounted

from fusevault.crypto import aead
from fusevault.encoding import b64d
from fusevault.sync.content_docs import read_records
from fusevault.vault.files.content import Content
from fusevault.vault.format.layout import open_layout
from fusevault.vault.format.padding import padme
from fusevault.vault.services.opening import unlock_vault

BLOCK = 16384  # of a file begun since vault format 4 (vault/format/manifest.py NEW_BLOCK_SIZE)
SIZES = [0, 1, 1000, 65535, 65536, 65537, (1 << 20) + 7, 5 * (1 << 20) + 12345]


def manifest_records(n: int, stored: int) -> list[int]:
    """The lengths of a new file's manifest tree records (docs/FORMAT.md,
    "Manifest tree", kinds 6 and 7): a root that is a leaf up to 256 blocks, else leaves of
    256 blocks under a root (of level 1, enough for these sizes)."""
    # Written in one go, the blocks are one run, the final one its own run
    # when it is shorter.
    runs = [] if not n else [(0, n)] if n == 1 or stored % BLOCK == 0 else [(0, n - 1), (n - 1, 1)]
    # A Merkle tree (kinds 6 and 7): a leaf also holds the SHA-256 of each of
    # its blocks' records, an inner node that of each child's record.
    if n <= 256:
        return [33 + 14 + 6 + 16 * (1 if n else 0) + 31 * len(runs) + 32 * n]
    leaves: dict[int, int] = defaultdict(int)
    blocks: dict[int, int] = defaultdict(int)
    for first, count in runs:
        for pos in range(first // 256, (first + count - 1) // 256 + 1):
            leaves[pos] += 1
            blocks[pos] += min(first + count, (pos + 1) * 256) - max(first, pos * 256)
    return ([33 + 6 + 16 + 31 * leaves[pos] + 32 * blocks[pos] for pos in leaves]
            + [33 + 14 + 6 + 16 + (15 + 32) * len(leaves)])


def expected(stored: int, padded: bool = True) -> tuple[int, tuple[int, ...]]:
    """What docs/FORMAT.md says an observer sees of a file with one version
    whose stored content is ``stored`` bytes long: the .vf size and the
    lengths of its records (each a Record document for a peer)."""
    n = -(-stored // BLOCK)
    blocks = [BLOCK + 33] * (n - 1) + ([stored - (n - 1) * BLOCK + 33] if n else [])
    records = tuple(sorted(blocks + manifest_records(n, stored)))
    return 24 + sum(records), records


def observed(vault: Path) -> list[tuple[int, tuple[int, ...]]]:
    """Of each file: its .vf size on disk, and the lengths of the records a
    peer receives (read as the sync sends them)."""
    db = sqlite3.connect(vault / "store.sqlite")
    rows = db.execute("SELECT fid, vid, idx, owner, offset, length FROM places "
                      "ORDER BY owner, fid, n").fetchall()
    db.close()
    lengths = defaultdict(list)
    for doc in read_records(open_layout(vault), rows):
        lengths[doc["fid"]].append(len(b64d(doc["data"])))
    return sorted((vf.stat().st_size, tuple(sorted(lengths[vf.stem]))) for vf in vault.rglob("*.vf"))


def info(vault: Path) -> dict:
    result = fusevault("info", vault, "--json", passphrase=None)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def manifests(vault: Path) -> list[tuple[int, Content]]:
    """(true size, manifest) of every version in the vault, opened with the key."""
    unlocked = unlock_vault(vault, None, PASSPHRASE.encode())
    out = []
    try:
        for doc in unlocked.store.iter_type("FilesMetaData"):
            dek = unlocked.key.unwrap_dek(doc["fid"], b64d(doc["en_file_dek"]))
            plain = json.loads(aead.unseal(dek, b64d(doc["enc"]), aead.ad("version", doc["fid"], doc["_id"])))
            content = Content(unlocked.layout, doc["owner"], doc["fid"], dek, tuple(plain["manifest"]),
                              doc["_id"], check_sidecar=False)
            out.append((plain["size"], content.manifest))
            content.close()
    finally:
        unlocked.store.close()
    return out


def sources(tmp_path: Path, sizes: list[int]) -> list[Path]:
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    paths = []
    for size in sizes:
        path = folder / f"f{size}"
        path.write_bytes(os.urandom(size))
        paths.append(path)
    return paths


def test_padded_files_read_back_exactly_and_show_only_bucket_sizes(vault: Path, tmp_path: Path) -> None:
    assert info(vault)["padding"] == "padme"  # the default for a new vault
    assert json.loads((vault / "vault.json").read_text())["padding"] == "padme"
    # Files of the sizes, and files exactly as long as their padded sizes:
    # an observer must not tell the two apart.
    both = sorted(set(SIZES) | {padme(s) for s in SIZES})
    files = sources(tmp_path, both)
    with mounted(vault, tmp_path / "mnt") as mnt:
        subprocess.run(["cp", *files, mnt], check=True)
        for path in files:
            subprocess.run(["cmp", path, mnt / path.name], check=True)
            assert os.stat(mnt / path.name).st_size == path.stat().st_size
    with mounted(vault, tmp_path / "mnt") as mnt:  # from the stored versions, not the page cache
        for path in files:
            subprocess.run(["cmp", path, mnt / path.name], check=True)
    # (an empty file never written has no .vf at all)
    assert observed(vault) == sorted(expected(padme(size)) for size in both if size)
    assert {padme(s) for s in SIZES} != set(SIZES)  # some sizes did need padding
    for size, manifest in manifests(vault):
        assert manifest.padded and manifest.size == size
        n = -(-padme(size) // BLOCK)
        assert manifest.blocks.end == n and manifest.blocks.stored(0, n) == n


def edit(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def run_json(*args) -> dict:
    result = fusevault(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_history_restore_and_gc_of_padded_files(vault: Path, tmp_path: Path) -> None:
    contents = [os.urandom(n) for n in (100_000, 70_000, (1 << 20) + 7, 200, 65537)]
    with mounted(vault, tmp_path / "mnt") as mnt:
        for data in contents:
            edit(mnt / "f", data)
        with open(mnt / "f", "r+b") as f:  # grows in place, within and past its bucket
            f.seek(0, os.SEEK_END)
            f.write(b"tail")
            f.flush()
            f.write(os.urandom(5000))
        grown = (mnt / "f").read_bytes()
        assert grown[:65537] == contents[-1] and grown[65537:65541] == b"tail" and len(grown) == 70541
        contents.append(grown)
        names = sorted(os.listdir(mnt / ".versions" / "f"))
        assert [(mnt / ".versions" / "f" / n).read_bytes() for n in names] == contents
        assert [v["size"] for v in run_json("history", mnt / "f")["versions"]] == [len(c) for c in contents]
        third = run_json("history", mnt / "f")["versions"][2]
        run_json("restore", mnt / "f", "--version", third["id"])
    # (read after a new mount: a mount that had read the file keeps its old
    # size after a restore, padded or not; left to the owner of operations.py)
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "f").read_bytes() == contents[2]
        with open(mnt / "f", "r+b") as f:  # shrink: what was past the new end reads as zeros later
            f.truncate(1000)
            f.truncate(3000)
        assert (mnt / "f").read_bytes() == contents[2][:1000] + bytes(2000)

        run_json("retention", mnt, "--keep-all", "1", "--daily", "0", "--weekly", "0")
        later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3 * 86400))
        assert run_json("gc", mnt, "--as-of", later)["versions_dropped"] == len(contents) + 1
        assert (mnt / "f").read_bytes() == contents[2][:1000] + bytes(2000)
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "f").read_bytes() == contents[2][:1000] + bytes(2000)
    # What is left is one version of 3000 bytes, which wrote all its records:
    # a peer sees those of a new file of padme(3000) bytes (its manifest
    # names no version whose blocks it no longer uses).
    (size, manifest), = manifests(vault)
    assert size == 3000 and manifest.padded and len(manifest.vids) == 1
    db = sqlite3.connect(vault / "store.sqlite")
    (vid,) = db.execute("SELECT vid FROM places WHERE idx = -1 ORDER BY n DESC").fetchone()
    rows = db.execute("SELECT fid, vid, idx, owner, offset, length FROM places WHERE vid = ?",
                      (vid,)).fetchall()
    db.close()
    sent = sorted(len(b64d(d["data"])) for d in read_records(open_layout(vault), rows))
    assert tuple(sent) == expected(padme(3000))[1]


def test_no_padding_stores_exact_sizes(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    result = fusevault("init", vault, "--user", "alice", "--padding", "none")
    assert result.returncode == 0, result.stderr
    assert info(vault)["padding"] == "none"
    assert "padding: none" in fusevault("info", vault, passphrase=None).stdout
    files = sources(tmp_path, SIZES)
    with mounted(vault, tmp_path / "mnt") as mnt:
        subprocess.run(["cp", *files, mnt], check=True)
        for path in files:
            subprocess.run(["cmp", path, mnt / path.name], check=True)
    assert observed(vault) == sorted(expected(size, padded=False) for size in SIZES if size)
    assert expected(1000, padded=False)[0] == 1000 + 189  # 157 in kind 4, 160 in kind 3, 139 in format 1


def test_a_vault_from_before_padding_mounts_and_writes_as_before(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    assert fusevault("init", vault, "--user", "alice", "--padding", "none").returncode == 0
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "old").write_bytes(b"o" * 1000)
    marker = json.loads((vault / "vault.json").read_text())
    del marker["padding"]  # what vault.json looked like before padding
    (vault / "vault.json").write_text(json.dumps(marker))
    assert info(vault)["padding"] == "none"
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "old").read_bytes() == b"o" * 1000
        (mnt / "new").write_bytes(b"n" * 1000)
        assert (mnt / "new").read_bytes() == b"n" * 1000
    assert observed(vault) == [expected(1000, padded=False)] * 2


def test_padding_switched_off_in_vault_json_does_not_unpad(vault: Path, tmp_path: Path) -> None:
    """vault.json is clear text: whoever writes the vault folder can change it."""
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "doc").write_bytes(b"d" * 1000)
    marker = json.loads((vault / "vault.json").read_text())
    marker["padding"] = "none"
    (vault / "vault.json").write_text(json.dumps(marker))
    with mounted(vault, tmp_path / "mnt") as mnt:
        with open(mnt / "doc", "r+b") as f:  # an edit in place
            f.write(b"edited")
        # then a save as an editor makes it: a new file renamed over the old
        (mnt / ".doc.tmp").write_bytes(b"e" * 1001)
        os.rename(mnt / ".doc.tmp", mnt / "doc")
        assert (mnt / "doc").read_bytes() == b"e" * 1001
    versions = manifests(vault)
    assert sorted(size for size, _ in versions) == [1000, 1000, 1001]
    assert all(m.padded and m.blocks.end == 1 for _, m in versions)
    assert expected(padme(1001)) in observed(vault)  # the saved file, one version
    logs = Path(os.environ["FUSEVAULT_STATE_DIR"]) / "logs"
    assert any("holds padded files" in p.read_text() for p in logs.glob("mount-*.log"))


def test_a_peer_sees_only_padded_record_lengths_and_a_replica_reads_exact_bytes(
        couchdb_url: str, tmp_path: Path) -> None:
    from services.test_sync import new_device, settled, wait_for

    laptop = tmp_path / "laptop"
    assert fusevault("init", laptop, "--user", "alice").returncode == 0
    added = fusevault("peer", "add", "server", couchdb_url, "--vault", laptop, passphrase=None)
    assert added.returncode == 0, added.stderr
    sizes = [s for s in SIZES if s]
    files = sources(tmp_path, sizes)
    with mounted(laptop, tmp_path / "a") as a:
        subprocess.run(["cp", *files, a], check=True)
        wait_for(lambda: settled(a), "the laptop to send everything")
    # The server's Record documents, grouped by file: a peer learns each
    # file's padded size, not its size.
    with urllib.request.urlopen(f"{couchdb_url}/_all_docs?include_docs=true", timeout=30) as answer:
        docs = [row["doc"] for row in json.load(answer)["rows"] if row["id"].startswith("rec-")]
    lengths = defaultdict(list)
    for doc in docs:
        lengths[doc["fid"]].append(len(b64d(doc["data"])))
    assert sorted(tuple(sorted(v)) for v in lengths.values()) == sorted(expected(padme(s))[1] for s in sizes)
    desktop = new_device(couchdb_url, tmp_path, "desktop")
    assert info(desktop)["padding"] == "padme"  # the replica's own choice, not the server's
    with mounted(desktop, tmp_path / "b") as b:
        for path in files:
            subprocess.run(["cmp", path, b / path.name], check=True)
