#!/usr/bin/env python3
"""Measure what users wait for and print the figures.

- cold build: empty build caches except the downloaded .deb files (downloads are not measured);
- rebuild after editing one template (the card's meta-data), raw image time and compression apart;
- rebuild with nothing changed, and whether the output stayed byte-identical;
- assembly determinism: outputs deleted, image assembled again from the cached tree: same sha256?
- reproducibility: a second cold build with its own empty cache: the same sha256 as the first?
- image sizes, the size and time of each candidate compression setting, the time from
  power-on to an SSH login in QEMU, how long the first boot takes to load the baked container
  images, and the size each image adds;
- flashing the .img.xz onto a card (here a file): bytes written and time, with and without the
  block map.

Run as root: `sudo make bench`. It uses the project's own build command and cache.
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

from clusterlab import card, config, export, mounts, qemu  # noqa: E402

EDITED_TEMPLATE = ROOT / "templates/boot/meta-data.j2"


def timed_build(out: Path, compression: str = "xz",
                settings: tuple[str, ...] = ()) -> tuple[float, dict[str, float]]:
    """Wall time of one build, and the time of each step by its name ("compress", "stage
    20-system", …), as the build recorded it (its .steps.json beside the manifest)."""
    start = time.monotonic()
    result = subprocess.run([sys.executable, str(ROOT / "build.py"), "build",
                             "--set", f"image.output_dir={out}",
                             "--set", f"image.compression={compression}",
                             *[arg for setting in settings for arg in ("--set", setting)]],
                            cwd=ROOT, text=True, stderr=subprocess.PIPE)
    elapsed = time.monotonic() - start
    if result.returncode != 0:
        sys.exit(f"build failed:\n{result.stderr[-3000:]}")
    record, = out.glob("*.steps.json")  # each folder holds the builds of one image name
    steps = {s["name"]: s["seconds"] for s in json.loads(record.read_text())["steps"]}
    return elapsed, steps


def image_digest(out: Path) -> str:
    manifest = json.loads(next(out.glob("*.manifest.json")).read_text())
    return export.sha256_of(out / manifest["image"]["file"])


def boot_to_login(image: Path, tmp: Path) -> tuple[float, float]:
    """Seconds from power-on to an SSH login, and the first-boot load of the baked images."""
    key = tmp / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    copy = tmp / "card.img"
    subprocess.run(["cp", "--sparse=always", str(image), str(copy)], check=True)
    card.personalize(copy, user="bench", ssh_key=(tmp / "key.pub").read_text())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with qemu.booted(copy, ssh_port=port, serial_log=tmp / "serial.log") as vm:
        login = vm.wait_for_ssh("bench", key, timeout=1200)
        times = vm.ssh("bench", key, "systemctl is-system-running --wait >/dev/null; systemctl "
                       "show -p ExecMainStartTimestampMonotonic -p ExecMainExitTimestampMonotonic"
                       " --value clusterlab-images.service", timeout=1200).stdout.split()
        start, end = (int(t) for t in times)
        return login, (end - start) / 1e6


def flash_figures(xz: Path, tmp: Path) -> list[str]:
    """`build.py flash` of the compressed image into a file, with its .bmap and without."""
    bare = tmp / "no-bmap"
    bare.mkdir()
    (bare / xz.name).hardlink_to(xz)
    lines = []
    for label, image in (("with the block map", xz), ("without a block map", bare / xz.name)):
        card_file = tmp / "card.img"
        card_file.unlink(missing_ok=True)
        start = time.monotonic()
        result = subprocess.run([sys.executable, str(ROOT / "build.py"), "flash", str(image),
                                 "--device", str(card_file)], text=True, stderr=subprocess.PIPE)
        elapsed = time.monotonic() - start
        if result.returncode != 0:
            sys.exit(f"flash failed:\n{result.stderr[-3000:]}")
        written = card_file.stat().st_blocks * 512 // 2**20  # the file started empty, sparse
        lines.append(f"flash {label}: {written:>6} MiB written and verified in {elapsed:.0f} s")
    return lines


# what image.compression could be: xz and zstd at levels from quick to small
COMPRESSION_CANDIDATES = (("xz", "-3"), ("xz", "-6"), ("xz", "-9"), ("zstd", "-10"),
                          ("zstd", "-19", "--long=27"))


def compression_figures(raw: Path, tmp: Path) -> list[str]:
    """Size and time of the raw image compressed with each candidate, on all cores."""
    lines = []
    for tool, *options in COMPRESSION_CANDIDATES:
        compressed = tmp / "candidate"
        start = time.monotonic()
        with open(raw, "rb") as source, open(compressed, "wb") as out:
            subprocess.run([tool, "-T0", *options, "-c"], stdin=source, stdout=out, check=True)
        elapsed = time.monotonic() - start
        size = compressed.stat().st_size / 2**20
        lines.append(f"  {' '.join([tool, *options]):24}        {size:5.0f} MiB in {elapsed:4.0f} s")
        compressed.unlink()
    return lines


def second_cold_build(cache: Path, tmp: Path, first_digest: str) -> str:
    """Build again from nothing but the downloaded .debs, in a cache of its own."""
    own_cache = tmp / "cache"
    own_cache.mkdir()
    subprocess.run(["cp", "-al", str(cache / "apt-archives"), str(own_cache)], check=True)
    out = tmp / "second"
    elapsed, _ = timed_build(out, "zstd", (f"cache_dir={own_cache}",))
    same = image_digest(out) == first_digest
    return (f"second cold build ({elapsed / 60:.1f} min):    "
            f"{'byte-identical image (same sha256)' if same else 'DIFFERENT sha256'}")


def without_compression(elapsed: float, steps: dict[str, float]) -> float:
    return elapsed - steps.get("compress", 0)


def main() -> None:
    cache = config.load([ROOT / "clusterlab.yaml"], []).cache_dir
    figures = []
    with tempfile.TemporaryDirectory(prefix="clusterlab-bench-") as tmp_name:
        tmp, out = Path(tmp_name), Path(tmp_name) / "images"
        for folder in ("layers", "initramfs", "containers"):
            if (cache / folder).exists():  # nothing removed through a killed build's mounts
                mounts.remove_tree(cache / folder)
        cold, steps = timed_build(out)
        figures.append(f"cold build:                      {cold / 60:5.1f} min "
                       f"(of which compression {steps.get('compress', 0):.0f} s)")
        xz_image = next(out.glob("*.img.xz"))
        xz_size = xz_image.stat().st_size
        figures += flash_figures(xz_image, tmp)
        cold_digest = image_digest(out)
        # the rebuilds compress with zstd: quicker, and compression is reported apart anyway
        original = EDITED_TEMPLATE.read_text()
        try:
            EDITED_TEMPLATE.write_text(original + f"# edited {time.time()}\n")
            # into a folder of its own: the edit makes another version, whose files would stay
            edit, steps = timed_build(tmp / "edited", "zstd")
        finally:
            EDITED_TEMPLATE.write_text(original)
        figures.append(f"rebuild after a template edit:   {without_compression(edit, steps):5.0f} s "
                       f"to the raw image, + {steps.get('compress', 0):.0f} s zstd")
        timed_build(out, "zstd")  # back to the unedited template
        before = image_digest(out)
        unchanged, _ = timed_build(out, "zstd")
        figures.append(f"rebuild with nothing changed:    {unchanged:5.0f} s, output "
                       f"{'identical' if image_digest(out) == before else 'DIFFERENT'}")
        shutil.rmtree(out)
        timed_build(out, "zstd")
        figures.append(f"assembled again from the cache:  "
                       f"{'same sha256' if image_digest(out) == before else 'DIFFERENT sha256'}")
        manifest = json.loads(next(out.glob("*.manifest.json")).read_text())
        raw = out / manifest["image"]["file"]
        zstd_size = (out / manifest["compressed"]["file"]).stat().st_size
        figures.append(f"raw image:                       {raw.stat().st_size / 2**20:5.0f} MiB "
                       f"({raw.stat().st_blocks * 512 / 2**20:.0f} MiB of data)")
        figures.append(f"compressed:                      {xz_size / 2**20:5.0f} MiB xz, "
                       f"{zstd_size / 2**20:.0f} MiB zstd; the candidates:")
        figures += compression_figures(raw, tmp)
        login, image_load = boot_to_login(raw, tmp)
        figures.append(f"QEMU power-on to SSH login:      {login:5.0f} s")
        figures.append(f"first-boot load of the images:   {image_load:5.0f} s (in QEMU)")
        figures += [f"  container image {entry['name']:8}        {entry['bytes'] / 2**20:5.0f} MiB "
                    f"in the root file system" for entry in manifest["containers"]]
        figures.append(second_cold_build(cache, tmp, cold_digest))
    print("\nClusterLab benchmark (this machine: "
          f"{subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores)")
    for line in figures:
        print("  " + line)


if __name__ == "__main__":
    main()
