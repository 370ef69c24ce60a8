"""The device's cache of signatures already checked (issue 25): a second mount checks none
again, and a document forged after the cache was filled is still refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import adversary
import pytest
from conftest import PASSPHRASE, fusevault, mounted

from fusevault.vault.model import users
from fusevault.vault.model.nodes import open_node_doc


def _warned(mnt: Path, fid: str) -> None:
    status = fusevault("status", mnt, passphrase=None)
    assert status.returncode == 0, status.stderr
    assert any("WARNING" in line and fid in line for line in status.stdout.splitlines()), status.stdout


def _mount_counting(vault: Path, mnt: Path, stats: Path, monkeypatch, look) -> dict[str, int]:
    """Mount, run ``look`` on the mount, unmount; the signatures the mount checked and found cached."""
    monkeypatch.setenv("FUSEVAULT_OP_STATS", str(stats))
    with mounted(vault, mnt):
        look(mnt)
    monkeypatch.delenv("FUSEVAULT_OP_STATS")
    counts = json.loads(stats.read_text())
    stats.unlink()
    return {"verified": counts["signatures verified"]["count"],
            "cached": counts["signatures cached"]["count"]}


def _fids(vault: Path) -> dict[str, str]:
    """alice's node documents' fids by name (the test opens them with her key)."""
    user = next(u for u in adversary.docs(vault, "UserDetails") if u["username"] == "alice")
    key = users.unlock(user, PASSPHRASE.encode())
    out = {}
    for doc in adversary.docs(vault, "node"):
        if doc.get("owner") == key.user_id and not doc.get("delete"):
            out.update({name: doc["_id"] for _, name in open_node_doc(doc, key)[1]["links"]})
    return out


def _listing(mnt: Path) -> None:
    assert sorted(os.listdir(mnt)) == ["docs", "notes.txt"]
    assert (mnt / "notes.txt").read_text() == "the genuine notes.txt"
    assert (mnt / "docs" / "plan.txt").read_text() == "the genuine docs/plan.txt"


@pytest.fixture
def settled(vault: Path, tmp_path: Path) -> dict[str, str]:
    """alice's vault with a few files, mounted again once to read them; their fids by name."""
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "docs").mkdir()
        for name in ("notes.txt", "docs/plan.txt", "docs/list.txt"):
            (mnt / name).write_text(f"the genuine {name}")
    with mounted(vault, tmp_path / "mnt") as mnt:
        _listing(mnt)
    return _fids(vault)


def test_a_second_mount_checks_no_signature_again(vault: Path, tmp_path: Path, settled: dict,
                                                  monkeypatch) -> None:
    stats = tmp_path / "stats.json"
    first = _mount_counting(vault, tmp_path / "mnt", stats, monkeypatch, _listing)
    second = _mount_counting(vault, tmp_path / "mnt", stats, monkeypatch, _listing)
    assert second["verified"] == 0  # nothing changed since: every signature found in the cache
    assert second["cached"] == first["verified"] + first["cached"] > len(settled)


def test_a_document_forged_after_the_cache_was_filled_is_refused(vault: Path, tmp_path: Path,
                                                                 settled: dict, monkeypatch) -> None:
    stats = tmp_path / "stats.json"
    _mount_counting(vault, tmp_path / "mnt", stats, monkeypatch, _listing)  # every signature cached
    notes, plan, shown = (adversary.get(vault, settled[n]) for n in ("notes.txt", "plan.txt", "list.txt"))
    assert notes and plan and shown
    # A remembered signature over a changed body; another document's remembered signature.
    adversary.put(vault, {**notes, "delete": True}, {**plan, "sig": shown["sig"]})

    def look(mnt: Path) -> None:
        assert "notes.txt" in os.listdir(mnt)  # not deleted: shown as its author signed it
        assert (mnt / "notes.txt").read_text() == "the genuine notes.txt"
        if "plan.txt" in os.listdir(mnt / "docs"):
            assert (mnt / "docs" / "plan.txt").read_text() == "the genuine docs/plan.txt"
        assert (mnt / "docs" / "list.txt").read_text() == "the genuine docs/list.txt"
        _warned(mnt, notes["_id"])
        _warned(mnt, plan["_id"])

    counts = _mount_counting(vault, tmp_path / "mnt", stats, monkeypatch, look)
    assert counts["verified"] >= 2  # both checked, not taken from the cache
