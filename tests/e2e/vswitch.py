"""A virtual Ethernet switch for several QEMU nodes: vde_switch, one vde_plug per port.

This QEMU has no built-in VDE backend, so each node's NIC is a unix datagram link (`-netdev
dgram`) to a vde_plug that connects it to the switch (libvdeplug's ptp module: it creates the
socket PATH and talks to the peer bound at PATH+). The switch runs as a hub (`-x`): like the
unmanaged switches people put their boards on, it forwards 802.1Q-tagged frames untouched.
"""

import contextlib
import subprocess
import time
from pathlib import Path

from clusterlab import run


class VirtualSwitch:
    def __init__(self, directory: Path):
        self.directory = directory
        self.processes: list[subprocess.Popen] = []

    def start(self) -> None:
        control = self.directory / "switch"
        # its console reads stdin and ends the switch at end of file: give it a pipe kept open
        self.processes.append(subprocess.Popen(["vde_switch", "-x", "-s", str(control)],
                                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL))
        _wait_for(control / "ctl", self.processes[-1])

    def port(self, number: int) -> tuple[Path, Path]:
        """A new port: (the path QEMU binds, the path it sends to)."""
        plug = self.directory / f"port{number}"
        self.processes.append(subprocess.Popen(
            ["vde_plug", f"vde://{self.directory / 'switch'}", f"ptp://{plug}"],
            stdin=subprocess.DEVNULL))
        _wait_for(plug, self.processes[-1])
        return Path(f"{plug}+"), plug

    def stop(self) -> None:
        for process in reversed(self.processes):
            run.terminate(process)


@contextlib.contextmanager
def running(directory: Path):
    switch = VirtualSwitch(directory)
    try:
        switch.start()
        yield switch
    finally:
        switch.stop()


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with status {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} did not appear within {timeout:.0f} s")
        time.sleep(0.1)
