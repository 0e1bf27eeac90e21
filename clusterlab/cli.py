"""Command line: python3 build.py <verb> (or the `clusterlab` console script)."""

import argparse
import contextlib
import signal
import sys
from pathlib import Path

import yaml

from . import cleanup, cluster, compression, config, flash, folders, log, pipeline, qemu
from .base import image as downloaded
from .errors import BuildError, UserError
from .version import version

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "clusterlab.yaml"


class _Parser(argparse.ArgumentParser):
    """A mistake on the command line is one line, as every other (argparse prints the usage)."""

    def error(self, message: str):
        raise UserError(f"{self.prog}: {message} (--help shows how)")


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {text!r}")
    return int(text)


def parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("-c", "--config", action="append", type=Path, default=[], metavar="FILE",
                        help="config file applied over clusterlab.yaml (repeatable)")
    common.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting, e.g. --set arch=armhf (repeatable)")
    common.add_argument("-v", "--verbose", action="store_true", help="show subprocess output")

    top = _Parser(prog="build.py", description="Build ClusterLab SD-card images.")
    verbs = top.add_subparsers(dest="verb", required=True, metavar="VERB")
    verbs.add_parser("build", parents=[common], help="build the image into images/")
    show = verbs.add_parser("config", parents=[common], help="print the effective config")
    show.add_argument("--defaults", action="store_true",
                      help="print every setting with its doc and default (clusterlab.yaml)")
    verbs.add_parser("stages", parents=[common], help="list the stages in build order")
    clean = verbs.add_parser("clean", parents=[common], help="remove the built images")
    clean.add_argument("--cache", action="store_true",
                       help="also remove the build caches (layers, packages, initramfs)")
    boot = verbs.add_parser("boot", parents=[common], help="boot an image under QEMU")
    boot.add_argument("image", type=Path, help="a raw .img built by ClusterLab")
    boot.add_argument("--ssh-port", type=_port, default=2222, help="host port forwarded to SSH")
    boot.add_argument("--serial-log", type=Path, help="write the serial console here")
    boot.add_argument("--snapshot", action="store_true", help="discard writes to the image")
    card = verbs.add_parser("flash", help="write an image onto an SD card (or a file)")
    card.add_argument("image", type=Path, help=f"an {compression.image_names()}")
    card.add_argument("--device", type=Path, required=True,
                      help="the card, e.g. /dev/sdb or /dev/mmcblk0, or a file")
    card.add_argument("--hostname", help="this card's hostname (meta-data)")
    card.add_argument("--ssh-key", type=Path, metavar="FILE",
                      help="public key of a login user added to user-data")
    card.add_argument("--user", default="pi", help="name of that user (default pi)")
    card.add_argument("--user-data", type=Path, metavar="FILE",
                      help="a cloud-config file replacing the image's user-data")
    card.add_argument("--yes", action="store_true", help="do not ask before overwriting")
    card.add_argument("-v", "--verbose", action="store_true", help="show subprocess output")
    return top


def load_config(args) -> config.Config:
    """The effective config, checked as a whole: its cluster section as the cards will check
    it, a download base's image and checksum, the folders the builder writes and removes."""
    loaded = config.load([DEFAULT_CONFIG, *args.config], args.set)
    cluster.check(loaded, version(PROJECT_ROOT))
    if loaded["base.source"] == "download":
        downloaded.source(loaded)
    folders.check(loaded, PROJECT_ROOT, pipeline.Project.FOLDERS)
    return loaded


# Every signal that would end the program unwinds it like Ctrl-C, so that every mount and loop
# device is released on the way out; a second one does not cut that short. Not these: the ones
# that cannot be caught, that stop or go on, that are ignored by default, and the faults the
# program itself would cause (it cannot go on after those).
NOT_UNWINDING = {signal.SIGKILL, signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU,
                 signal.SIGCONT, signal.SIGCHLD, signal.SIGURG, signal.SIGWINCH, signal.SIGPIPE,
                 signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT,
                 signal.SIGTRAP, signal.SIGSYS}
UNWINDING = sorted(set(signal.valid_signals()) - NOT_UNWINDING)


class Interrupted(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # bytes that are no text are shown escaped
        stream.reconfigure(errors="backslashreplace")
    for signum in UNWINDING:
        signal.signal(signum, _interrupt)
    try:
        args = parser().parse_args(argv)
        log.verbose = args.verbose
        return VERBS[args.verb](args)
    except UserError as e:
        return _failed(" ".join(str(e).split()), e.exit_status)
    except BuildError as e:
        return _failed(str(e), e.exit_status)
    except OSError as e:  # what the machine refused: a full disk, a file that went away
        return _failed(f"{e.filename or 'the build'}: {e.strerror or e}", 1)
    except KeyboardInterrupt as e:
        signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
        return _failed(f"interrupted by {signal_name(signum)}; cleaned up", 128 + signum)


def _failed(message: str, status: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    for failure in cleanup.failures:
        print(f"error: clean-up failed too: {failure}", file=sys.stderr)
    return status


def _interrupt(signum, frame):
    for other in UNWINDING:
        signal.signal(other, _still_unwinding)
    raise Interrupted(signum)


def _still_unwinding(signum, frame):
    with contextlib.suppress(OSError):  # a terminal that went away (SIGHUP) takes no message
        print(f"{signal_name(signum)}: still cleaning up, it ends by itself", file=sys.stderr)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:  # a real-time signal between SIGRTMIN and SIGRTMAX
        return f"signal {signum}"


def cmd_build(args) -> int:
    pipeline.build(load_config(args), pipeline.Project(PROJECT_ROOT))
    return 0


def cmd_config(args) -> int:
    if args.defaults:
        print(config.documented_defaults(), end="")
    else:
        print(yaml.safe_dump(load_config(args).nested(), sort_keys=False), end="")
    return 0


def cmd_stages(args) -> int:
    base = load_config(args)["base.source"]
    for stage in pipeline.Project(PROJECT_ROOT).stages:
        state = stage.summary() if stage.runs_on(base) else \
            "skipped" if stage.skip else f"skipped: for the {'/'.join(stage.bases)} base"
        print(f"{stage.name:<16} {stage.description}  [{state}]")
    return 0


def cmd_boot(args) -> int:
    with qemu.booted(args.image, ssh_port=args.ssh_port, serial_log=args.serial_log,
                     snapshot=args.snapshot) as vm:
        log.info(f"booting {args.image}; SSH: ssh -p {args.ssh_port} USER@127.0.0.1; "
                 f"Ctrl-C stops the VM")
        return vm.wait()


def cmd_clean(args) -> int:
    cfg = load_config(args)
    removed = pipeline.clean(cfg, pipeline.Project(PROJECT_ROOT), cache=args.cache)
    for path, size in removed:
        log.info(f"removed {path} ({size / 2**20:.0f} MiB)")
    return 0


def cmd_flash(args) -> int:
    settings = flash.card_settings(args.hostname, args.user, args.ssh_key, args.user_data)
    result = flash.flash(args.image, args.device, settings, args.yes)
    log.info(f"wrote {result.bytes_written / 2**20:.0f} MiB of the {result.image_size / 2**20:.0f}"
             f" MiB image {'(block map) ' if result.used_bmap else ''}in {result.seconds:.0f} s,"
             f" verified; {args.device} can be removed")
    return 0


VERBS = {"build": cmd_build, "flash": cmd_flash, "config": cmd_config, "stages": cmd_stages, "boot": cmd_boot,
         "clean": cmd_clean}
