"""A deletion refused at unlock changes nothing: the file rebuilt from what its owner signed.

So does any other refused document of the user's own node (issue 22: a READ
recipient's rename or chmod, one not admitted; vault/tree/rebuilding.py
``rebuilt_in_place`` and ``keep_undeleted``): it is rebuilt the same way.

A deletion of the user's file signed by another who holds no WRITE where this
device last saw it is refused (vault/tree/authorship.py ``deleted``).  Its
document is the deleter's word: its key (an ``owner_dek`` he sealed to her
himself, or an older wrapping of hers replayed), its sealed attributes (which
any holder of the file's key can write: a READ recipient) and its ``seq``.
None of them is used (attack round 11: his key for her later writes, her file
set back to an older state, her later saves made "rollbacks").  Only the
file's identity is kept: its id and its revision.  The name it is shown under
is the one this device last saw (the ledger's ``names``), else her version's,
and the deleter's only when no other is known, never a dot name (``name_of``).
The rest comes from what the owner (or a writer of every folder it was in)
signed, as ``check --repair`` rebuilds a file:

- a file: its newest such version (key, epoch, contents, size, time); with
  none, an empty file (nothing was written to it), its key as for a folder;
- a folder (no version names it, and what was in it names it or the
  document says so): her own wrapping of its key, if this device never saw
  it given a new one; else a new key (a folder's key seals only its own
  document), which the caller replaces, before the mount serves, by one
  above every epoch its grantees hold, sealed to them (their key files
  hold the old key at the epoch it would have: attack round 14 (4));
- its permission bits and owner ids as this device last saw them in a state
  it took (the ledger's ``modes``: her commit, a load, a judged arrival);
  unknown to this device (a new device, a ledger from before), owner-only:
  0600 (a folder 0700), her own execute bit as the refused document says (it
  widens nobody's access but hers), never a group's or other's bit from it,
  and the owner ids of the root;
- where: the folders her own placement stamp puts it in, if followed, else
  those this device last saw it in (authorship.py ``was_placed``).
"""

from __future__ import annotations

import stat

from fusevault.crypto import aead
from fusevault.crypto.keys import MasterKey
from fusevault.encoding import b64d, str_to_name
from fusevault.errors import Forged, VaultError
from fusevault.vault.model import names
from fusevault.vault.model.history import Version, open_version_doc
from fusevault.vault.model.nodes import VERSION, Node, doc_dek, open_node_doc
from fusevault.vault.tree.authorship import Authorship
from fusevault.vault.tree.namespace import Tree


def rebuilt(tree: Tree, key: MasterKey, gate: Authorship, doc: dict, was: list[str], seen_epoch: int,
            holds: bool, kind: int | None = None,
            seen_mode: tuple[int, int, int] | None = None) -> tuple[Node, str | None, bool]:
    """The user's node ``doc`` names, whose deletion was refused, from her own material
    (``was``: the folders this device last saw it in; ``seen_epoch``: the newest key
    epoch this device saw of it; ``holds``: documents of hers name it as their folder;
    ``kind``: the type this device first saw it with, if known: it decides; ``seen_mode``:
    its permission bits and owner ids as this device last saw them, if known), the path
    her chosen version names (signed: a name it may be put back under, ``name_of``), and
    whether its key is a new one (no version, no wrapping of hers at a key epoch never
    changed): the caller then gives it a key above every epoch seen or held by its grantees,
    sealed to them, before anything is sealed under this one (the ledger's ``rolled``; attack
    round 14 (4): its readers' key files hold the old key at the epoch it would get)."""
    fid = doc["_id"]
    newest = _newest_version(tree, key, gate, fid, was)
    said = _said(doc, key)
    root = tree.root
    dek = first_key(doc, key) if newest is None and seen_epoch == 0 else None
    # The type this device first saw decides (the ledger's ``kinds``); unknown:
    # a file if a version of hers says so; else a folder if what was in it names
    # it (the deleter's word, which a reader of the folder can seal, never makes
    # it a file that hides them) or the document says so.
    if kind in (stat.S_IFDIR, stat.S_IFREG):
        folder = kind == stat.S_IFDIR
    else:
        folder = newest is None and (holds or (said is not None and stat.S_ISDIR(said.get("mode", 0))))
    if folder:
        newest = None
    perm, uid, gid = seen_mode or (_owner_only(said, folder), root.uid, root.gid)
    node = Node(0, fid, key.user_id, dek or aead.new_key(), (stat.S_IFDIR if folder else stat.S_IFREG) | perm,
                uid, gid)
    if newest is not None:
        version, epoch = newest
        node.dek, node.epoch = version.dek, epoch
        node.size = node.stored_size = version.size
        node.mtime = node.ctime = version.mtime
        node.head, node.manifest = version.vid, version.manifest
    node.rev = doc["_rev"]
    return node, (newest[0].path if newest is not None else None), newest is None and dek is None


