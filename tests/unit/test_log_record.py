"""Every step is recorded for machines (name, title, depth, seconds, result) while the human log
stays as it was; the build writes the record beside its manifest."""

import json
import re
import threading

import pytest

from clusterlab import config, folders, log, pipeline
from clusterlab.errors import BuildError


@pytest.fixture
def recorded():
    """The steps recorded from now on (the record is the process's: earlier tests' steps stay)."""
    before = len(log.recorded_steps())
    return lambda: log.recorded_steps()[before:]


def lines(err: str) -> list[str]:
    """The log's lines, durations as 0.0s (on a busy machine a step of nothing can take 0.1s)."""
    return re.sub(r"\d+\.\ds\)", "0.0s)", err).splitlines()


def test_nested_steps_are_recorded_in_the_order_they_started(recorded, capsys):
    with log.step("outer work", name="outer"):
        with log.step("inner work", name="inner"):
            log.info("inside")
        with log.step("untitled"):  # no name: its title
            pass
    steps = recorded()
    assert [(s["name"], s["title"], s["depth"], s["result"], s["background"]) for s in steps] == [
        ("outer", "outer work", 0, "done", False),
        ("inner", "inner work", 1, "done", False),
        ("untitled", "untitled", 1, "done", False)]
    for s in steps:
        assert isinstance(s["seconds"], float) and s["seconds"] == round(s["seconds"], 1)
    assert lines(capsys.readouterr().err) == [
        "‣ outer work", "  ‣ inner work", "    inside", "  ✓ inner work (0.0s)",
        "  ‣ untitled", "  ✓ untitled (0.0s)", "✓ outer work (0.0s)"]


def test_seconds_are_the_steps_duration(recorded):
    with log.step("wait", name="wait"):
        threading.Event().wait(0.25)
    assert 0.2 <= recorded()[0]["seconds"] <= 2


def test_a_failed_step_and_the_steps_around_it(recorded, capsys):
    with pytest.raises(ValueError, match="broken"):
        with log.step("layer", name="layer"):
            with log.step("fine", name="fine"):
                pass
            log.built()  # a failure later wins over what the step said it did
            with log.step("breaks", name="breaks"):
                raise ValueError("broken")
    assert [(s["name"], s["depth"], s["result"]) for s in recorded()] == [
        ("layer", 0, "failed"), ("fine", 1, "done"), ("breaks", 1, "failed")]
    assert lines(capsys.readouterr().err) == [
        "‣ layer", "  ‣ fine", "  ✓ fine (0.0s)", "  ‣ breaks", "  ✗ breaks (failed after 0.0s)",
        "✗ layer (failed after 0.0s)"]


def test_interrupted_steps_are_failed(recorded):
    with pytest.raises(KeyboardInterrupt):
        with log.step("stopped", name="stopped"):
            raise KeyboardInterrupt
    assert [s["result"] for s in recorded()] == ["failed"]


def test_cached_and_built_steps(recorded, capsys):
    with log.step("base: Debian trixie arm64", name="base"):
        with log.step("a look around", name="look"):
            pass
        log.from_cache()  # marks the innermost running step: base, not the one that ended
    with log.step("stage 20-system: settings", name="stage 20-system"):
        with log.step("packages", name="packages"):
            pass
        log.built()
    assert [(s["name"], s["result"]) for s in recorded()] == [
        ("base", "cached"), ("look", "done"), ("stage 20-system", "built"), ("packages", "done")]
    # the human line is today's
    assert lines(capsys.readouterr().err)[:5] == [
        "‣ base: Debian trixie arm64", "  ‣ a look around", "  ✓ a look around (0.0s)",
        "  unchanged: taken from the cache", "✓ base: Debian trixie arm64 (0.0s)"]


def test_from_cache_outside_any_step_only_says_so(recorded, capsys):
    log.from_cache()
    log.built()
    assert recorded() == []
    assert capsys.readouterr().err == "unchanged: taken from the cache\n"


