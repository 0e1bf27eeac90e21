"""Every compression format the builder writes or reads, in one table."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Format:
    name: str  # the value of the setting image.compression
    suffix: str  # of the file name
    decompress: tuple[str, ...]  # file name appended; writes to stdout
    compress: tuple[str, ...] = ()  # stdin to stdout; empty: read only
    # a check that the whole file is there and sound, before anything is written (xz reads only
    # its index; the others decompress to nowhere), the file appended
    check: tuple[str, ...] = ()


FORMATS = {f.name: f for f in (
    # xz -6 (xz's default), measured on the default image (make bench prints the candidates):
    # 291 MiB against 316 MiB with -3 and 276 MiB with -9, for about 60 % more time than -3
    Format("xz", ".xz", ("xz", "-dc", "-T0"), ("xz", "-T0", "-6", "-c"),
           ("xz", "--list", "--robot")),
    Format("zstd", ".zst", ("zstd", "-dc"), ("zstd", "-T0", "-10", "-c", "-q"),
           ("zstd", "--test", "-q")),
    Format("gzip", ".gz", ("gzip", "-dc"), check=("gzip", "--test")),
)}
WRITTEN = [f.name for f in FORMATS.values() if f.compress]  # what image.compression may be
BY_SUFFIX = {f.suffix: f for f in FORMATS.values()}


def image_names(raw: str = ".img") -> str:
    """The image file names accepted, for messages: '.img, .img.xz, .img.zst or .img.gz'."""
    names = [raw] + [raw + suffix for suffix in BY_SUFFIX]
    return ", ".join(names[:-1]) + " or " + names[-1]
