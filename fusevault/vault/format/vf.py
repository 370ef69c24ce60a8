"""The ``.vf`` file's framing (docs/FORMAT.md): its header, a record's head, and
the associated data a block is sealed with.  Bytes only: vault/files/ reads
and writes them.

    header   b"FVVF" | u8 format | 3 zero bytes | 16-byte file id
    record   u32 length of the rest | u8 kind | nonce(12) | ciphertext | tag(16)
"""

from __future__ import annotations

import functools
import struct
import threading
import uuid

from fusevault.crypto import aead

VF_FORMAT = 1
HEADER = struct.Struct("<4sB3x16s")
RECORD_HEAD = struct.Struct("<IB")
KIND_BLOCK = 1
MANIFEST_INDEX = -1  # a version's manifest among its records (its tree's nodes are below)


# Appends to one .vf are serialised across the Contents of a process (one per
# unlocked user holding the file open): a fixed set of locks, by path.
_APPEND_LOCKS = [threading.Lock() for _ in range(64)]


def append_lock(path: str) -> threading.Lock:
    return _APPEND_LOCKS[hash(path) % len(_APPEND_LOCKS)]


def header_for(fid: str) -> bytes:
    return HEADER.pack(b"FVVF", VF_FORMAT, uuid.UUID(fid).bytes)


@functools.lru_cache(maxsize=4096)
def _block_ad_parts(fid: str, vid: str) -> tuple[bytes, bytes]:
    return aead.ad("block", fid), aead.ad("", vid)[len(aead.ad("")):]


_INDEX_PART = struct.Struct("<Iq")  # an int part of aead.ad: its length (8), then it


def block_ad(fid: str, index: int, vid: str, last: bool) -> bytes:
    """``aead.ad("block", fid, index, vid, int(last))``, from cached pieces: it
    is built for every block read or written (16 KiB blocks: 64 a MiB)."""
    head, vid_part = _block_ad_parts(fid, vid)
    return head + _INDEX_PART.pack(8, index) + vid_part + _INDEX_PART.pack(8, int(last))


def record_length(plain: int) -> int:
    return RECORD_HEAD.size + aead.OVERHEAD + plain
