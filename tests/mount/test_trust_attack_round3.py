"""Issue 22, attack round 3: the gc fix of round 2 (``_hashed_first``: an own old-shape file is
recommitted as a Merkle tree before gc drops any of its versions' documents) attacked along the
paths that do not go through it.

The attacker, bob, holds the file's key and can write the vault folder (store.sqlite included).
Each test asserts the SAFE behaviour: a block bob resealed is never read as good (EIO + alarm),
and never signed into a Merkle tree the owner commits.

Found at commit aeba8fb (the tests that fail there are holes):
- HOLE: a trashed old-shape file is thinned by ``_thin`` with no recommit; restored, it serves bob's
  block, and its next edit (or a re-key on unshare) signs it into a Merkle tree.
- HOLE: an old-shape version the policy keeps, whose writer's document gc dropped, serves bob's
  block from ``.versions/``; ``restore --version`` and ``check --repair`` make it a signed Merkle head.
- HOLE: a file with unsaved writes when gc runs is skipped by ``_hashed_first`` but thinned: its
  commit fails, its kind 4 head stays with the document gone; the next edit signs bob's block.
- held: ``gc --dry-run``; a file with nothing to drop in one run, dropped in a later one; a re-key of
  an old-shape file whose documents are all here.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import fusevault, mounted

from fusevault.vault.format.manifest import KIND_HTREE
from mount.test_trust_attack_round2 import FAR4, _far_writer, _format4
from mount.test_trust_merkle import BLOCK, _file, _kinds, _live_docs, _refused_at, _reseal_block


def _as_of(days: int = 3) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + days * 86400))


def _gc_newest_only(mnt: Path, *extra: str) -> dict:
    """Keep only the newest version of each file (the trash kept 30 days): older documents go."""
    result = fusevault("retention", mnt, "--keep-every", "10", "--keep-all", "1", "--daily", "0",
                       "--weekly", "0", "--json")
    assert result.returncode == 0, result.stderr
    result = fusevault("gc", mnt, "--json", "--as-of", _as_of(), *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _edit(mnt: Path, name: str, offset: int, data: bytes) -> bool:
    """The owner's edit; False when its commit is refused (EIO: a block it would sign in is not
    what its version's signed document names), which is safe too: nothing is signed over it."""
    try:
        with open(mnt / name, "r+b") as f:
            f.seek(offset)
            f.write(data)
    except OSError as err:
        assert err.errno == 5, err
        return False
    return True


# --- 1. a file in the trash: gc thins it (``_thin`` for deleted nodes) with no recommit first


