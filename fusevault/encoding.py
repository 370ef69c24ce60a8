"""Text encodings for binary values and file names inside JSON documents."""

from __future__ import annotations

import base64


def b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64d(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def name_to_str(name: bytes) -> str:
    # File names are arbitrary bytes; surrogateescape round-trips any of them
    # through JSON (json.dumps escapes the lone surrogates).
    return name.decode("utf-8", "surrogateescape")


def str_to_name(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")
