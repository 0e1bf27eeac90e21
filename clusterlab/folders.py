"""The folders the builder makes and may remove: the output folder and the cache.

A folder the builder creates gets a marker file; `clean` removes only folders that carry it, so
no setting can make it remove the checkout, a home, a system folder or anything it did not make.
The settings that name these folders are checked when the config is loaded.
"""

import contextlib
import fcntl
from pathlib import Path

from . import mounts
from .config import Config
from .errors import UserError, plain

MARKER = ".clusterlab-made"
LOCK = ".clusterlab-lock"
PATH_LIMIT = 300  # characters of a path shown in a message
MARKER_TEXT = "Made by the ClusterLab builder: `build.py clean` may remove this folder.\n"
SETTINGS = ("image.output_dir", "cache_dir")
# top-level system folders, never a build's output or cache
SYSTEM = {Path(p) for p in ("/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64",
                            "/media", "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/srv",
                            "/sys", "/tmp", "/usr", "/var")}
# the checkout's own folders (besides the stages' inputs: pipeline.Project.FOLDERS)
CHECKOUT_FOLDERS = ("clusterlab", "tests", "docs", "bench", ".git", ".ci", ".venv")


def output_dir(config: Config, project_root: Path) -> Path:
    return project_root / Path(config["image.output_dir"]).expanduser()


def check(config: Config, project_root: Path, project_folders: tuple[str, ...]) -> None:
    """Refuse folder settings the builder must never write into or remove."""
    places = {"image.output_dir": output_dir(config, project_root),
              "cache_dir": config.cache_dir}
    for key, place in places.items():
        problem = _problem(config[key], place.resolve(), project_root.resolve(),
                           project_folders + CHECKOUT_FOLDERS)
        if problem:
            raise UserError(f"{config.last_source([key])}: {key}: expected a folder of the "
                            f"builder's own, got {problem}")
    output, cache = (place.resolve() for place in places.values())
    if output.is_relative_to(cache) or cache.is_relative_to(output):
        raise UserError(f"{config.last_source(list(SETTINGS))}: cache_dir: expected a folder "
                        f"apart from image.output_dir ({plain(str(output))}), got "
                        f"{plain(str(cache))}")


def _problem(text: str, place: Path, checkout: Path, own: tuple[str, ...]) -> str | None:
    named = f"'{plain(text)}'"
    if place in SYSTEM or place.parent == Path("/home"):
        return f"{named}, a system folder"
    if place == Path.home().resolve():
        return f"{named}, the home folder"
    if checkout.is_relative_to(place):
        return f"{named}, the checkout or a folder holding it"
    if any(place == checkout / name or place.is_relative_to(checkout / name) for name in own):
        return f"{named}, a folder of the project's own"
    return None


def make(folder: Path) -> Path:
    """folder, created and marked as the builder's when missing; one that exists is used as
    it is, never adopted (an empty one may be the user's, or a mount point)."""
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        return folder
    (folder / MARKER).write_text(MARKER_TEXT)
    return folder


def remove(config: Config, key: str, folder: Path) -> int | None:
    """Remove the folder the setting key names, when the builder made it, and what is mounted
    in it; the bytes it held, None when it was not there."""
    if not folder.exists():
        return None
    if not made(folder) or folder.resolve() in mounts.below(folder):
        raise UserError(f"{config.last_source([key])}: {key}: expected a folder the build made "
                        f"(holding {MARKER}, not a mount point), got "
                        f"{plain(str(folder), PATH_LIMIT)}: not removed; remove it yourself if "
                        "you mean to")
    mounts.unmount_all_below(folder)  # what a killed build left, never counted nor removed
    held = size(folder)
    mounts.remove_tree(folder)
    return held


def made(folder: Path) -> bool:
    """Whether the builder made the folder (it carries the marker)."""
    return (folder / MARKER).is_file()


@contextlib.contextmanager
def in_use(cache: Path):
    """The cache held by this build or clean alone: another one would unmount this one's
    mounts and remove its half-made layers."""
    with open(make(cache) / LOCK, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{plain(str(cache), PATH_LIMIT)}: another build or clean is using "
                            "this cache; wait for it to end") from None
        yield


def size(folder: Path) -> int:
    """Bytes in the folder's files (links not followed)."""
    return sum(p.lstat().st_size for p in folder.rglob("*") if not p.is_symlink() and p.is_file())
