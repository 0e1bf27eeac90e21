"""Container image entries: references, sources, merging with the defaults, errors that name
the entry's field."""

import pytest

from clusterlab import config
from clusterlab.containers import spec
from clusterlab.errors import UserError


@pytest.mark.parametrize("text, registry, repository, tag, digest", [
    ("consul:1.20", "docker.io", "library/consul", "1.20", None),
    ("hashicorp/consul:1.20", "docker.io", "hashicorp/consul", "1.20", None),
    ("docker.io/hashicorp/consul:1.20", "docker.io", "hashicorp/consul", "1.20", None),
    ("127.0.0.1:5000/lab/web:1", "127.0.0.1:5000", "lab/web", "1", None),
    ("localhost/web@sha256:" + "a" * 64, "localhost", "web", None, "sha256:" + "a" * 64),
    ("ghcr.io/a/b/c:v1@sha256:" + "0" * 64, "ghcr.io", "a/b/c", "v1", "sha256:" + "0" * 64),
])
def test_references_are_read_as_docker_reads_them(text, registry, repository, tag, digest):
    ref = spec.parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)


def test_docker_hub_is_reached_at_its_api_host():
    assert spec.parse_reference("consul:1").api_host == "registry-1.docker.io"
    assert spec.parse_reference("127.0.0.1:5000/x:1").api_host == "127.0.0.1:5000"


@pytest.mark.parametrize("text", ["consul", "docker.io/hashicorp/consul", "Consul:1",
                                  "consul@sha256:abc", "consul:", 5])
def test_bad_references_are_refused(text):
    with pytest.raises(spec.SpecError):
        spec.parse_reference(text)


def load(*overrides: str) -> config.Config:
    return config.load([], list(overrides))


def test_defaults_are_three_debian_images_with_tags():
    images = load()["containers"]
    assert set(images) == {"consul", "haproxy", "web"}
    for name, entry in images.items():
        parsed = spec.parse(name, entry)
        assert isinstance(parsed.source, spec.DebianSource) and ":" in parsed.tag


def test_one_line_switches_an_image_to_a_registry_and_keeps_the_others():
    images = load("containers.consul={tag: 'clusterlab/consul:1.20', source: registry, "
                  "ref: 'docker.io/hashicorp/consul:1.20'}")["containers"]
    consul = spec.parse("consul", images["consul"])
    assert isinstance(consul.source, spec.RegistrySource)
    assert str(consul.source.ref) == "docker.io/hashicorp/consul:1.20"
    assert set(images) == {"consul", "haproxy", "web"}


def test_a_file_adds_and_removes_entries(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("containers:\n  web: null\n  redis: {tag: 'lab/redis:7', source: debian, "
                    "packages: [redis-server], ports: [6379/tcp]}\n")
    images = config.load([mine], [])["containers"]
    assert set(images) == {"consul", "haproxy", "redis"}


@pytest.mark.parametrize("entry, field, expected", [
    ("{tag: 'a/b:1', source: git}", "containers.x.source", "one of debian, registry"),
    ("{tag: 'a/b', source: debian, packages: [ab]}", "containers.x.tag", "a tag is required"),
    ("{tag: 'a/b:1', source: registry, ref: 'consul'}", "containers.x.ref", "neither"),
    ("{tag: 'a/b:1', source: debian}", "containers.x.packages", "at least one"),
    ("{tag: 'a/b:1', source: debian, packages: [ab], ports: [80]}", "containers.x.ports",
     "8500/tcp"),
    ("{tag: 'a/b:1', source: registry, ref: 'a:1', password: hunter2}", "containers.x.password",
     "password_env"),
])
def test_mistakes_name_the_entry_field_and_what_was_expected(entry, field, expected):
    with pytest.raises(UserError) as caught:
        load(f"containers.x={entry}")
    message = str(caught.value)
    assert message.startswith(f"--set: {field}: expected") and expected in message, message
