"""Boot a ClusterLab image under QEMU (TCG), with the kernel and initrd from its own FAT partition.

`build.py boot` and the tests use this same code. The serial console is the emulated board's
PL011 UART (ttyAMA0); SSH is forwarded from a port on 127.0.0.1.
"""

import contextlib
import dataclasses
import re
import shlex
import subprocess
import tempfile
import time
from pathlib import Path

from . import disk, log, run
from .arch import ARCHES, for_firmware
from .errors import BuildError, UserError

SSH_CONNECT_FAILURE = re.compile(r"kex_exchange_identification|Connection (refused|reset|closed)")


@dataclasses.dataclass(frozen=True)
class BootFiles:
    arch: str
    kernel: str
    initrd: str
    cmdline: str


def boot_files(image: Path) -> BootFiles:
    """What the Raspberry Pi firmware would boot, read from config.txt and cmdline.txt."""
    boot = disk.partitions_of_image(image, str(image))[0]
    try:
        config_txt, cmdline = (disk.fat_read(image, boot, name).decode(errors="replace")
                               for name in ("config.txt", "cmdline.txt"))
    except BuildError:
        raise UserError(f"{image}: expected a boot partition holding config.txt and cmdline.txt "
                        "(as the Raspberry Pi firmware boots it), got one without") from None
    settings = {}
    for line in config_txt.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.replace("=", " ", 1).partition(" ")
            settings[key] = value.strip()
    if not settings.get("kernel") or not settings.get("initramfs"):
        raise UserError(f"{image}: expected a config.txt naming a kernel and an initramfs, got "
                        "one without")
    arch = for_firmware(settings.get("arm_64bit") == "1").name
    cmdline = cmdline.strip()
    return BootFiles(arch, settings["kernel"], settings["initramfs"].split()[0], cmdline)


class VM:
    def __init__(self, proc: subprocess.Popen, ssh_port: int):
        self.proc = proc
        self.ssh_port = ssh_port

    def wait(self) -> int:
        return self.proc.wait()

    def ssh_argv(self, user: str, key: Path, command: str) -> list[str]:
        return ["ssh", "-p", str(self.ssh_port), "-i", str(key), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", f"{user}@127.0.0.1", command]

    def ssh(self, user: str, key: Path, command: str, timeout: float = 120,
            attempts: int = 5) -> subprocess.CompletedProcess:
        """Run command over SSH; a connection refused or reset (sshd restarting) is retried."""
        for _ in range(attempts):
            result = subprocess.run(self.ssh_argv(user, key, command), capture_output=True,
                                    text=True, timeout=timeout)
            if result.returncode != 255 or not SSH_CONNECT_FAILURE.search(result.stderr):
                break
            time.sleep(5)
        return result

    def wait_for_ssh(self, user: str, key: Path, timeout: float) -> float:
        """Seconds until SSH answers; raises if QEMU exits or time runs out."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.proc.poll() is not None:
                raise BuildError(f"QEMU exited with status {self.proc.returncode} during boot")
            try:
                if self.ssh(user, key, "true", timeout=30, attempts=1).returncode == 0:
                    return time.monotonic() - start
            except subprocess.TimeoutExpired:
                pass
            time.sleep(3)
        raise BuildError(f"no SSH login on port {self.ssh_port} within {timeout:.0f}s")


@contextlib.contextmanager
def booted(image: Path, ssh_port: int, serial_log: Path | None = None, snapshot: bool = False,
           memory_mib: int = 2048, cpus: int = 2, cluster_link: tuple[Path, Path] | None = None,
           mac: str = "52:54:00:12:34:56"):
    """A running VM of the image; stopped on every exit path.

    cluster_link (the path to bind, the path to send to) adds a first NIC, eth0, on a unix
    datagram link to a virtual switch; SSH then comes through the second one. Nodes that share a
    switch need MAC addresses of their own (mac)."""
    if not image.is_file() or image.suffix != ".img":
        raise UserError(f"{image}: expected a raw .img file (decompress .img.xz first: "
                        f"xz -dk {image})")
    files = boot_files(image)
    boot = disk.partitions(image)[0]
    with tempfile.TemporaryDirectory(prefix="clusterlab-boot-") as tmp:
        kernel, initrd = Path(tmp) / "kernel", Path(tmp) / "initrd"
        for name, copy in ((files.kernel, kernel), (files.initrd, initrd)):
            try:
                copy.write_bytes(disk.fat_read(image, boot, name))
            except BuildError:
                raise UserError(f"{image}: expected the {name} that config.txt names on the "
                                "boot partition, got none") from None
        drive = f"file={image},format=raw,if=virtio" + (",snapshot=on" if snapshot else "")
        serial = f"file:{serial_log}" if serial_log else "mon:stdio"
        argv = [*ARCHES[files.arch].qemu_system, "-smp", str(cpus), "-m", str(memory_mib),
                "-kernel", str(kernel), "-initrd", str(initrd),
                "-append", f"{files.cmdline} console=ttyAMA0",
                "-drive", drive, "-display", "none", "-serial", serial,
                *_cluster_nic(cluster_link, mac),
                "-netdev", f"user,id=mgmt,net=10.9.9.0/24,restrict=on,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
                "-device", "virtio-net-pci,netdev=mgmt,romfile="]
        if serial_log:
            argv += ["-monitor", "none"]
        log.detail(f"$ {shlex.join(argv)}")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL if serial_log else None)
        try:
            yield VM(proc, ssh_port)
        finally:
            run.terminate(proc)


def _cluster_nic(link: tuple[Path, Path] | None, mac: str) -> list[str]:
    if link is None:
        return []
    local, remote = link
    return ["-netdev", f"dgram,id=cluster,local.type=unix,local.path={local},"
                       f"remote.type=unix,remote.path={remote}",
            "-device", f"virtio-net-pci,netdev=cluster,mac={mac},romfile="]
