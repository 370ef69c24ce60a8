"""Run ``fusevault`` sending itself SIGINT at a chosen moment: the N-th call of a function.

    python signal_at.py MODULE:QUALNAME N ARGS...

A race's unlucky moment made certain: a Ctrl-C that lands while a library
is half way through its bookkeeping (the process and all it talks to are real;
only the moment of the signal is chosen)."""

from __future__ import annotations

import functools
import importlib
import os
import runpy
import signal
import sys


def main() -> None:
    target, nth = sys.argv[1], int(sys.argv[2])
    module, _, qualname = target.partition(":")
    owner = importlib.import_module(module)
    *path, name = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    calls = 0

    @functools.wraps(original)
    def signalled(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == nth:
            os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)

    setattr(owner, name, signalled)
    sys.argv = ["fusevault", *sys.argv[3:]]
    runpy.run_module("fusevault", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
