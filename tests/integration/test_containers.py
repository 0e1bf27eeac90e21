"""Container images: pulled from a real registry (Debian's docker-registry on 127.0.0.1, images
pushed with skopeo), assembled from Debian packages, read by skopeo and loaded by a real
dockerd; the images baked into the built image load and, for the host's architecture, run."""

import gzip
import hashlib
import io
import json
import re
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from clusterlab import disk
from clusterlab.containers import archive, bake, debian, registry, spec
from clusterlab.errors import BuildError
from localnet import free_port

pytestmark = pytest.mark.integration
EPOCH = 1_700_000_000


def wait_for(check, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not come up within {timeout} s")
        time.sleep(0.3)


class Registry:
    """Debian's docker-registry serving plain HTTP on a free loopback port."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.log = root / "registry.log"
        config = root / "config.yml"
        config.write_text(json.dumps({
            "version": 0.1, "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(root / "storage")},
                        "delete": {"enabled": True}},
            "http": {"addr": self.host}}))
        self.proc = subprocess.Popen(["docker-registry", "serve", str(config)],
                                     stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        wait_for(self._answers, "docker-registry")

    def _answers(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def push_layout(self, layout: Path, name: str) -> None:
        subprocess.run(["skopeo", "copy", "--quiet", "--all", "--dest-tls-verify=false",
                        f"oci:{layout}", f"docker://{self.host}/{name}"], check=True)

    def blob_requests(self) -> int:
        return len(re.findall(r'"GET /v2/[^ ]+/blobs/sha256:', self.log.read_text()))

    def stored_blob(self, digest: str) -> Path:
        hex_digest = digest.removeprefix("sha256:")
        return (self.root / "storage/docker/registry/v2/blobs/sha256" / hex_digest[:2]
                / hex_digest / "data")

    def source(self, name: str) -> spec.RegistrySource:
        return spec.RegistrySource(spec.parse_reference(f"{self.host}/{name}"), insecure=True,
                                   username=None, password_env=None)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def gzipped_layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A gzip-compressed layer and its diff id (digest of the plain tarball)."""
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), EPOCH
            tar.addfile(info, io.BytesIO(data))
    return (gzip.compress(plain.getvalue(), mtime=0),
            "sha256:" + hashlib.sha256(plain.getvalue()).hexdigest())


