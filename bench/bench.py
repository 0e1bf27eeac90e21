#!/usr/bin/env python3
"""Measure what users wait for and print the figures: cold build, warm rebuild, image sizes,
and the time from power-on to an SSH login in QEMU.

Cold means empty build caches except the downloaded .deb files (downloads are not what we
measure). Run as root: `sudo make bench`.
"""

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clusterlab import card, config, qemu  # noqa: E402


def timed_build(out: Path) -> float:
    start = time.monotonic()
    subprocess.run([sys.executable, str(ROOT / "build.py"), "build",
                    "--set", f"image.output_dir={out}"], check=True, cwd=ROOT)
    return time.monotonic() - start


def boot_to_login(image: Path, tmp: Path) -> float:
    key = tmp / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    copy = tmp / "card.img"
    subprocess.run(["cp", "--sparse=always", str(image), str(copy)], check=True)
    card.personalize(copy, user="bench", ssh_key=(tmp / "key.pub").read_text())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with qemu.booted(copy, ssh_port=port, serial_log=tmp / "serial.log") as vm:
        return vm.wait_for_ssh("bench", key, timeout=1200)


def main() -> None:
    cache = config.load([ROOT / "clusterlab.yaml"], []).cache_dir
    with tempfile.TemporaryDirectory(prefix="clusterlab-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for folder in ("base", "work"):
            shutil.rmtree(cache / folder, ignore_errors=True)
        cold = timed_build(tmp / "cold")
        warm = timed_build(tmp / "warm")
        manifest = json.loads(next((tmp / "warm").glob("*.manifest.json")).read_text())
        raw = tmp / "warm" / manifest["image"]["file"]
        compressed = tmp / "warm" / manifest["compressed"]["file"]
        allocated = raw.stat().st_blocks * 512
        login = boot_to_login(raw, tmp)
    print("\nClusterLab benchmark")
    print(f"  cold build (caches empty but .debs):  {cold / 60:6.1f} min")
    print(f"  warm rebuild (cached Debian base):     {warm / 60:6.1f} min")
    print(f"  raw image: {raw.stat().st_size / 2**20:.0f} MiB ({allocated / 2**20:.0f} MiB allocated)")
    print(f"  compressed ({compressed.suffix[1:]}): {compressed.stat().st_size / 2**20:.0f} MiB")
    print(f"  QEMU power-on to SSH login:            {login:6.0f} s")


if __name__ == "__main__":
    main()
