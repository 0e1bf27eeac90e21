"""A build stopped in the middle of a stage (SIGTERM, as CI or systemd would) cleans up after
itself: no mount, no loop device, no output under its final name."""

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def clusterlab_mounts() -> list[str]:
    with open("/proc/self/mounts") as mounts:
        return [line for line in mounts
                if "clusterlab" in line.split()[1] or line.startswith("/dev/loop")]


def test_sigterm_during_a_stage_leaves_nothing_behind(built, tmp_path):
    out = tmp_path / "images"
    # a time zone no earlier build used: the system stage must run again, in the chroot
    zone = f"Etc/GMT-{uuid.uuid4().int % 12 + 1}"
    log = tmp_path / "build.log"
    with open(log, "w") as log_file:
        build = subprocess.Popen([sys.executable, str(ROOT / "build.py"), "build", "-v",
                                  "--set", f"timezone={zone}", "--set", f"image.output_dir={out}"],
                                 cwd=ROOT, stderr=subprocess.STDOUT, stdout=log_file)
        deadline = time.monotonic() + 600
        while "apt-get install" not in log.read_text() or not clusterlab_mounts():
            assert build.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the system stage never started"
            time.sleep(1)
        build.send_signal(signal.SIGTERM)
        status = build.wait(timeout=300)
    assert status == 130, log.read_text()[-3000:]
    assert clusterlab_mounts() == []
    assert subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout == ""
    assert not out.exists() or not any(out.iterdir())
