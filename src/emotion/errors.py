"""One error type for every problem a user can fix, and a wrapper that prints it as one line."""
from __future__ import annotations

import functools
import sys
import time
from pathlib import Path


class EmotionError(Exception):
    """A problem with the user's input or setup; the message says what and how to fix it."""


def one_line_errors(main):
    """Run `main`; turn EmotionError into one stderr line and exit code 1, and report wall time."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        name = main.__module__ if main.__module__ != "__main__" else Path(sys.argv[0]).stem
        try:
            result = main(*args, **kwargs)
        except EmotionError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(1) from None
        except BrokenPipeError:  # output piped into `head` and the like: stop quietly, as Unix tools do
            sys.stdout = None
            raise SystemExit(0) from None
        try:
            print(f"[{name}] done in {time.perf_counter() - start:.1f} s", flush=True)
        except BrokenPipeError:
            sys.stdout = None
        return result

    return wrapper
