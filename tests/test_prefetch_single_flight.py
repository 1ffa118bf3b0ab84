"""One fill per key across processes: a running server and ``prefetch`` on the same cache."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
import yaml

from .conftest import ROOT, http_backend, vault_config

SIZE = 8 * 1024 * 1024


def blocked_on(lock_dir: Path) -> bool:
    """Whether some process waits for an flock on a file in ``lock_dir`` (Linux /proc/locks)."""
    inodes = set()
    for f in lock_dir.iterdir():
        try:
            inodes.add(f.stat().st_ino)
        except FileNotFoundError:
            pass
    waiting = [line for line in Path("/proc/locks").read_text().splitlines() if "->" in line]
    return any(int(line.split()[6].rsplit(":", 1)[1]) in inodes for line in waiting)


def test_a_server_and_a_prefetch_of_the_same_file_make_one_upstream_get(upstream, vault_process,
                                                                       tmp_path):
    body = hashlib.sha256(b"seed").digest() * (SIZE // 32)
    gate = threading.Event()
    upstream.add("/big.bin", body, gate=gate, gate_at=1024 * 1024)
    config = vault_config(tmp_path / "cache", [http_backend(upstream.url)], log_level="INFO")
    server = vault_process(config)
    got: dict[str, object] = {}

    def client() -> None:
        sha = hashlib.sha256()
        with requests.get(f"{server.url}/files/big.bin", stream=True, timeout=120) as r:
            got["status"] = r.status_code
            for chunk in r.iter_content(256 * 1024):
                sha.update(chunk)
        got["sha256"] = sha.hexdigest()

    reader = threading.Thread(target=client)
    reader.start()
    deadline = time.monotonic() + 20
    while upstream.count("/big.bin") == 0:  # the server's fill has started and holds the lock
        assert time.monotonic() < deadline
        time.sleep(0.02)
    config_path = tmp_path / "prefetch.yml"
    config_path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "prefetch", "--config",
                             str(config_path), "--url", "/files/big.bin"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        while not blocked_on(tmp_path / "cache" / "locks"):  # prefetch waits for the server
            assert proc.poll() is None and time.monotonic() < deadline + 40, proc.stderr
            time.sleep(0.02)
        gate.set()
        out, err = proc.communicate(timeout=120)
    finally:
        gate.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(60)
    assert proc.returncode == 0, err
    assert upstream.count("/big.bin") == 1
    digest = hashlib.sha256(body).hexdigest()
    assert got == {"status": 200, "sha256": digest}
    assert re.search(r"^/files/big.bin\s+already cached\s+8.0 MiB$", out, re.MULTILINE), out
    blob = tmp_path / "cache" / "blobs" / "sha256" / digest[:2] / digest
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == digest
    assert list((tmp_path / "cache" / "locks").iterdir()) == []  # holders remove their files