def oci_layout(folder: Path, platforms: list[tuple[str, str | None]]) -> dict[str, str]:
    """An OCI image layout holding one image per (architecture, variant), each with a file
    /platform naming it, under one index. Returns the layer digest of each architecture."""
    blobs = folder / "blobs/sha256"
    blobs.mkdir(parents=True)

    def blob(data: bytes, media_type: str) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    manifests, layer_digests = [], {}
    for architecture, variant in platforms:
        layer, diff_id = gzipped_layer({"platform": f"{architecture}{variant or ''}\n".encode()})
        config = {"architecture": architecture, "os": "linux", "config": {"Cmd": ["/bin/true"]},
                  "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
        if variant:
            config["variant"] = variant
        layer_desc = blob(layer, "application/vnd.oci.image.layer.v1.tar+gzip")
        layer_digests[architecture] = layer_desc["digest"]
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": blob(json.dumps(config).encode(),
                                   "application/vnd.oci.image.config.v1+json"),
                    "layers": [layer_desc]}
        desc = blob(json.dumps(manifest).encode(), manifest["mediaType"])
        desc["platform"] = {"architecture": architecture, "os": "linux",
                            **({"variant": variant} if variant else {})}
        manifests.append(desc)
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": manifests}
    (folder / "index.json").write_text(json.dumps(
        {"schemaVersion": 2, "manifests": [blob(json.dumps(index).encode(), index["mediaType"])]}))
    (folder / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return layer_digests


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A registry holding lab/multi:1 (arm64, arm/v7, amd64) and lab/amd64only:1."""
    root = tmp_path_factory.mktemp("registry")
    server = Registry(root)
    layout = root / "multi"
    server.layers = oci_layout(layout, [("arm64", "v8"), ("arm", "v7"), ("amd64", None)])
    server.push_layout(layout, "lab/multi:1")
    oci_layout(root / "amd64only", [("amd64", None)])
    server.push_layout(root / "amd64only", "lab/amd64only:1")
    yield server
    server.stop()


def layer_file(pulled: registry.Pulled) -> bytes:
    with tarfile.open(pulled.layers[0]) as tar:
        return tar.extractfile("platform").read()


def test_pull_by_tag_picks_the_architecture_from_the_index(lab, tmp_path):
    arm64 = registry.pull(lab.source("lab/multi:1"), "arm64", tmp_path)
    assert json.loads(arm64.config)["architecture"] == "arm64"
    assert layer_file(arm64) == b"arm64v8\n"
    armhf = registry.pull(lab.source("lab/multi:1"), "armhf", tmp_path)
    assert (json.loads(armhf.config)["architecture"], layer_file(armhf)) == ("arm", b"armv7\n")


def test_pull_by_digest(lab, tmp_path):
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                          f"docker://{lab.host}/lab/multi:1"], check=True,
                         capture_output=True).stdout
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    pulled = registry.pull(lab.source(f"lab/multi@{digest}"), "arm64", tmp_path)
    assert layer_file(pulled) == b"arm64v8\n"


def test_second_pull_downloads_no_blob(lab, tmp_path):
    registry.pull(lab.source("lab/multi:1"), "arm64", tmp_path)
    before = lab.blob_requests()
    again = registry.pull(lab.source("lab/multi:1"), "arm64", tmp_path)
    assert before > 0 and lab.blob_requests() == before
    assert layer_file(again) == b"arm64v8\n"


def test_index_without_the_architecture_is_an_error(lab, tmp_path):
    with pytest.raises(BuildError, match=r"no image for linux/arm64 .*it has: linux/amd64"):
        registry.pull(lab.source("lab/amd64only:1"), "arm64", tmp_path)


def test_missing_tag_and_unreachable_registry_are_errors(lab, tmp_path):
    with pytest.raises(BuildError, match=r"not found in the registry \(404"):
        registry.pull(lab.source("lab/multi:2"), "arm64", tmp_path)
    nobody = spec.RegistrySource(spec.parse_reference(f"127.0.0.1:{free_port()}/lab/multi:1"),
                                 True, None, None)
    with pytest.raises(BuildError, match="cannot reach the registry"):
        registry.pull(nobody, "arm64", tmp_path)


def test_corrupted_blob_is_refused_and_not_cached(lab, tmp_path):
    stored = lab.stored_blob(lab.layers["amd64"])
    good = stored.read_bytes()
    stored.write_bytes(good[:-8] + b"\0" * 8)
    try:
        with pytest.raises(BuildError, match="does not match its digest"):
            registry.pull(lab.source("lab/multi:1"), "amd64", tmp_path)
    finally:
        stored.write_bytes(good)
    # what was complete and checked (the config) may stay; nothing of the bad blob does
    kept = [p.name for p in tmp_path.rglob("*") if p.is_file()]
    assert kept and lab.layers["amd64"].removeprefix("sha256:") not in kept
    assert not [name for name in kept if name.endswith(".partial")]


class Dockerd:
    """A Docker daemon of the test's own: its socket, data and containerd namespace."""

    def __init__(self, root: Path):
        self.socket = root / "docker.sock"
        self.log = root / "dockerd.log"
        self.proc = subprocess.Popen(
            ["dockerd", "--host", f"unix://{self.socket}", "--data-root", str(root / "data"),
             "--exec-root", str(root / "exec"), "--pidfile", str(root / "dockerd.pid"),
             "--iptables=false", "--ip6tables=false", "--bridge=none",
             "--containerd-namespace", "clusterlab-test",
             "--containerd-plugins-namespace", "clusterlab-test-plugins"],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        wait_for(lambda: self.docker("info", check=False).returncode == 0, "dockerd")

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(["docker", "--host", f"unix://{self.socket}", *args],
                                capture_output=True, text=True, timeout=300)
        if check:
            assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}"
        return result

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory):
    daemon = Dockerd(tmp_path_factory.mktemp("dockerd"))
    yield daemon
    daemon.stop()


