"""Domain errors.

Every error a person can cause carries a one-line message and a distinct exit
code for the CLI.  Inside the mount, the file-system errors below are turned
into errno values only at the FUSE boundary (fusevault/fs/operations.py).
"""

from __future__ import annotations

import errno


class VaultError(Exception):
    """Base class; ``str(err)`` is the one-line message shown to the user."""

    exit_code = 1


class WrongPassphrase(VaultError):
    exit_code = 3


class VaultNotFound(VaultError):
    exit_code = 4


class CorruptData(VaultError):
    """Ciphertext or a stored object failed authentication or parsing."""

    exit_code = 5


class Forged(CorruptData):
    """A document whose signature or author does not hold: acted on by nobody.

    A kind of CorruptData, so a forged node is EIO at the mount exactly like
    a damaged one; callers that load many documents refuse the one, warn
    (vault/model/alarms.py) and go on with the others."""


class UnsafeId(CorruptData):
    """An id that would become a path in the vault folder but is no name fusevault makes (32 hex
    digits): "../x" or "/x" from an unsigned document would write or delete outside it
    (vault/format/layout.py ``checked_id``).  Refused before any path is made of it."""


class MountPointError(VaultError):
    exit_code = 6


class UnsupportedFormat(VaultError):
    exit_code = 7


class VaultReadOnly(VaultError):
    exit_code = 8


class NoSpace(VaultError):
    exit_code = 9


class StoreUnavailable(VaultError):
    exit_code = 10


class AlreadyExists(VaultError):
    exit_code = 11


class InvalidInput(VaultError):
    exit_code = 12


# --- the recovery key (crypto/recovery.py); 26 is left for `fusevault check`


class BadRecoveryWord(InvalidInput):
    """A recovery word that is not in the BIP-39 English list (the message names it)."""

    exit_code = 27


class BadRecoveryChecksum(InvalidInput):
    """Every word is in the list, but the mnemonic's checksum fails."""

    exit_code = 28


class WrongRecoveryKey(VaultError):
    """Valid words that do not open this user's master key."""

    exit_code = 29


class NoRecoveryKey(VaultError):
    """The user has no recovery key (never made, or revoked)."""

    exit_code = 30


class VaultInUse(VaultError):
    """Another process (a mount, a watcher) is serving the vault."""

    exit_code = 17


class Conflict(VaultError):
    """A document was updated with a stale revision."""

    exit_code = 13


# --- file-system errors (raised by the Volume, mapped to errno at the FUSE boundary)


class FsError(VaultError):
    pass


class NotFound(FsError):
    exit_code = 4


class Exists(FsError):
    pass


class ReservedName(Exists):
    """A name the root keeps for a view (``.versions``, ``shared``, ``groups``): not made there by a
    command (``restore --to``, a drop box's folder), attack round 52t (1)."""

    exit_code = 33


class NotEmpty(FsError):
    pass


class NotADirectory(FsError):
    pass


class IsADirectory(FsError):
    pass


class NameTooLong(FsError):
    pass


class InvalidArgument(FsError):
    pass


class NoAttribute(FsError):
    pass


class NotSupported(FsError):
    pass


class PermissionDenied(FsError):
    exit_code = 22


class CrossOwner(FsError):
    """A move between files of two owners (a shared folder and one's own):
    EXDEV, so ``mv`` copies and deletes instead, sealing under the right key."""


class BadHandle(FsError):
    pass


class FileTooLarge(FsError):
    """A size or write past what the content format addresses (EFBIG)."""


# --- send / receive


class RelayUnavailable(VaultError):
    exit_code = 14


class RateLimited(VaultError):
    exit_code = 15


class WrongCode(VaultError):
    exit_code = 16


# --- capability links


class LinkRefused(VaultError):
    """The link store refused a key: a wrong or revoked link, or one without that right."""

    exit_code = 18


class LinkGone(VaultError):
    """The link expired, was revoked, or never existed."""

    exit_code = 19


class DropsWaiting(VaultError):
    """A drop box's revoke that could not take in every drop made before it: the box is closed to new
    drops, and stays on the server (with its record) until they are collected (round 53t (2))."""

    exit_code = 34


class Locked(VaultError):
    """The user's keys are not in memory (their passphrase TTL ran out, or
    they ran ``fusevault lock``); ``fusevault unlock`` opens it again."""

    exit_code = 20


class LockFailed(VaultError):
    """A lock could not save every file (a full disk, a store away): the user
    stays unlocked rather than lose what is unsaved."""

    exit_code = 21


class SaveFailed(VaultError):
    """An unmount could not save everything (the mount's log says what)."""

    exit_code = 21


# --- peer sync


class PeerUnavailable(VaultError):
    """A sync peer is away, refuses us, or answers what CouchDB would not."""

    exit_code = 23


class ForeignVault(VaultError):
    """A peer database holds another vault's documents: mixing them would wreck both."""

    exit_code = 24


# --- other local users


class Unsafe(VaultError):
    """A folder or file other local users could read or replace (a runtime
    folder someone else made, key material others may read): refused, with
    the command that fixes it."""

    exit_code = 25


# --- checking a vault


class Damaged(VaultError):
    """``fusevault check`` found damaged data or refused documents (gocryptfs's fsck uses 26 too)."""

    exit_code = 26


# --- names


class NameClash(VaultError):
    """Several user (or group) documents claim one name and none is the one this
    user trusts, or the one that claims it is not the one pinned under it (the
    pinned one's document is gone): refused rather than granted to whichever
    the store lists."""

    exit_code = 31


class Replayed(VaultError):
    """A grant body in the store is older than one this device saw, concurrent with it, or not signed by
    its owner: a command that would re-sign it (and so make it the newest) refuses."""

    exit_code = 32


# --- OSErrors of a known kind, and the exit code of a bug (the command's
# last line of defence, and the mount's server process, fs/daemon.py)

INTERNAL_ERROR = 70  # sysexits' EX_SOFTWARE: a bug in fusevault, not a mistake of yours

OS_ERROR_KINDS: dict[int, type[VaultError]] = {
    errno.EACCES: PermissionDenied, errno.EPERM: PermissionDenied, errno.ENOENT: NotFound,
    errno.ENOSPC: NoSpace, errno.EDQUOT: NoSpace, errno.EROFS: VaultReadOnly, errno.EIO: CorruptData,
    errno.ENOTCONN: MountPointError,
}


def explain(err: OSError, doing: str | None = None) -> VaultError | None:
    """``err`` as a one-line VaultError of its kind, or None when it is of no known kind."""
    kind = OS_ERROR_KINDS.get(err.errno or 0)
    if kind is None:
        return None
    where = f"{err.filename}: " if err.filename else ""
    return kind(f"{doing + ': ' if doing else ''}{where}{err.strerror or err}")
