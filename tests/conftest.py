"""Shared by every test folder."""

import shutil
import signal

import pytest


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"stopped by signal {signum}")


def pytest_configure(config):
    # a run stopped by SIGTERM (a CI time limit, kill) unwinds like Ctrl-C, so the fixtures
    # still power off VMs and detach loop devices instead of leaving them behind
    signal.signal(signal.SIGTERM, _interrupt)


@pytest.fixture(scope="module")
def module_tmp(request, tmp_path_factory):
    """A test module's own temporary folder. Its images take gigabytes, and a whole run holds
    many: removed after the module's last test, unless one of them failed (kept to look at)."""
    folder = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    failed_before = request.session.testsfailed
    yield folder
    if request.session.testsfailed == failed_before:
        shutil.rmtree(folder)
