"""Clean-up on every exit path: a failure in it never hides the error that made it run; it is
kept and reported after that error."""

import contextlib
from collections.abc import Callable

failures: list[str] = []  # clean-up that failed while an error was already on its way


@contextlib.contextmanager
def undone(undo: Callable[[], None]):
    """Run the block, then undo(). After an error in the block, undo's own failure is kept in
    failures and the block's error goes on; after success, undo's failure is the error."""
    try:
        yield
    except BaseException:
        try:
            undo()
        except Exception as e:  # noqa: BLE001 (any failure of the clean-up is reported)
            failures.append(" ".join(str(e).split()) or type(e).__name__)
        raise
    undo()
