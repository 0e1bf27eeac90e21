"""Vendor images known by name (base.preset): where they are published, with the checksum file
published beside them, where they mount their boot partition, and their architecture."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Preset:
    url: str
    sha256_url: str
    boot_mount: str
    arch: str


_HYPRIOT = "https://github.com/hypriot/image-builder-rpi/releases/download/v1.12.3"
_RASPIOS = "https://downloads.raspberrypi.com"
PRESETS = {
    # the last HypriotOS (2020): Raspbian buster, armhf, boot partition on /boot
    "hypriotos-1.12.3": Preset(f"{_HYPRIOT}/hypriotos-rpi-v1.12.3.img.zip",
                               f"{_HYPRIOT}/hypriotos-rpi-v1.12.3.img.zip.sha256",
                               "/boot", "armhf"),
    "raspios-lite-arm64": Preset(
        f"{_RASPIOS}/raspios_lite_arm64/images/raspios_lite_arm64-2024-11-19/"
        "2024-11-19-raspios-bookworm-arm64-lite.img.xz",
        f"{_RASPIOS}/raspios_lite_arm64/images/raspios_lite_arm64-2024-11-19/"
        "2024-11-19-raspios-bookworm-arm64-lite.img.xz.sha256",
        "/boot/firmware", "arm64"),
    "raspios-lite-armhf": Preset(
        f"{_RASPIOS}/raspios_lite_armhf/images/raspios_lite_armhf-2024-11-19/"
        "2024-11-19-raspios-bookworm-armhf-lite.img.xz",
        f"{_RASPIOS}/raspios_lite_armhf/images/raspios_lite_armhf-2024-11-19/"
        "2024-11-19-raspios-bookworm-armhf-lite.img.xz.sha256",
        "/boot/firmware", "armhf"),
}