def test_running_steps_are_not_in_the_record_yet(recorded):
    with log.step("long", name="long"):
        with log.step("short", name="short"):
            pass
        assert [s["name"] for s in recorded()] == ["short"]
    assert [s["name"] for s in recorded()] == ["long", "short"]


def test_steps_of_background_threads(recorded, capsys):
    def bake(n):
        for i in range(50):
            with log.step(f"image {n}.{i}", name=f"image {n}.{i}"):
                with log.step(f"layer of {n}.{i}", name=f"layer {n}.{i}"):
                    pass
                if i % 2:
                    log.from_cache()
                else:
                    log.built()
        return n

    with log.step("stages", name="stages"):
        threads = [log.Background(lambda n=n: bake(n)) for n in range(4)]
        with log.step("a stage", name="a stage"):
            pass
    with log.step("container images", name="containers"):
        assert [thread.result() for thread in threads] == [0, 1, 2, 3]
    steps = recorded()
    assert len(steps) == 3 + 4 * 100
    by_name = {s["name"]: s for s in steps}
    assert len(by_name) == len(steps)
    for n in range(4):
        for i in range(50):
            image, layer = by_name[f"image {n}.{i}"], by_name[f"layer {n}.{i}"]
            # depth within the thread; marked as run in the background
            assert (image["depth"], image["background"]) == (0, True)
            assert (layer["depth"], layer["background"], layer["result"]) == (1, True, "done")
            assert image["result"] == ("cached" if i % 2 else "built")
        # in the order they started: within a thread, each image before its layer and the next
        own = [s["name"] for s in steps if s["name"].startswith((f"image {n}.", f"layer {n}."))]
        assert own == [name for i in range(50) for name in (f"image {n}.{i}", f"layer {n}.{i}")]
    assert [(s["depth"], s["background"]) for s in steps if not s["background"]] == [
        (0, False), (1, False), (0, False)]
    # the human log: each thread's lines in one piece under the step that took its result
    err = lines(capsys.readouterr().err)
    start = err.index("‣ container images")
    assert err[start + 1:start + 4] == ["  ‣ image 0.0", "    ‣ layer of 0.0",
                                        "    ✓ layer of 0.0 (0.0s)"]
    assert "    unchanged: taken from the cache" in err


def test_the_build_writes_the_record_beside_the_manifest(recorded, tmp_path):
    cfg = config.load([], [])
    outputs = pipeline.output_paths(cfg, pipeline.Project(tmp_path), "clusterlab-1.0-arm64")
    path = pipeline.steps_path(outputs)
    assert path == outputs.manifest.parent / "clusterlab-1.0-arm64.steps.json"
    assert path not in pipeline.dataclasses.astuple(outputs)  # no output: see _up_to_date
    with log.step("strip tree", name="strip"):
        log.from_cache()
    pipeline._write_steps(outputs, "clusterlab-1.0-arm64", "unchanged", 12.345)
    record = json.loads(path.read_text())
    assert {k: record[k] for k in ("name", "outcome", "seconds")} == {
        "name": "clusterlab-1.0-arm64", "outcome": "unchanged", "seconds": 12.3}
    assert record["steps"][-1] == {**recorded()[-1], "name": "strip", "result": "cached"}
    # nothing left half-written; the folder is marked as the builder's (clean may remove it)
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, folders.MARKER])


def test_a_record_that_cannot_be_written(tmp_path, capsys):
    cfg = config.load([], [])
    (tmp_path / cfg["image.output_dir"]).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / cfg["image.output_dir"]).write_text("a file where the output folder goes")
    outputs = pipeline.output_paths(cfg, pipeline.Project(tmp_path), "clusterlab-1.0-arm64")
    # a failed build: only a warning, its own error is the one that is raised
    pipeline._write_steps(outputs, "clusterlab-1.0-arm64", "failed", 1.0)
    assert "WARNING: could not write the build's step record" in capsys.readouterr().err
    with pytest.raises(BuildError, match="could not write the build's step record"):
        pipeline._write_steps(outputs, "clusterlab-1.0-arm64", "built", 1.0)
