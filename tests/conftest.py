"""Fixtures: a counting upstream, and the real Vault server on a free loopback port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from artifact_vault.app import App, build_app
from artifact_vault.config import Config, parse_config
from artifact_vault.server import create_server

from .fake_upstream import FakeUpstream
from .registry_fixtures import (  # noqa: F401 (fixtures for every test module)
    make_registry, registry, registry_basic, registry_token, token_server)

ROOT = Path(__file__).resolve().parent.parent


def wait_for(condition: Callable[[], object], what: str, timeout: float = 20) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` (what did not happen) if it does
    not within ``timeout``: for work Vault does in the background."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    server = FakeUpstream()
    yield server
    server.stop()


@dataclass
class Vault:
    url: str
    app: App
    config: Config
    server: Any

    def settle(self, timeout: float = 20) -> None:
        """Wait until no fill is running: a client gets its last byte before the commit."""
        deadline = time.monotonic() + timeout
        while self.app.cache.fills_in_progress() and time.monotonic() < deadline:
            time.sleep(0.01)

    stopped: bool = False

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.server.close()
            self.server.task_dispatcher.shutdown(timeout=5)
            self.app.close()


def vault_config(cache_dir: Path, backends: list[dict[str, Any]], **top: Any) -> dict[str, Any]:
    cache = {"min_free": 0, **top.pop("cache", {})}
    return {"http_host": "127.0.0.1", "http_port": 0, "cache_dir": str(cache_dir),
            "log_level": "DEBUG", "cache": cache, "backends": backends, **top}


def http_backend(base_url: str, prefix: str = "/files/", **config: Any) -> dict[str, Any]:
    return {"type": "http", "config": {"prefix": prefix, "base_url": base_url,
                                       "retries": 0, **config}}


@pytest.fixture
def make_vault(tmp_path: Path) -> Iterator[Callable[..., Vault]]:
    """Start Vault in this process (a waitress server in a thread) on a free port."""
    started: list[Vault] = []

    def make(backends: list[dict[str, Any]], **top: Any) -> Vault:
        config = parse_config(vault_config(tmp_path / "cache", backends, **top), env={})
        app = build_app(config)
        server = create_server(app, "127.0.0.1", config.http_port, threads=32)
        threading.Thread(target=server.run, daemon=True).start()
        vault = Vault(f"http://127.0.0.1:{server.effective_port}", app, config, server)
        started.append(vault)
        return vault

    yield make
    for vault in started:
        vault.stop()


@dataclass
class VaultProcess:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def start_vault_process(config: dict[str, Any], workdir: Path, **popen: Any) -> VaultProcess:
    """Run ``python main.py --config`` as a real process; wait until it listens."""
    config_path = workdir / f"config-{time.monotonic_ns()}.yml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = workdir / f"vault-{time.monotonic_ns()}.log"
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--config", str(config_path)],
                            stdout=subprocess.DEVNULL, stderr=open(log_path, "wb"), cwd=workdir,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, **popen)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        match = re.search(r"listening on http://[\d.]+:(\d+)/", log_path.read_text())
        if match:
            return VaultProcess(f"http://127.0.0.1:{match[1]}", proc, log_path)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"vault did not start:\n{log_path.read_text()}")


@pytest.fixture
def vault_process(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], VaultProcess]]:
    procs: list[VaultProcess] = []

    def start(config: dict[str, Any]) -> VaultProcess:
        proc = start_vault_process(config, tmp_path)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()
