"""A build stopped in the middle of a stage (SIGTERM, as CI or systemd would; SIGHUP, as a
dropped SSH session does, followed by a second signal while it cleans up) cleans up after
itself: no mount, no loop device, no output under its final name; started again, it reuses
the layers that were complete and makes the interrupted one anew."""

import json
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from clusterlab import folders

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def clusterlab_mounts() -> list[str]:
    with open("/proc/self/mounts") as mounts:
        return [line for line in mounts
                if "clusterlab" in line.split()[1] or line.startswith("/dev/loop")]


def unused_time_zone() -> str:
    """A time zone that earlier builds most likely did not use: the system stage must run."""
    # canonical zones only: the image's tzdata has them all (old aliases are in tzdata-legacy)
    table = Path("/usr/share/zoneinfo/zone1970.tab").read_text()
    zones = sorted(line.split("\t")[2] for line in table.splitlines()
                   if line and not line.startswith("#"))
    return random.Random(uuid.uuid4().int).choice(zones)


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
def test_a_signal_during_a_stage_leaves_nothing_behind_and_resumes(built, tmp_path, signals,
                                                                    resume):
    out = tmp_path / "images"
    zone = unused_time_zone()
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

    again = subprocess.run([sys.executable, str(ROOT / "build.py"), "build",
                            "--set", f"timezone={zone}", "--set", f"image.output_dir={out}",
                            "--set", "image.compression=zstd"],
                           cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    steps = steps_from_cache(steps_record(out))
    assert steps["base"] and steps["stage 10-base"], steps
    assert not steps["stage 20-system"], steps  # the half-made layer was not used
    assert len(list(out.glob("*.img"))) == 1
