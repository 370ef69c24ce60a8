"""The last line of defence of the ``fusevault`` command: no traceback on a terminal.

Each command turns the mistakes people make into a VaultError (one line, its
own exit code).  What still escapes lands here: a closed pipe on standard
output ends quietly as SIGPIPE would; an OSError (a folder one may not write,
a full disk) is one line with an exit code of its kind; anything else is a
bug: one line on the terminal, the traceback in a crash log.
"""

from __future__ import annotations

import logging
import os
import re
import select
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from fusevault.errors import INTERNAL_ERROR, InvalidInput, VaultError, explain

log = logging.getLogger("fusevault")

BROKEN_PIPE = 128 + 13  # what a shell shows for a program SIGPIPE ended
INTERRUPTED = 130


def run(command: Callable[[], int], name: str, verbose: bool) -> int:
    """``command()``'s exit code, whatever it raises; ``name`` is the command's, for a crash log
    (never its arguments: a link's key may be one)."""
    try:
        code = command()
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return code
    except VaultError as err:
        log.error("%s", err)  # one line: "fusevault: ..." on a terminal, level 3 in the journal
        return err.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return INTERRUPTED
    except BrokenPipeError as err:
        if _stdout_gone():  # `fusevault config show | head`: the reader has what it wanted
            _silence_stdout()
            return BROKEN_PIPE
        return _os_error(err, name, verbose)
    except OSError as err:
        return _os_error(err, name, verbose)
    except EOFError:  # Ctrl-D where something was asked
        log.error("the input ended before fusevault had what it needed")
        return InvalidInput.exit_code
    except Exception:
        return _crash(verbose, name)


def _os_error(err: OSError, name: str, verbose: bool) -> int:
    explained = explain(err)
    if explained is None:
        return _crash(verbose, name)
    log.debug("where", exc_info=True)
    log.error("%s", explained)
    return explained.exit_code


def _stdout_gone() -> bool:
    """Whether standard output is a pipe or socket nobody reads any more."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _silence_stdout() -> None:
    # https://docs.python.org/3/library/signal.html#note-on-sigpipe: the
    # interpreter flushes stdout once more at exit, which must not fail again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _crash(verbose: bool, name: str) -> int:
    kind, err, _ = sys.exc_info()
    what = kind.__name__ if kind else "error"
    where = _crash_log(name)
    if verbose:
        log.exception("internal error")
    if where is None:
        log.error("internal error (%s: %s); run it again with -v to see where", what, _unsaid(str(err)))
    else:
        log.error("internal error (%s: %s); please report it with %s", what, _unsaid(str(err)), where)
    return INTERNAL_ERROR


# A UnicodeError's message names the character or byte it could not take and where it stands in the
# text, and that text may be a passphrase or a code (a non-UTF-8 FUSEVAULT_PASSPHRASE wrote its odd
# byte's position into the crash log: attack round 49t (5)).  Only the codec and the reason are kept.
_UNICODE_DETAIL = re.compile(r"(can't (?:en|de)code|can't translate) "
                             r"(?:characters?(?: '.*?')?|bytes?(?: 0x[0-9a-f]+)?) in position \d+(?:-\d+)?")


def _unsaid(text: str) -> str:
    """``text`` without what a UnicodeError says of the text it failed on."""
    return _UNICODE_DETAIL.sub(r"\1 (which and where not shown)", text)


def _crash_log(name: str) -> Path | None:
    """The traceback in a file of the state directory (or /tmp), mode 0600."""
    from fusevault import paths

    text = _unsaid(f"fusevault {name}\n{traceback.format_exc()}")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for folder in (lambda: paths.state_dir() / "logs", lambda: Path(tempfile.gettempdir())):
        try:
            where = folder()
            where.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = where / f"crash-{stamp}-{os.getpid()}.log"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(text)
            return path
        except OSError:
            continue
    return None
