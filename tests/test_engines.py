"""podman, containerd and docker pulling through Vault with the README's mirror recipes.

Each engine runs as root with its state in a temp dir, in front of Vault, in front of a real
CNCF distribution registry on loopback. The mirrored registry is ``docker.io`` (the README's
example), served by a ``dockerhub`` backend pointed at the local registry. Where an engine
falls back to the registry itself when the mirror fails, that fallback is a closed loopback
port (or, for docker, a loopback proxy that refuses everything), so a broken mirror fails the
test and never sends traffic off the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .registry_fixtures import Registry, build_image, push

LAYERS = [b"engine layer\n" * 2000, {"bin/tool": b"\x7fELF" + b"y" * 40_000}]
CLOSED = "127.0.0.1:9"  # discard port: nothing listens, so a fallback fails at once


def needs(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (scripts/test.sh installs them as root)")
    if os.geteuid() != 0:
        pytest.skip("container engines need root")


def dockerhub(registry: Registry) -> dict:
    return {"type": "dockerhub", "config": {"prefix": "/dockerhub/", "base_url": registry.url,
                                            "default": True, "retries": 0}}


@pytest.fixture
def image(registry, tmp_path):
    return push(build_image(tmp_path / "img", "v1", LAYERS), "library/tool:v1", registry)


@pytest.fixture
def state() -> Iterator[Path]:
    """An engine's state dir; a short path (podman refuses a runroot over 50 characters)."""
    path = Path(tempfile.mkdtemp(prefix="av-engine-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run(args: list[str], env: dict[str, str] | None = None,
        timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_podman_pulls_through_a_registries_conf_mirror_with_a_path(registry, image, make_vault,
                                                                    tmp_path, state):
    needs("podman")
    vault = make_vault([dockerhub(registry)])
    host = vault.url.removeprefix("http://")
    conf = tmp_path / "registries.conf"
    conf.write_text(f'''
[[registry]]
prefix = "docker.io"
location = "{CLOSED}"

[[registry.mirror]]
location = "{host}/dockerhub"
insecure = true
''')
    storage = ["--root", str(state / "root"), "--runroot", str(state / "run"),
               "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend",
               "file"]
    env = {"CONTAINERS_REGISTRIES_CONF": str(conf)}
    result = run(["podman", *storage, "pull", "docker.io/library/tool:v1"], env)
    assert result.returncode == 0, result.stderr
    listed = run(["podman", *storage, "images", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}}"],
                 env)
    assert f"docker.io/library/tool:v1 {image.digest}" in listed.stdout, listed.stdout
    assert registry.blob_gets("library/tool") == {d: 1 for d in image.blob_digests}


@pytest.fixture
def containerd(state) -> Iterator[list[str]]:
    """A containerd daemon with its state in ``state``; yields the ``ctr`` command to reach it."""
    needs("containerd", "ctr")
    (state / "config.toml").write_text(f'''
version = 2
root = "{state}/root"
state = "{state}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{state}/c.sock"
[ttrpc]
  address = "{state}/t.sock"
[debug]
  address = "{state}/d.sock"
''')
    with open(state / "containerd.log", "wb") as log:
        proc = subprocess.Popen(["containerd", "--config", str(state / "config.toml")],
                                stdout=log, stderr=log)
    ctr = ["ctr", "--address", str(state / "c.sock")]
    try:
        deadline = time.monotonic() + 30
        while run([*ctr, "version"], timeout=10).returncode != 0:
            assert proc.poll() is None and time.monotonic() < deadline, \
                (state / "containerd.log").read_text()[-3000:]
            time.sleep(0.2)
        yield ctr
    finally:
        proc.terminate()
        proc.wait(30)


def hosts_toml(hosts_dir: Path, namespace: str, mirror: str, override_path: bool) -> None:
    (hosts_dir / namespace).mkdir(parents=True)
    (hosts_dir / namespace / "hosts.toml").write_text(f'''
server = "http://{CLOSED}"

[host."{mirror}"]
  capabilities = ["pull", "resolve"]
''' + ("  override_path = true\n" if override_path else ""))


def test_containerd_pulls_through_hosts_toml_by_ns_and_by_prefix(registry, image, make_vault,
                                                                 containerd, state):
    other = push(build_image(state / "img2", "v1", [b"second image\n" * 500]), "team/app:v1",
                 registry)
    vault = make_vault([dockerhub(registry), {"type": "registry-v2", "config": {
        "prefix": "/hub/", "base_url": registry.url, "retries": 0}}])
    hosts = state / "certs.d"
    hosts_toml(hosts, "docker.io", vault.url, override_path=False)  # ?ns=docker.io
    hosts_toml(hosts, "registry.invalid", f"{vault.url}/v2/hub", override_path=True)
    for ref, pushed in (("docker.io/library/tool:v1", image),
                        ("registry.invalid/team/app:v1", other)):
        result = run([*containerd, "images", "pull", "--hosts-dir", str(hosts),
                      "--snapshotter", "native", ref])
        assert result.returncode == 0, result.stderr
        listed = run([*containerd, "images", "list"]).stdout
        assert ref in listed and pushed.digest in listed, listed
        assert registry.blob_gets(pushed.name) == {d: 1 for d in pushed.blob_digests}


def start_dockerd(state: Path, daemon_json: str) -> tuple[subprocess.Popen[bytes], list[str]]:
    """dockerd with its state in ``state``; no iptables, no bridge, vfs storage. Proxy variables
    point at a closed loopback port, so the Docker Hub fallback docker tries when a mirror
    fails goes nowhere (loopback, where Vault is, is exempt)."""
    (state / "daemon.json").write_text(daemon_json)
    sock = f"unix://{state}/d.sock"
    env = {**os.environ, "HTTPS_PROXY": f"http://{CLOSED}", "HTTP_PROXY": f"http://{CLOSED}",
           "NO_PROXY": "127.0.0.1,localhost"}
    with open(state / "dockerd.log", "wb") as log:
        proc = subprocess.Popen(
            ["dockerd", "--data-root", f"{state}/data", "--exec-root", f"{state}/exec",
             "--pidfile", f"{state}/d.pid", "-H", sock, "--iptables=false", "--ip6tables=false",
             "--bridge=none", "--storage-driver=vfs", "--config-file", f"{state}/daemon.json"],
            stdout=log, stderr=log, env=env)
    docker = ["docker", "-H", sock]
    deadline = time.monotonic() + 60
    while run([*docker, "version"], timeout=20).returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise AssertionError((state / "dockerd.log").read_text()[-3000:])
        time.sleep(0.3)
    return proc, docker


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def test_docker_pulls_through_registry_mirrors_and_by_prefix(registry, image, make_vault,
                                                            state):
    needs("dockerd", "docker")
    other = push(build_image(state / "img2", "v1", [b"second image\n" * 500]), "team/app:v1",
                 registry)
    vault = make_vault([dockerhub(registry), {"type": "registry-v2", "config": {
        "prefix": "/hub/", "base_url": registry.url, "retries": 0}}])
    host = vault.url.removeprefix("http://")
    proc, docker = start_dockerd(state, json.dumps({"registry-mirrors": [vault.url],
                                                    "insecure-registries": [host]}))
    try:
        for ref, pushed in (("tool:v1", image), (f"{host}/hub/team/app:v1", other)):
            result = run([*docker, "pull", ref])
            assert result.returncode == 0, result.stderr
            assert pushed.digest in result.stdout, result.stdout
            assert registry.blob_gets(pushed.name) == {d: 1 for d in pushed.blob_digests}
    finally:
        stop(proc)
