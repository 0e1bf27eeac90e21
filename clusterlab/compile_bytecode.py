#!/usr/bin/python3
"""Run by the image's own python3 inside the tree at the end of every stage: byte-code for every
Python source on its path that lacks valid byte-code, so that no program on a node compiles its
modules at start-up (minutes of a first boot under emulation, seconds on a board).

The byte-code is hash-checked (PEP 552): valid by the source's content, not its time, so it stays
valid when the image's file times are set to SOURCE_DATE_EPOCH. The bytes an interpreter writes
for a source depend on what it compiled before (marshal marks objects referenced more than once),
so the sources are compiled in name order, in fixed-size batches, each batch by an interpreter of
its own started with a fixed PYTHONHASHSEED (set by the caller): the same sources give the same
bytes in every build, however many batches run at once. Sources whose byte-code a lower layer
already made are left alone, so a stage's layer holds only its own.

Kept to what every python3 a base image may bring understands (3.7 and later).
"""

import concurrent.futures
import importlib.util
import os
import py_compile
import subprocess
import sys

CHECKED_HASH = 0b11  # the pyc header's flags: hash-based, checked against the source
BATCH = 50  # sources per interpreter: its start-up is paid once per batch


def python_folders():
    """The interpreter's own library folders and its package folders, without duplicates."""
    seen = []
    for entry in sys.path:
        if entry.startswith("/usr/") and os.path.isdir(entry) and entry not in seen:
            seen.append(entry)
    return seen


def sources(top):
    for folder, subfolders, files in os.walk(top):
        subfolders.sort()
        # a package folder inside another path entry is walked from that entry only once
        subfolders[:] = [s for s in subfolders if os.path.join(folder, s) not in sys.path]
        for name in sorted(files):
            if name.endswith(".py"):
                yield os.path.join(folder, name)


def has_valid_bytecode(source):
    try:
        with open(importlib.util.cache_from_source(source), "rb") as pyc:
            header = pyc.read(16)
        with open(source, "rb") as src:
            data = src.read()
    except OSError:
        return False
    return (header[:4] == importlib.util.MAGIC_NUMBER
            and int.from_bytes(header[4:8], "little") == CHECKED_HASH
            and header[8:16] == importlib.util.source_hash(data))


def compile_each(sources_to_compile):
    """Compile in the order given; the number that cannot be compiled (files not meant to be
    imported: templates, other interpreters' files)."""
    failed = 0
    for source in sources_to_compile:
        try:
            py_compile.compile(source, doraise=True,
                               invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
        except (py_compile.PyCompileError, OSError, ValueError):
            failed += 1
    return failed


def compile_batch(batch):
    result = subprocess.run([sys.executable, __file__, "--batch"], input="\0".join(batch),
                            stdout=subprocess.PIPE, universal_newlines=True, check=True)
    return int(result.stdout)


def main():
    if sys.argv[1:] == ["--batch"]:
        print(compile_each(sys.stdin.read().split("\0")))
        return
    todo = [source for top in python_folders() for source in sources(top)
            if not has_valid_bytecode(source)]
    batches = [todo[i:i + BATCH] for i in range(0, len(todo), BATCH)]
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        failed = sum(pool.map(compile_batch, batches))
    print("byte-code: {} files compiled, {} not compilable".format(len(todo) - failed, failed))


if __name__ == "__main__":
    main()