def _trashed_thinned_and_resealed(tmp_path: Path) -> tuple[Path, str]:
    """Format 4 vault: the owner deletes ``dense`` (kind 4, its far block inherited from its older
    version); gc thins the trash (keeps its last version, drops the older one's document); bob
    reseals the far block.  (vault, fid)."""
    vault = _format4(tmp_path)
    fid, dek, _head = _file(vault, "dense")
    writer = _far_writer(vault, fid)
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "other.txt").write_text("untouched")
        os.unlink(mnt / "dense")
        _gc_newest_only(mnt)
    _reseal_block(vault, fid, dek, writer, FAR4 // BLOCK)
    return vault, fid


def _restore_or_refused(mnt: Path) -> None:
    """``restore`` of ``dense`` out of the trash: done, or refused because the new key it gives a
    file out of the trash made it read bob's block (EIO, exit 5); either way the file is back."""
    restored = fusevault("restore", mnt / "dense")
    assert restored.returncode == 0 or (restored.returncode == 5 and "not what its author sealed"
                                        in restored.stderr), restored.stderr
    assert (mnt / "dense").exists()


def test_a_trashed_old_shape_file_restored_after_gc_does_not_serve_a_resealed_inherited_block(
        tmp_path: Path) -> None:
    """Format 4 vault: the owner deletes ``dense`` (kind 4, its far block inherited from its older
    version); gc thins the trash (keeps its last version, drops the older one's document).  bob
    reseals the far block; the owner restores ``dense`` from the trash.  Safe: the read is EIO
    with an alarm (gc hashed it first, or kept the document that checks it); never bob's bytes,
    and the next edit never signs bob's block into a Merkle tree."""
    vault, fid = _trashed_thinned_and_resealed(tmp_path)
    with mounted(vault, tmp_path / "mnt") as mnt:
        _restore_or_refused(mnt)
        _refused_at(mnt, "dense", FAR4, fid)


def test_a_trashed_old_shape_file_restored_after_gc_and_edited_does_not_sign_a_resealed_block(
        tmp_path: Path) -> None:
    """As above, and the owner's first edit after the restore (no read of the far block): the
    commit writes a Merkle tree (kind 6).  Safe: bob's block is not vouched for by it (the read
    after the edit is EIO with an alarm)."""
    vault, fid = _trashed_thinned_and_resealed(tmp_path)
    with mounted(vault, tmp_path / "mnt") as mnt:
        _restore_or_refused(mnt)
        edited = _edit(mnt, "dense", 20, b"third")
    assert not edited or _kinds(vault, fid)[_file(vault, "dense")[2]] == KIND_HTREE
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused_at(mnt, "dense", FAR4, fid)


# --- 2. an old-shape version that the policy keeps, whose writer's document gc dropped


def _kept_old_shape_version(tmp_path: Path) -> tuple[Path, str, bytes, str, str]:
    """Format 4 vault: the owner rewrites the far block of ``dense`` (a Merkle head that no longer
    references the format 4 far record), then gc keeps one version per minute: the two format 4
    versions are of the same minute, so their newest (kind 4, inheriting the far block) stays and
    the older one, which wrote the far block, would lose its document: gc keeps it, since the kept
    kind 4 version checks its far block with it.
    (vault, fid, DEK, far block's writer, kept kind 4 version)."""
    vault = _format4(tmp_path)
    fid, dek, old_head = _file(vault, "dense")
    writer = _far_writer(vault, fid)
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "other.txt").write_text("untouched")
        with open(mnt / "dense", "r+b") as f:
            f.seek(FAR4)
            f.write(b"new far block".ljust(BLOCK, b"."))
        for args in (("retention", mnt, "--keep-every", "0", "--keep-all", "100000", "--daily", "0",
                      "--weekly", "0", "--json"), ("gc", mnt, "--json")):
            result = fusevault(*args)
            assert result.returncode == 0, result.stderr
    live = _live_docs(vault)
    # gc keeps the document of the far block's writer: the kept kind 4 version checks its block with it.
    assert old_head in live and writer in live, "gc dropped a document a kept old-shape version needs"
    return vault, fid, dek, writer, old_head


