import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from clusterlab import config, pipeline, tree
from clusterlab.errors import UserError
from clusterlab.render import Renderer
from clusterlab_node import settings

ROOT = Path(__file__).resolve().parents[2]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq7 me@laptop"


@pytest.fixture
def project(tmp_path):
    """A copy of the project's stages, templates and overlays that a test may change."""
    for folder in pipeline.Project.FOLDERS:
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path


def load(project: Path):
    return pipeline.Project(project).stages


def test_default_stages_in_order():
    names = [s.name for s in pipeline.Project(ROOT).stages]
    assert names == sorted(names)
    assert names == ["10-base", "20-system", "30-docker", "40-cluster", "50-demos", "90-first-boot"]


def test_copying_a_folder_adds_a_stage_and_skip_leaves_it_out(project):
    shutil.copytree(project / "stages/30-docker", project / "stages/95-extra")
    (project / "stages/95-extra/stage.yaml").write_text(
        "description: extra tools\npackages: [htop]\n")
    stages = load(project)
    assert [s.name for s in stages][-1] == "95-extra"
    assert stages[-1].packages == ("htop",)
    (project / "stages/95-extra/stage.yaml").write_text("description: extra\nskip: true\n")
    assert load(project)[-1].skip


@pytest.mark.parametrize("content, expected", [
    ("packages: htop\n", "packages: expected a list of Debian package names"),
    ("packages: ['Bad Name']\n", "packages: expected a list"),
    ("colour: red\n", "colour: unknown key"),
    ("overlay: nowhere\n", "overlay: expected a folder under overlay-files/"),
    ("python_packages: [nowhere]\n", "python_packages: expected a list of Python packages under"),
    ("python_packages: clusterlab_node\n", "python_packages: expected a list"),
    ("python_packages: [../clusterlab_node]\n", "python_packages: expected a list"),
    ("templates: {nope.j2: /etc/nope}\n", "templates: expected a mapping"),
    ("templates: {etc/hostname.j2: etc/hostname}\n", "templates: expected a mapping"),
    ("chroot_scripts: [missing.sh]\n", "which is not a file"),
    ("skip: maybe\n", "skip: expected true to leave the stage out"),
    ("[1, 2]\n", "expected a mapping"),
])
def test_bad_stage_files_name_file_and_key(project, content, expected):
    stage_file = project / "stages/30-docker/stage.yaml"
    stage_file.write_text(content)
    with pytest.raises(UserError) as caught:
        load(project)
    assert str(caught.value).startswith(f"{stage_file}: ")
    assert expected in str(caught.value)


def test_stage_folder_names_and_numbers_are_checked(project):
    shutil.copytree(project / "stages/30-docker", project / "stages/30-again")
    with pytest.raises(UserError, match="share the number 30"):
        load(project)
    shutil.rmtree(project / "stages/30-again")
    shutil.copytree(project / "stages/30-docker", project / "stages/extra")
    with pytest.raises(UserError, match="named NN-name"):
        load(project)


def renderer_for(overrides=()):
    cfg = config.load([], list(overrides))
    return Renderer(ROOT / "templates", pipeline.template_variables(cfg, "1.2.3"))


def test_every_template_of_every_stage_renders():
    render = renderer_for()
    for stage in pipeline.Project(ROOT).stages:
        for source, _ in stage.templates:
            assert render.render(source)


def test_seed_files_are_valid_cloud_init_yaml_without_passwords():
    render = renderer_for([f"users=[{{name: pi, groups: [sudo, docker], ssh_keys: ['{KEY}']}}]",
                           "hostname=node1"])
    user_data = render.render("boot/user-data.j2")
    assert user_data.startswith("#cloud-config\n")
    parsed = yaml.safe_load(user_data)
    assert parsed["users"][0]["name"] == "pi"
    assert parsed["users"][0]["ssh_authorized_keys"] == [KEY]
    assert parsed["users"][0]["lock_passwd"] is True
    assert not {"passwd", "hashed_passwd", "plain_text_passwd"} & set(parsed["users"][0])
    assert "chpasswd" not in parsed and "password" not in parsed
    assert yaml.safe_load(render.render("boot/meta-data.j2"))["local-hostname"] == "node1"
    assert yaml.safe_load(render.render("boot/network-config.j2"))["ethernets"]["eth0"]["dhcp4"]