def name_of(doc: dict, key: MasterKey, was: list[str], signed_path: str | None,
            seen: bytes | None = None) -> bytes:
    """The name the node is put back under: the one this device last saw it under (``seen``:
    the ledger's ``names``, a state it took); else the one in the path of her own version it
    was rebuilt from (``signed_path``: signed by her or a writer of its folders); for a node
    with neither (a folder has no version), the one the deletion gives it in a folder it was
    in, or its ``trashed`` path's (a name only: the place is this device's; the deleter's
    word, but the only one there is), never a dot name (he would hide it from ``ls``); else
    one made from its id.  A READ recipient's refused deletion renames nothing of hers
    (attack rounds 13 (3) and 14 (3))."""
    if seen is not None and names.problem(seen) is None:
        return seen
    if signed_path and names.problem(name := str_to_name(signed_path.rpartition("/")[2])) is None:
        return name
    said = _said(doc, key) or {}
    links = said.get("links") or []
    candidates = [name for parent, name in links if parent in was and isinstance(name, str)]
    trashed = said.get("trashed")
    if isinstance(trashed, list) and trashed and isinstance(trashed[0], str):
        candidates.append(trashed[0].rpartition("/")[2])
    for candidate in candidates:
        name = str_to_name(candidate)
        if names.problem(name) is None and not name.startswith(b"."):
            return name
    return b"recovered " + doc["_id"][:8].encode()


def first_key(doc: dict, key: MasterKey) -> bytes | None:
    """Her own wrapping of the file's key in the refused document, at key epoch 0,
    for a file this device never saw given a new key: the only key it ever had
    (its readers keep reading it).  A wrapping does not bind its epoch: a file
    given a new key since may be served an older wrapping, so then none is used.
    Never an ``owner_dek``: anyone can seal one to her."""
    if "en_file_dek" not in doc or doc.get("epoch", 0) != 0:
        return None
    try:
        return key.unwrap_dek(doc["_id"], b64d(doc["en_file_dek"]))
    except (VaultError, ValueError, TypeError):
        return None


def _owner_only(said: dict | None, folder: bool) -> int:
    """The permission bits of a node this device never saw the mode of: hers only (0600,
    a folder 0700), with her execute bit if the refused document gives it (the deleter's
    word: it may only add to her own access, never a group's or another user's)."""
    if folder:
        return 0o700
    mode = said.get("mode") if said is not None else None
    return 0o600 | (mode & 0o100 if isinstance(mode, int) and not isinstance(mode, bool) else 0)


def _said(doc: dict, key: MasterKey) -> dict | None:
    """The refused document's sealed attributes, if they open (the deleter's word: only its
    type, name and owner execute bit are read)."""
    try:
        return open_node_doc(doc, key)[1]
    except VaultError:
        return None


def _newest_version(tree: Tree, key: MasterKey, gate: Authorship, fid: str,
                    was: list[str]) -> tuple[Version, int] | None:
    """The newest version of ``fid`` (highest key epoch, then time) signed by the owner
    or by a writer of every folder it was in, that opens with the key it holds for her:
    (it, its epoch)."""
    held = [parent for p in was if (parent := tree.find(p)) is not None]
    best: tuple[int, int, str, Version] | None = None
    for doc in tree.store.by_file(VERSION, fid):
        if doc.get("owner") != key.user_id:
            continue
        try:
            signer = gate.trust.verify(doc, author=key.user_id)
        except Forged:
            continue
        if signer != key.user_id and not (held and all(
                gate.writes_at(tree, signer, key.user_id, parent) for parent in held)):
            continue
        epoch = doc.get("epoch", 0)
        try:
            version = open_version_doc(doc, doc_dek(doc, key, fid))
        except (VaultError, KeyError, TypeError, ValueError):
            continue
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            continue
        rank = (epoch, version.time, version.vid, version)
        if best is None or rank[:3] > best[:3]:
            best = rank
    return None if best is None else (best[3], best[0])
