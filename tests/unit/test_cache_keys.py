"""A stage's cache key changes exactly when one of its inputs changes."""

import shutil
from pathlib import Path

import pytest

from clusterlab import config, pipeline
from clusterlab.render import Renderer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path):
    for folder in pipeline.Project.FOLDERS:
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return pipeline.Project(tmp_path)


def keys(project: pipeline.Project, overrides=()) -> dict[str, str]:
    """Each stage's chained key, as the build computes it."""
    cfg = config.load([], list(overrides))
    renderer = Renderer(project.root / "templates", pipeline.template_variables(cfg, "1.0"))
    return {stage.name: key
            for stage, key in pipeline.stage_keys("base", project.stages, renderer, project)}


def changed(before: dict, after: dict) -> list[str]:
    return [name for name in before if before[name] != after[name]]


def test_same_inputs_same_keys(project):
    assert keys(project) == keys(project)


def test_config_value_used_by_a_template_rebuilds_that_stage_and_later(project):
    assert changed(keys(project), keys(project, ["locale=de_DE.UTF-8"])) == [
        "20-system", "30-docker", "40-cluster", "50-demos", "90-first-boot"]


def test_first_boot_settings_rebuild_only_the_last_stage(project):
    assert changed(keys(project), keys(project, ["hostname=node9"])) == ["90-first-boot"]
    users = "users=[{name: pi, ssh_keys: ['ssh-ed25519 AAAAC3Nza me@x']}]"
    assert changed(keys(project), keys(project, [users])) == ["90-first-boot"]
    # the cluster's settings are a file on the boot partition, not part of the agent's stage
    assert changed(keys(project), keys(project, ["cluster.vlan_id=300"])) == ["90-first-boot"]


def test_config_value_no_template_uses_changes_no_stage(project):
    assert changed(keys(project), keys(project, ["image.compression=zstd"])) == []


def test_arch_changes_the_kernel_package_of_the_first_stage(project):
    assert changed(keys(project), keys(project, ["arch=armhf"]))[0] == "10-base"


def test_template_edit(project):
    before = keys(project)
    template = project.root / "templates/etc/fstab.j2"
    template.write_text(template.read_text() + "# edited\n")
    assert changed(before, keys(project)) == ["10-base", "20-system", "30-docker", "40-cluster", "50-demos", "90-first-boot"]


def test_stage_file_edit(project):
    before = keys(project)
    stage_file = project.root / "stages/30-docker/stage.yaml"
    stage_file.write_text(stage_file.read_text().replace("  - docker-cli\n",
                                                         "  - docker-cli\n  - htop\n"))
    assert changed(before, keys(project)) == ["30-docker", "40-cluster", "50-demos", "90-first-boot"]


def test_script_edit_and_mode(project):
    before = keys(project)
    script = project.root / "stages/20-system/configure.sh"
    script.write_text(script.read_text() + "true\n")
    after_edit = keys(project)
    assert changed(before, after_edit) == ["20-system", "30-docker", "40-cluster", "50-demos", "90-first-boot"]
    script.chmod(0o644)
    assert changed(after_edit, keys(project)) == ["20-system", "30-docker", "40-cluster", "50-demos", "90-first-boot"]


def test_overlay_file_edit_and_new_file(project):
    before = keys(project)
    overlay = project.root / "overlay-files/20-system/etc/ssh/sshd_config.d/10-clusterlab.conf"
    overlay.write_text(overlay.read_text() + "MaxAuthTries 3\n")
    after_edit = keys(project)
    assert changed(before, after_edit) == ["20-system", "30-docker", "40-cluster", "50-demos", "90-first-boot"]
    (overlay.parent / "20-more.conf").write_text("X11Forwarding no\n")
    assert changed(after_edit, keys(project)) == ["20-system", "30-docker", "40-cluster", "50-demos", "90-first-boot"]


def test_node_package_edit_rebuilds_the_stage_that_installs_it_and_bytecode_nothing(project):
    before = keys(project)
    module = project.root / "node/clusterlab_demo/cli.py"
    (module.parent / "__pycache__").mkdir()
    (module.parent / "__pycache__/cli.cpython-311.pyc").write_bytes(b"host bytecode")
    assert changed(before, keys(project)) == []
    module.write_text(module.read_text() + "# edited\n")
    assert changed(before, keys(project)) == ["50-demos", "90-first-boot"]


def test_skipping_a_stage_changes_only_later_keys(project):
    before = keys(project)
    stage_file = project.root / "stages/20-system/stage.yaml"
    stage_file.write_text(stage_file.read_text() + "skip: true\n")
    after = keys(project)
    assert "20-system" not in after and after["10-base"] == before["10-base"]
    assert after["30-docker"] != before["30-docker"]
