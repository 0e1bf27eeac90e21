"""Shared by every test folder."""

import signal


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"stopped by signal {signum}")


def pytest_configure(config):
    # a run stopped by SIGTERM (a CI time limit, kill) unwinds like Ctrl-C, so the fixtures
    # still power off VMs and detach loop devices instead of leaving them behind
    signal.signal(signal.SIGTERM, _interrupt)
