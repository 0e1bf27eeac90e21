"""Step banners with timings, warnings, and tqdm progress for long work."""

import contextlib
import sys
import time

from tqdm import tqdm

verbose = False
_depth = 0


def info(message: str) -> None:
    print(f"{'  ' * _depth}{message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    info(f"WARNING: {message}")


def detail(message: str) -> None:
    """Printed only with -v: subprocess output and other noise."""
    if verbose:
        info(message)


@contextlib.contextmanager
def step(title: str):
    """Log a step's start and end with its duration; steps nest."""
    global _depth
    info(f"‣ {title}")
    start = time.monotonic()
    _depth += 1
    try:
        yield
    except BaseException:
        _depth -= 1
        info(f"✗ {title} (failed after {time.monotonic() - start:.1f}s)")
        raise
    _depth -= 1
    info(f"✓ {title} ({time.monotonic() - start:.1f}s)")


def progress(total: int | None, description: str, unit: str = "B") -> tqdm:
    """A progress bar on stderr, scaled for bytes unless told otherwise."""
    # in a CI log (no terminal) a line every half minute, not a redraw every tenth of a second
    interval = 0.1 if sys.stderr.isatty() else 30
    return tqdm(total=total, desc=f"{'  ' * _depth}{description}", unit=unit,
                unit_scale=unit == "B", unit_divisor=1024 if unit == "B" else 1000,
                file=sys.stderr, leave=False, dynamic_ncols=True, mininterval=interval)
