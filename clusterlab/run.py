"""The one way ClusterLab runs a program: failures become messages that say what went wrong."""

import collections
import contextlib
import os
import shlex
import signal
import subprocess

from . import log
from .errors import BuildError

TAIL_LINES = 25
_running: set[subprocess.Popen] = set()  # programs started by run() and not finished


def run(argv: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None,
        capture: bool = False, stderr_too: bool = False, input: bytes | None = None,
        check: bool = True) -> str:
    """Run argv; return its stdout (with its stderr when stderr_too) when capture is set.

    Output is shown only with -v, but the last lines are always kept so that a failure can be
    reported with its command line, exit status and what it printed last.
    """
    log.detail(f"$ {shlex.join(argv)}")
    full_env = {**os.environ, **env} if env else None
    try:
        proc = subprocess.Popen(argv, env=full_env, cwd=cwd,
                                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE if capture and not stderr_too
                                else subprocess.STDOUT,
                                # its own process group, so that an interrupted build can stop
                                # it with everything it started (dpkg, maintainer scripts)
                                start_new_session=True)
    except FileNotFoundError:
        raise BuildError(f"{argv[0]}: command not found (is its package installed? "
                         f"'make image' installs the host packages)") from None
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    out = b""
    _running.add(proc)
    try:
        if capture:
            out, err = proc.communicate(input)
            tail.extend((err or out).decode(errors="replace").splitlines())
        else:
            if input is not None:
                proc.stdin.write(input)
                proc.stdin.close()
            _follow(proc.stdout, tail)
            proc.wait()
    except BaseException:
        _stop(proc)  # interrupted: the program must not outlive us, holding mounts busy
        raise
    finally:
        _running.discard(proc)
    if check and proc.returncode != 0:
        raise BuildError(_failure_message(argv, proc.returncode, tail))
    return out.decode(errors="replace")


def stop_all() -> None:
    """Stop every program still running, from any thread (work in the background, when the
    build is interrupted): their run() calls then fail."""
    for proc in list(_running):
        _stop(proc)


def terminate(proc: subprocess.Popen, grace: float = 10) -> None:
    """Ask a program started with Popen to stop; kill it if it has not within grace seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _stop(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=30)
            return
        except subprocess.TimeoutExpired:
            continue


def _follow(stream, tail: collections.deque) -> None:
    for raw in stream:
        line = raw.decode(errors="replace").rstrip("\n")
        tail.append(line)
        log.detail(f"  {line}")


def _failure_message(argv: list[str], status: int, tail) -> str:
    shown = "\n".join(f"  | {line}" for line in tail) or "  | (no output)"
    return f"command failed with exit status {status}: {shlex.join(argv)}\nlast output:\n{shown}"
