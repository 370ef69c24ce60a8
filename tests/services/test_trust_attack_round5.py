"""Issue 22, attack round 5: the CouchDB server (who may withhold, replay and delete documents)
colluding with bob, who holds alice's file key (a READ recipient) and can write the vault folder,
against the check of every record against the signed version document (store/couch.py
``CouchPlaces``, vault/files/placements.py ``version_shas``).

Each test asserts the SAFE behaviour: EIO, never bob's bytes.  Failing ones are marked
``xfail(strict=True)`` with where the hole is.

Found at commit 782ef19 (main); every hole below was closed the same day (its test passes, no xfail is
left; docs/SECURITY.md names each):
- held: the current version's document withheld (deleted in the database) while its root is
  resealed to name bob's block: "its version document is missing", EIO and an alarm.
- held: another version's document of the same file served under the current version's id: it
  does not open under the current version's AD.
- HOLE: a format 4 file kept in CouchDB whose block, inherited from its first version, is
  resealed in place while the server deletes that first version's document: ``version_shas``
  returns "nothing to check" (None) for a non-current version whose document is gone, as for
  one retention dropped, and the resealed block is served.
"""

from __future__ import annotations

from pathlib import Path

import adversary
from conftest import mounted

from services.test_couchdb_records import (
    BLOCK,
    _file,
    _format4_in_couchdb,
    _planted_root,
    _refused,
    _reseal_block,
    _vf,
    couch_vault,  # noqa: F401 (a fixture)
)


def test_the_current_version_document_withheld_does_not_unlock_a_planted_root(
        couch_vault, tmp_path: Path) -> None:  # noqa: F811
    """bob reseals alice's current root to name his block (``_planted_root``) and the server
    deletes the document of that version, the only thing that says which root she sealed."""
    vault, server = couch_vault
    fid, _, head, _ = _planted_root(vault, server, tmp_path)
    server.delete(head)
    assert server.get(head) is None
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused(mnt, "f", 0, fid)


def test_another_versions_document_served_under_the_current_id_is_refused(
        couch_vault, tmp_path: Path) -> None:  # noqa: F811
    """The server serves the document of alice's first version (signed by her, whose
    ``manifest_sha256`` is another root) under the id of her current one, whose root bob
    resealed: the document does not open under the current version's id, so nothing vouches."""
    vault, server = couch_vault
    fid, _, head, _ = _planted_root(vault, server, tmp_path)
    (older,) = [d for d in server.all("FilesMetaData") if d.get("fid") == fid and d["_id"] != head]
    server.put({**older, "_id": head})
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused(mnt, "f", 0, fid)


def test_a_format_4_inherited_block_resealed_with_its_writers_document_deleted_is_refused(
        tmp_path: Path, couchdb_url: str) -> None:
    """tests/services/test_couchdb_records.py's format 4 attack (a block of ``dense`` written by
    its first version, inherited by its current one, resealed in place under the file's key),
    with the server also deleting the first version's document, so that no ``records`` digest
    speaks for the block.  Safe: EIO (the version its signed node names inherits it; the
    document's absence is not "nothing to check")."""
    vault = _format4_in_couchdb(tmp_path, couchdb_url)
    server = adversary.Server(couchdb_url)
    fid, dek, head, _ = _file(server, "dense")
    (writer,) = {d["_id"] for d in server.all("FilesMetaData") if d.get("fid") == fid} - {head}
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "other.txt").write_text("untouched")
    far = (8 << 20) // BLOCK
    _reseal_block(_vf(vault, fid), fid, dek, writer, far)
    server.delete(writer)
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused(mnt, "dense", far * BLOCK, fid)
