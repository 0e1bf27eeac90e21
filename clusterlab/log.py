"""Step banners with timings, warnings, and tqdm progress for long work; work run in the
background logs into a buffer that is shown, in one piece, when its result is taken. Every step
is also recorded, for machines: recorded_steps()."""

import contextlib
import sys
import threading
import time

from tqdm import tqdm

verbose = False
_thread = threading.local()  # per thread: depth of nested steps, lines held back, steps running
# every step of the process, in the order they started (threads included); an entry is complete
# once its "result" is set, when the step ends
_record: list[dict] = []
_record_lock = threading.Lock()


def _depth() -> int:
    return getattr(_thread, "depth", 0)


def info(message: str) -> None:
    line = f"{'  ' * _depth()}{message}"
    held = getattr(_thread, "held", None)
    if held is not None:
        held.append(line)
    else:
        try:
            print(line, file=sys.stderr, flush=True)
        except OSError:  # a terminal that went away (SIGHUP): the build goes on, unwinds
            pass


def warn(message: str) -> None:
    info(f"WARNING: {message}")


def detail(message: str) -> None:
    """Printed only with -v: subprocess output and other noise."""
    if verbose:
        info(message)


@contextlib.contextmanager
def step(title: str, *, name: str | None = None):
    """Log a step's start and end with its duration; steps nest. The step is recorded under
    name (a short stable identifier; its title when not given): see recorded_steps()."""
    info(f"‣ {title}")
    start = time.monotonic()
    entry = {"name": name or title, "title": title, "depth": _depth(),
             "background": getattr(_thread, "background", False), "seconds": None, "result": None}
    with _record_lock:
        _record.append(entry)
    running = _running()
    running.append([entry, "done"])  # the step, and its result should it end well
    _thread.depth = _depth() + 1
    try:
        yield
    except BaseException:
        _thread.depth = _depth() - 1
        seconds = time.monotonic() - start
        _finish(running, "failed", seconds)
        info(f"✗ {title} (failed after {seconds:.1f}s)")
        raise
    _thread.depth = _depth() - 1
    seconds = time.monotonic() - start
    _finish(running, running[-1][1], seconds)
    info(f"✓ {title} ({seconds:.1f}s)")


def _running() -> list[list]:
    """This thread's steps that have started and not ended, innermost last."""
    if not hasattr(_thread, "running"):
        _thread.running = []
    return _thread.running


def _finish(running: list[list], result: str, seconds: float) -> None:
    entry, _ = running.pop()
    with _record_lock:
        entry["seconds"], entry["result"] = round(seconds, 1), result


def from_cache() -> None:
    """The innermost running step (of this thread) took what it makes from the cache: say so,
    and record the step as "cached"."""
    if _running():
        _running()[-1][1] = "cached"
    info("unchanged: taken from the cache")


def built() -> None:
    """The innermost running step (of this thread) made what it makes, for the cache: record
    the step as "built" (unless it fails after all)."""
    if _running():
        _running()[-1][1] = "built"


def recorded_steps() -> list[dict]:
    """The steps of this process that have ended, in the order they started, threads' included
    (a thread's steps are in the record as they start, and show in the log when the
    Background's result is taken). Each is {"name", "title", "depth" (within its thread),
    "background" (run in a Background thread), "seconds", "result"}, result being "built" or
    "cached" (a step that makes a cached thing: see built() and from_cache()), "done" (any
    other step that ended well) or "failed"."""
    with _record_lock:
        return [dict(entry) for entry in _record if entry["result"] is not None]


class Background:
    """fn(), run in a thread while the caller goes on; its log lines are held back."""

    def __init__(self, fn):
        self._fn, self._lines, self._outcome = fn, [], None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        _thread.held, _thread.background = self._lines, True
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
