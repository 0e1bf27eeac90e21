"""A build stopped in the middle of a stage (SIGTERM, as CI or systemd would; SIGHUP, as a
dropped SSH session does, followed by a second signal while it cleans up) cleans up after
itself: no mount, no loop device, no output under its final name; started again, it reuses
the layers that were complete and makes the interrupted one anew."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import checkout
import pytest

from clusterlab import folders

pytestmark = pytest.mark.integration
CLUSTER_STAGE = "stages/40-cluster"


def clusterlab_mounts() -> list[str]:
    with open("/proc/self/mounts") as mounts:
        return [line for line in mounts
                if "clusterlab" in line.split()[1] or line.startswith("/dev/loop")]


def steps_record(out: Path) -> dict:
    """The record of its steps the build writes beside the manifest, failed or not."""
    path, = out.glob("*.steps.json")
    return json.loads(path.read_text())


def steps_from_cache(record: dict) -> dict[str, bool]:
    # only the steps that make a layer count
    return {s["name"]: s["result"] == "cached" for s in record["steps"]
            if s["name"] == "base" or s["name"].startswith("stage ")}


@pytest.mark.parametrize("signals, resume", [
    ([signal.SIGTERM], True),
    ([signal.SIGHUP, signal.SIGTERM], False),  # the second one must not cut the clean-up short
], ids=["SIGTERM", "SIGHUP-then-SIGTERM"])
def test_a_signal_during_a_stage_leaves_nothing_behind_and_resumes(project, tmp_path, signals,
                                                                    resume):
    out = tmp_path / "images"
    # the cluster stage must run (it installs packages): the stages before it come from the cache
    checkout.edit_uniquely(project / CLUSTER_STAGE / "enable.sh")
    log = tmp_path / "build.log"
    with open(log, "w") as log_file:
        build = subprocess.Popen([sys.executable, str(project / "build.py"), "build", "-v",
                                  "--set", f"image.output_dir={out}"],
                                 cwd=project, stderr=subprocess.STDOUT, stdout=log_file)
        deadline = time.monotonic() + 600
        while "apt-get install" not in log.read_text() or not clusterlab_mounts():
            assert build.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the cluster stage never started"
            time.sleep(1)
        for sig in signals:
            build.send_signal(sig)
            time.sleep(0.5)
        status = build.wait(timeout=300)
    assert status == 128 + signals[0], log.read_text()[-3000:]
    assert f"interrupted by {signals[0].name}; cleaned up" in log.read_text()
    assert clusterlab_mounts() == []
    assert subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout == ""
    # no output: only the record of the build's steps, which says it failed
    record = steps_record(out)
    assert sorted(p.name for p in out.iterdir()) == [folders.MARKER,
                                                     f"{record['name']}.steps.json"]
    assert record["outcome"] == "failed", record
    if not resume:
        return

    again = subprocess.run([sys.executable, str(project / "build.py"), "build",
                            "--set", f"image.output_dir={out}", "--set", "image.compression=zstd"],
                           cwd=project, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    steps = steps_from_cache(steps_record(out))
    assert steps["base"] and steps["stage 10-base"] and steps["stage 30-docker"], steps
    assert not steps["stage 40-cluster"], steps  # the half-made layer was not used
    assert len(list(out.glob("*.img"))) == 1