def skopeo_inspect(tarball: Path) -> dict:
    result = subprocess.run(["skopeo", "inspect", f"docker-archive:{tarball}"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_registry_image_as_docker_archive_is_read_and_loaded(lab, dockerd, tmp_path):
    pulled = registry.pull(lab.source("lab/multi:1"), "arm64", tmp_path / "blobs")
    tarball = tmp_path / "multi.tar"
    image_id = archive.write_docker_archive(tarball, "lab/multi:1", pulled.config,
                                            pulled.layers, EPOCH)
    assert skopeo_inspect(tarball)["Architecture"] == "arm64"
    assert "Loaded image: lab/multi:1" in dockerd.docker("load", "--input", str(tarball)).stdout
    assert dockerd.docker("image", "inspect", "--format", "{{.Id}}",
                          "lab/multi:1").stdout.strip() == image_id


def test_debian_image_for_the_host_runs_and_answers_with_its_hostname(dockerd, tmp_path):
    web = spec.parse("web", {"tag": "lab/web:1", "source": "debian", "packages": ["busybox"],
                             "entrypoint": ["/usr/bin/busybox", "sh", "-c",
                                            "busybox hostname > /index.html && "
                                            "exec busybox httpd -f -p 80 -h /"]})
    tarball = tmp_path / "web.tar"
    debian.build(web, "amd64", "trixie", ["deb http://deb.debian.org/debian trixie main"],
                 tmp_path / "apt", tarball, EPOCH)
    assert skopeo_inspect(tarball)["Architecture"] == "amd64"
    dockerd.docker("load", "--input", str(tarball))
    container = dockerd.docker("run", "--detach", "--network", "none", "lab/web:1").stdout.strip()
    try:
        def answer():
            return dockerd.docker("exec", container, "busybox", "wget", "-qO-",
                                  "http://127.0.0.1/", check=False).stdout.strip()
        wait_for(lambda: answer() != "", "the web server", timeout=30)
        assert answer() == container[:12]
    finally:
        dockerd.docker("rm", "--force", container)


@pytest.fixture(scope="module")
def baked_tarballs(built, module_tmp):
    """The docker-archive tarballs as the built image holds them."""
    copy = module_tmp / "baked"
    copy.mkdir()
    with disk.mounted_ext4(built["img"], disk.partitions(built["img"])[1]) as root:
        for tarball in sorted((root / bake.IMAGES_DIR).glob("*.tar")):
            subprocess.run(["cp", str(tarball), str(copy)], check=True)
    return sorted(copy.glob("*.tar"))


def test_baked_images_are_listed_in_the_manifest_and_load(built, baked_tarballs, dockerd):
    listed = {entry["name"]: entry for entry in built["manifest"]["containers"]}
    assert set(listed) == {"consul", "haproxy", "web"} == {t.stem for t in baked_tarballs}
    for tarball in baked_tarballs:
        entry = listed[tarball.stem]
        inspected = skopeo_inspect(tarball)
        assert inspected["Architecture"] == "arm64"
        assert entry["bytes"] == tarball.stat().st_size
        loaded = dockerd.docker("load", "--input", str(tarball)).stdout
        assert f"Loaded image: {entry['tag']}" in loaded
        assert dockerd.docker("image", "inspect", "--format", "{{.Id}}",
                              entry["tag"]).stdout.strip() == entry["image_id"]
