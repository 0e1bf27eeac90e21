"""Every fact that differs between architectures, in one table: the config's `arch` values are
its boards' entries; amd64 is there for container images made for the build host (tests)."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Arch:
    name: str  # Debian's name, the value of the setting `arch`
    boards: str  # the Raspberry Pis that run it; empty: no image is built for it
    oci_architecture: str  # the OCI platform of its container images
    oci_variant: str | None
    qemu_user: str = ""  # the binfmt_misc entry that runs its programs on the build host
    # the CPU qemu-user emulates, when its default does not suit (see chroot.prepare_emulation)
    qemu_user_cpu: str | None = None
    qemu_system: tuple[str, ...] = ()  # qemu-system command and board for `build.py boot`
    kernel_package: str = ""  # Debian's kernel for its boards
    consoles: str = ""  # the serial and screen consoles on the kernel command line
    arm_64bit: bool = False  # what config.txt's arm_64bit says: the firmware boots a 64-bit kernel


ARCHES = {a.name: a for a in (
    Arch("arm64", "Raspberry Pi 3/4/5", "arm64", "v8", "qemu-aarch64",
         # qemu-aarch64's default "max" CPU emulates pointer authentication (QARMA) in
         # software, and Debian's arm64 binaries use it everywhere: a Cortex-A72 (the Pi 4's
         # core) has none and runs them about 20 times faster under emulation
         qemu_user_cpu="cortex-a72",
         qemu_system=("qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72"),
         kernel_package="linux-image-arm64", consoles="ttyS1,115200 tty0", arm_64bit=True),
    Arch("armhf", "Raspberry Pi 2", "arm", "v7", "qemu-arm",
         qemu_system=("qemu-system-arm", "-M", "virt,highmem=off", "-cpu", "cortex-a15"),
         kernel_package="linux-image-armmp", consoles="ttyAMA0,115200 tty0"),
    Arch("amd64", "", "amd64", None),
)}
BOARD_ARCHES = [a.name for a in ARCHES.values() if a.boards]


def for_firmware(arm_64bit: bool) -> Arch:
    """The architecture of an image whose config.txt says arm_64bit (or not)."""
    return next(a for a in ARCHES.values() if a.boards and a.arm_64bit == arm_64bit)
