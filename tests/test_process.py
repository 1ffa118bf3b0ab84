"""Vault as a real process: crash safety across a kill -9, clean shutdown on SIGTERM."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
import requests
import urllib3

from .conftest import http_backend, vault_config
from .test_cache_engine_e2e import MB, blob


def test_kill_9_mid_fill_leaves_no_temp_files_and_nothing_corrupt(upstream, vault_process, tmp_path):
    body = blob(8 * MB)
    gate = threading.Event()
    upstream.add("/big.bin", body, gate=gate, gate_at=3 * MB)
    config = vault_config(tmp_path / "cache", [http_backend(upstream.url)])
    vault = vault_process(config)
    client = requests.get(f"{vault.url}/files/big.bin", stream=True, timeout=30)
    client.raw.read(MB)
    tmp_dir = tmp_path / "cache" / "tmp"
    assert len(list(tmp_dir.iterdir())) == 1  # the fill is in flight
    vault.kill()
    gate.set()
    client.close()

    restarted = vault_process(config)
    assert list(tmp_dir.iterdir()) == []
    again = requests.get(f"{restarted.url}/files/big.bin", timeout=30)
    assert again.headers["X-Cache"] == "MISS"
    assert hashlib.sha256(again.content).digest() == hashlib.sha256(body).digest()
    assert upstream.count("/big.bin") == 2


def test_sigterm_stops_the_server_cleanly(upstream, vault_process, tmp_path):
    vault = vault_process(vault_config(tmp_path / "cache", [http_backend(upstream.url)]))
    assert requests.get(f"{vault.url}/health", timeout=10).status_code == 200
    vault.proc.terminate()
    assert vault.proc.wait(10) == 0
    time.sleep(0.1)
    assert "stopped" in vault.log_path.read_text()


def test_json_logs_carry_the_request_id_on_every_line(upstream, vault_process, tmp_path):
    import json

    upstream.add("/j.bin", b"json")
    vault = vault_process(vault_config(tmp_path / "cache", [http_backend(upstream.url)],
                                       log_format="json"))
    requests.get(f"{vault.url}/files/j.bin", headers={"X-Request-Id": "trace-7"}, timeout=10)
    vault.stop()
    lines = [json.loads(line) for line in vault.log_path.read_text().splitlines()]
    about = [doc for doc in lines if doc["request_id"] == "trace-7"]
    access = [doc for doc in about if doc["logger"] == "artifact_vault.access"]
    assert access and access[0]["cache"] == "MISS" and access[0]["bytes"] == 4
    assert any(doc["logger"].startswith("artifact_vault.cache") for doc in about)


def test_sigterm_lets_a_download_in_progress_finish(upstream, vault_process, tmp_path):
    body = blob(2 * MB)
    gate = threading.Event()
    upstream.add("/d.bin", body, gate=gate, gate_at=MB)
    vault = vault_process(vault_config(tmp_path / "cache", [http_backend(upstream.url)]))
    client = requests.get(f"{vault.url}/files/d.bin", stream=True, timeout=30)
    first = client.raw.read(MB // 2)
    vault.proc.terminate()
    time.sleep(0.5)
    assert vault.proc.poll() is None  # still running: a response is in progress
    gate.set()
    assert hashlib.sha256(first + client.raw.read()).digest() == hashlib.sha256(body).digest()
    assert vault.proc.wait(10) == 0
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []


def test_sigterm_cuts_a_stalled_download_short_after_stop_timeout(upstream, vault_process,
                                                                  tmp_path):
    gate = threading.Event()
    upstream.add("/s.bin", blob(2 * MB), gate=gate, gate_at=MB)
    vault = vault_process(vault_config(tmp_path / "cache", [http_backend(upstream.url)],
                                       stop_timeout="1s"))
    client = requests.get(f"{vault.url}/files/s.bin", stream=True, timeout=30)
    client.raw.read(MB // 2)
    vault.proc.terminate()
    try:
        assert vault.proc.wait(10) == 0
        with pytest.raises(urllib3.exceptions.ProtocolError):  # a broken transfer
            client.raw.read()
    finally:
        gate.set()
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []
    assert "stop_timeout reached" in vault.log_path.read_text()


def test_sigterm_stops_a_server_started_with_sigint_ignored(upstream, tmp_path):
    """A shell's `vault &` (and nohup) start it with SIGINT ignored: the stop must not depend
    on SIGINT."""
    import signal

    from .conftest import start_vault_process

    vault = start_vault_process(vault_config(tmp_path / "cache", [http_backend(upstream.url)]),
                                tmp_path,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        with requests.Session() as keep_alive:  # an idle keep-alive connection stays open
            assert keep_alive.get(f"{vault.url}/health", timeout=10).status_code == 200
            vault.proc.terminate()
            assert vault.proc.wait(10) == 0
    finally:
        vault.stop()