def test_a_kept_old_shape_version_whose_writer_gc_dropped_does_not_serve_a_resealed_block(
        tmp_path: Path) -> None:
    """bob reseals the far block of the dropped writer; the owner reads the kept kind 4 version in
    ``.versions/``.  Safe: EIO with an alarm, never bob's bytes."""
    vault, fid, dek, writer, kept = _kept_old_shape_version(tmp_path)
    _reseal_block(vault, fid, dek, writer, FAR4 // BLOCK)
    with mounted(vault, tmp_path / "mnt") as mnt:
        oldest = sorted(os.listdir(mnt / ".versions" / "dense"))[0]
        with pytest.raises(OSError) as err:
            with open(mnt / ".versions" / "dense" / oldest, "rb") as f:
                pytest.fail(f"served {os.pread(f.fileno(), 40, FAR4)!r}")
        assert err.value.errno == 5


def test_restoring_a_kept_old_shape_version_does_not_sign_a_resealed_block(tmp_path: Path) -> None:
    """bob reseals the far block of the dropped writer; the owner restores the kept kind 4 version
    (``fusevault restore --version``): the restore commits a Merkle tree.  Safe: the restore is
    refused, or the restored file reads EIO at the far block; never a signed tree vouching for it."""
    vault, fid, dek, writer, kept = _kept_old_shape_version(tmp_path)
    _reseal_block(vault, fid, dek, writer, FAR4 // BLOCK)
    with mounted(vault, tmp_path / "mnt") as mnt:
        restored = fusevault("restore", mnt / "dense", "--version", kept)
        if restored.returncode == 0:
            assert _kinds(vault, fid)[_file(vault, "dense")[2]] == KIND_HTREE
            _refused_at(mnt, "dense", FAR4, fid)


# --- 3. a file being written while gc runs (``node.content.changed``): left to its own commit


def test_gc_while_an_old_shape_file_has_unsaved_writes_does_not_let_the_next_commit_sign_a_resealed_block(
        tmp_path: Path) -> None:
    """Format 4 vault; bob reseals the far block ``dense`` inherits from its older version.  The
    owner has ``dense`` open with a write the mount holds but has not committed (pushed out of the
    kernel's cache by sync(2), no fsync) when gc runs: ``_hashed_first`` leaves the file to its
    own commit, and gc drops the older version's document.  Then the owner closes the file: the
    commit is refused (EIO at close: this process still holds the older version's digest), and the
    head stays kind 4 with the document that checked its far block gone: the owner's next edit,
    at the next mount, writes a Merkle tree over bob's block.  Safe: the far block is never
    vouched for (EIO with an alarm), i.e. gc kept the document or hashed the block first."""
    vault = _format4(tmp_path)
    fid, dek, _ = _file(vault, "dense")
    writer = _far_writer(vault, fid)
    _reseal_block(vault, fid, dek, writer, FAR4 // BLOCK)
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "other.txt").write_text("untouched")
        fd = os.open(mnt / "dense", os.O_RDWR)
        try:
            os.pwrite(fd, b"third", 20)
            os.sync()  # the dirty page goes to the mount: a change not committed yet
            report = _gc_newest_only(mnt)
        finally:
            try:
                os.close(fd)  # the commit
            except OSError as err:
                print("close:", err)
        print("gc:", report["dropped"], "writer document kept:", writer in _live_docs(vault))
    with mounted(vault, tmp_path / "mnt") as mnt:  # the owner's next edit, at the next mount
        edited = _edit(mnt, "dense", 40, b"fourth")
    assert not edited or _kinds(vault, fid)[_file(vault, "dense")[2]] == KIND_HTREE
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused_at(mnt, "dense", FAR4, fid)


# --- 4. gc --dry-run, and a file with nothing to drop in one run whose documents go in a later one


def test_gc_dry_run_drops_no_document_an_old_shape_file_needs(tmp_path: Path) -> None:
    """``gc --dry-run`` over a format 4 vault: nothing recommitted, no document dropped; bob then
    reseals the far block: still checked against its version's document (EIO with an alarm)."""
    vault = _format4(tmp_path)
    fid, dek, head = _file(vault, "dense")
    writer = _far_writer(vault, fid)
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "other.txt").write_text("untouched")
        report = _gc_newest_only(mnt, "--dry-run")
        assert writer not in {d["version"] for d in report["dropped"]}, report
    assert writer in _live_docs(vault) and _file(vault, "dense")[2] == head
    _reseal_block(vault, fid, dek, writer, FAR4 // BLOCK)
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused_at(mnt, "dense", FAR4, fid)


def test_a_file_with_nothing_to_drop_in_one_gc_is_checked_when_a_later_gc_drops(tmp_path: Path) -> None:
    """A first gc under a policy that keeps everything (nothing to drop: ``_hashed_first`` not
    called); bob reseals the far block; a second gc whose policy drops the older version: it
    recommits first, the check fails, every version is kept (``kept_unverified``), read EIO."""
    vault = _format4(tmp_path)
    fid, dek, head = _file(vault, "dense")
    writer = _far_writer(vault, fid)
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "other.txt").write_text("untouched")
        for args in (("retention", mnt, "--keep-every", "100000000", "--json"), ("gc", mnt, "--json")):
            result = fusevault(*args)
            assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["versions_dropped"] == 0, result.stdout
    assert _kinds(vault, fid)[_file(vault, "dense")[2]] == 4
    _reseal_block(vault, fid, dek, writer, FAR4 // BLOCK)
    with mounted(vault, tmp_path / "mnt") as mnt:
        report = _gc_newest_only(mnt)
        assert report["kept_unverified"] == 1, report
        assert writer in _live_docs(vault)
        _refused_at(mnt, "dense", FAR4, fid)


# --- 5. ``check --repair``: the newest intact version restored is a kept old-shape one


def test_check_repair_does_not_restore_a_kept_old_shape_version_over_a_resealed_block(
        tmp_path: Path) -> None:
    """As in 2: the kept kind 4 version inherits the far block from a writer whose document gc
    dropped.  bob reseals that block, and also a block of the current (Merkle) version so that it
    is damaged: ``check --repair`` restores the newest intact version, the kind 4 one, as a new
    Merkle head.  Safe: the repaired file does not vouch for bob's block (EIO with an alarm)."""
    vault, fid, dek, writer, kept = _kept_old_shape_version(tmp_path)
    head = _file(vault, "dense")[2]
    _reseal_block(vault, fid, dek, writer, FAR4 // BLOCK)
    _reseal_block(vault, fid, dek, head, FAR4 // BLOCK)  # the current version's own far block
    repaired = fusevault("check", vault, "--repair")
    print(repaired.stdout)
    with mounted(vault, tmp_path / "mnt") as mnt:
        if _file(vault, "dense")[2] != head:
            assert _kinds(vault, fid)[_file(vault, "dense")[2]] == KIND_HTREE
        _refused_at(mnt, "dense", FAR4, fid)


# --- 6. re-key on revocation (vault/files/rekeying.py): every block read and sealed again


def test_unshare_rekey_of_an_old_shape_file_does_not_reseal_a_resealed_block_under_the_new_key(
        tmp_path: Path) -> None:
    """Format 4 vault: ``dense`` shared READ with bob, who reseals its far block (its version's
    document still here).  The owner takes the share back: the re-key reads the current contents
    and seals them again under a new key, in a Merkle tree.  Safe: bob's block is refused by that
    read (the re-key fails, or the file still reads EIO); it is never sealed anew under the new
    key, where no digest could tell it any more."""
    from mount.test_trust_writes import BOB, _admin

    vault = _format4(tmp_path)
    fid, dek, head = _file(vault, "dense")
    writer = _far_writer(vault, fid)
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "other.txt").write_text("untouched")
        assert fusevault("share", mnt / "dense", "--with", "bob", "--perm", "READ").returncode == 0
    _reseal_block(vault, fid, dek, writer, FAR4 // BLOCK)
    with mounted(vault, tmp_path / "mnt") as mnt:
        out = fusevault("unshare", mnt / "dense", "--with", "bob")
        print("unshare:", out.returncode, out.stdout, out.stderr)
        _refused_at(mnt, "dense", FAR4, fid)
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused_at(mnt, "dense", FAR4, fid)


def test_unshare_rekey_of_an_old_shape_file_whose_writer_gc_dropped_does_not_seal_a_resealed_block(
        tmp_path: Path) -> None:
    """The state of 1 (a trashed kind 4 file thinned by gc, restored): its far block's writer has
    no document any more.  bob, a READ recipient, reseals the far block; the owner takes the share
    back.  The re-key reads the far block with nothing signed to check it, seals bob's bytes anew
    under the new key and hashes them into the new Merkle tree, and says nothing (``upgrade``
    counts such blocks; the re-key does not).  Safe: EIO with an alarm, before and after."""
    from mount.test_trust_writes import BOB, _admin

    vault = _format4(tmp_path)
    fid, dek, head = _file(vault, "dense")
    writer = _far_writer(vault, fid)
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "other.txt").write_text("untouched")
        os.unlink(mnt / "dense")
        _gc_newest_only(mnt)
        assert fusevault("restore", mnt / "dense").returncode == 0
        assert fusevault("share", mnt / "dense", "--with", "bob", "--perm", "READ").returncode == 0
        genuine = (mnt / "dense").read_bytes()[FAR4:FAR4 + BLOCK]
    _reseal_block(vault, fid, dek, writer, FAR4 // BLOCK)
    with mounted(vault, tmp_path / "mnt") as mnt:
        out = fusevault("unshare", mnt / "dense", "--with", "bob")
        print("unshare:", out.returncode, out.stdout, out.stderr, _kinds(vault, fid))
    with mounted(vault, tmp_path / "mnt") as mnt:
        # A file out of the trash gets a new key, its contents sealed again in a Merkle tree,
        # before bob's reseal: the record he reseals is no longer read (the genuine bytes are
        # served); if it were, it is refused.
        try:
            served = (mnt / "dense").read_bytes()[FAR4:FAR4 + BLOCK]
        except OSError:
            _refused_at(mnt, "dense", FAR4, fid)
        else:
            assert served == genuine, served[:40]
