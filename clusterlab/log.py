"""Step banners with timings, warnings, and tqdm progress for long work; work run in the
background logs into a buffer that is shown, in one piece, when its result is taken."""

import contextlib
import sys
import threading
import time

from tqdm import tqdm

verbose = False
_thread = threading.local()  # per thread: depth of nested steps, lines held back


def _depth() -> int:
    return getattr(_thread, "depth", 0)


def info(message: str) -> None:
    line = f"{'  ' * _depth()}{message}"
    held = getattr(_thread, "held", None)
    if held is not None:
        held.append(line)
    else:
        print(line, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    info(f"WARNING: {message}")


def detail(message: str) -> None:
    """Printed only with -v: subprocess output and other noise."""
    if verbose:
        info(message)


@contextlib.contextmanager
def step(title: str):
    """Log a step's start and end with its duration; steps nest."""
    info(f"‣ {title}")
    start = time.monotonic()
    _thread.depth = _depth() + 1
    try:
        yield
    except BaseException:
        _thread.depth = _depth() - 1
        info(f"✗ {title} (failed after {time.monotonic() - start:.1f}s)")
        raise
    _thread.depth = _depth() - 1
    info(f"✓ {title} ({time.monotonic() - start:.1f}s)")


class Background:
    """fn(), run in a thread while the caller goes on; its log lines are held back."""

    def __init__(self, fn):
        self._fn, self._lines, self._outcome = fn, [], None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        _thread.held = self._lines
        try:
            self._outcome = (True, self._fn())
        except BaseException as e:  # handed to the caller of result()
            self._outcome = (False, e)

    def result(self):
        """Wait for fn; show what it logged; return its result or raise its exception."""
        self._thread.join()
        for line in self._lines:
            info(line)
        done, value = self._outcome
        if not done:
            raise value
        return value


def progress(total: int | None, description: str, unit: str = "B") -> tqdm:
    """A progress bar on stderr, scaled for bytes unless told otherwise."""
    # in a CI log (no terminal) a line every half minute, not a redraw every tenth of a second
    interval = 0.1 if sys.stderr.isatty() else 30
    return tqdm(total=total, desc=f"{'  ' * _depth()}{description}", unit=unit,
                unit_scale=unit == "B", unit_divisor=1024 if unit == "B" else 1000,
                file=sys.stderr, leave=False, dynamic_ncols=True, mininterval=interval)