def test_the_cards_cluster_settings_are_what_the_node_agent_reads():
    rendered = renderer_for(["cluster.vlan_id=300", "hostname=rack1", "cluster.name=rack",
                             "containers.web={tag: 'lab/web:7', source: debian, "
                             "packages: [busybox]}"]).render("boot/clusterlab.yaml.j2")
    node = settings.parse(yaml.safe_load(rendered), "clusterlab.yaml")
    assert (node.vlan_id, node.default_hostname, node.name) == (300, "rack1", "rack")
    assert node.images == {"consul": config.DEFAULT_CONTAINERS["consul"]["tag"],
                           "haproxy": config.DEFAULT_CONTAINERS["haproxy"]["tag"],
                           "web": "lab/web:7"}
    assert rendered.count("\n# ") >= len(settings.FIELDS)  # each setting with its doc


def test_without_users_user_data_creates_none():
    assert yaml.safe_load(renderer_for().render("boot/user-data.j2"))["users"] == []


def test_fstab_and_firmware_settings_use_the_partition_labels():
    render = renderer_for()
    fstab = [line.split() for line in render.render("etc/fstab.j2").splitlines()
             if line and not line.startswith("#")]
    assert fstab[0][:3] == ["LABEL=CL_ROOT", "/", "ext4"]
    assert fstab[1][:3] == ["LABEL=CL_BOOT", "/boot/firmware", "vfat"]
    assert 'ROOTPART="LABEL=CL_ROOT"' in render.render("etc/raspi-firmware.j2")


def test_cloud_init_reads_its_seed_where_the_base_mounts_the_boot_partition():
    def seed(overrides):
        cloud_cfg = renderer_for(overrides).render("etc/cloud-clusterlab.cfg.j2")
        return yaml.safe_load(cloud_cfg)["datasource"]["NoCloud"]["seedfrom"]
    assert seed([]) == "file:///boot/firmware/"
    assert seed(["base.source=download", "base.preset=hypriotos-1.12.3", "arch=armhf"]) \
        == "file:///boot/"


def test_armhf_selects_the_armmp_kernel():
    render = renderer_for(["arch=armhf"])
    assert render.render_string("{{ kernel_package }}", "test") == "linux-image-armmp"


def test_missing_variable_names_template_and_variable(tmp_path):
    (tmp_path / "broken.j2").write_text("hello {{ config.no_such_setting }}\n")
    cfg = config.load([], [])
    with pytest.raises(UserError) as caught:
        Renderer(tmp_path, pipeline.template_variables(cfg, "1")).render("broken.j2")
    assert "template broken.j2" in str(caught.value)
    assert "no_such_setting" in str(caught.value)


def test_device_shell_scripts_pass_shellcheck():
    scripts = [*ROOT.glob("stages/*/*.sh"), *ROOT.glob("overlay-files/*/usr/lib/clusterlab/*")]
    assert len(scripts) >= 3
    result = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_a_stage_installs_its_python_packages_without_bytecode(project, tmp_path):
    source = project / "node/clusterlab_demo"
    (source / "__pycache__").mkdir()
    (source / "__pycache__/cli.cpython-311.pyc").write_bytes(b"host bytecode")
    stage, = [s for s in load(project) if s.name == "50-demos"]
    image = tmp_path / "tree"
    image.mkdir()
    tree.apply_stage(image, stage, renderer_for())
    installed = image / tree.PYTHON_PACKAGES / "clusterlab_demo"
    assert sorted(p.name for p in installed.iterdir()) == sorted(p.name for p in source.glob("*.py"))
    assert (installed / "cli.py").read_bytes() == (source / "cli.py").read_bytes()
    assert (image / "usr/bin/clusterlab-demo").is_file()  # its launcher, from the overlay
