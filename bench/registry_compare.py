#!/usr/bin/env python3
"""skopeo pulls of one ~80 MB image: straight from a registry, through Vault's registry-v2
backend, and through CNCF distribution's own pull-through proxy mode.

Set-up (everything on 127.0.0.1, in a temp dir that is removed at the end):

    upstream   tests/registry_fixtures.start_registry: `docker-registry serve` (distribution
               2.8) behind the fixtures' counting reverse proxy (a Python ThreadingHTTPServer,
               64 KiB chunks). Every target below talks to the counting proxy, so every
               upstream blob GET is counted, and "direct" goes through the same hop.
    image      bench/big:v1, 4 layers of 20 MiB pseudo-random (incompressible, deterministic)
               bytes, one file each, gzip'd tar as the fixtures' build_image writes them; OCI
               manifest. Pushed with skopeo straight to the registry (not counted).
    vault      .venv/bin/python main.py --config CFG: one registry-v2 backend, prefix /hub/,
               base_url = the counting proxy, retries 0, log_level INFO (an access line per
               request, the production cost), port 0 read from the "listening on" line.
               skopeo pulls 127.0.0.1:PORT/hub/bench/big:v1.
    distproxy  a second `docker-registry serve` with `proxy: remoteurl: <counting proxy>` and
               storage of its own. skopeo pulls 127.0.0.1:PORT/bench/big:v1.

Every pull is `skopeo copy --src-tls-verify=false --retry-times 0 docker://REF dir:DEST` (the
fixtures' skopeo_copy: clean environment, no registries.conf) into a fresh directory, timed
from start to exit (skopeo's own start-up and its HTTPS-then-HTTP probe included, the same
for every target), then checked (every blob present, with the manifest's size) and deleted.

Measured, in one run:

    direct     pulls from the counting proxy ("direct") and from the registry port itself
               ("direct-raw": the counting proxy's own cost is the difference); best of N
    cold       vault / distproxy each started anew on an empty cache, one pull; best of N
    warm       more pulls from the last cold instance (fresh destination each); best of N
    8x cold    8 concurrent pulls against a fresh instance (fresh cache), wall time of the
               slowest, and upstream GETs per blob from the counting proxy (target for Vault:
               exactly 1 per blob; also shown: upstream GETs per blob of one single cold pull)

Ratios printed at the end (targets in brackets): warm Vault / warm distproxy [<= 1.0] and cold
Vault / direct [<= 1.10]. Also printed: CPU seconds used by the Vault process (and the
distribution proxy) per pull, and Vault's access-log lines of its last cold pull (per-request
duration and time spent waiting for the upstream's answer), to show where its time goes.

    .venv/bin/python bench/registry_compare.py              # ~2-4 minutes
    .venv/bin/python bench/registry_compare.py --rounds 5 --concurrency 8 --keep

Needs the Debian packages docker-registry and skopeo. Peak disk use is about
(concurrency + 4) x image size (~1 GB with the defaults), all in the temp dir (set
BENCH_TMPDIR to move it); every server is stopped at the end, also on error, Ctrl-C, SIGTERM
or the time limit (--time-limit).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    HOST,
    PYTHON,
    cpu_seconds,
    environment,
    guard,
    popen,
    print_table,
    stop_process,
    temp_dir,
    wait_http,
)
from tests.registry_fixtures import (  # noqa: E402
    REGISTRY_BIN,
    Pushed,
    Registry,
    build_image,
    free_port,
    push,
    require_tools,
    skopeo_copy,
    start_registry,
)

MiB = 1024 * 1024
IMAGE_NAME = "bench/big"
IMAGE_TAG = "v1"
PULL_TIMEOUT = 300


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- the servers under test -------------------------------------------------------------------

class VaultProc:
    """Vault as a real process with one registry-v2 backend at /hub/ in front of ``upstream``."""

    def __init__(self, upstream_url: str, workdir: Path, threads: int = 32) -> None:
        self.upstream_url = upstream_url
        self.workdir = workdir
        self.threads = threads
        self.cache_dir = workdir / "cache"
        self.log_path = workdir / "vault.log"
        self.proc: subprocess.Popen | None = None
        self.url = ""

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def ref(self) -> str:
        return f"{self.host}/hub/{IMAGE_NAME}:{IMAGE_TAG}"

    def start(self) -> VaultProc:
        import yaml

        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "http_host": HOST, "http_port": 0, "cache_dir": str(self.cache_dir),
            "log_level": "INFO", "threads": self.threads, "cache": {"min_free": 0},
            "backends": [{"type": "registry-v2", "config": {
                "prefix": "/hub/", "base_url": self.upstream_url, "retries": 0}}],
        }
        config_path = self.workdir / "vault.yml"
        config_path.write_text(yaml.safe_dump(config))
        with open(self.log_path, "ab") as f:
            self.proc = popen([PYTHON, str(ROOT / "main.py"), "--config", str(config_path)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=f,
                              cwd=self.workdir, env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            deadline = time.monotonic() + 30
            while True:
                match = re.search(r"listening on http://[\d.]+:(\d+)/", self.log_path.read_text())
                if match:
                    self.url = f"http://{HOST}:{match[1]}"
                    break
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("no 'listening on' line")
                time.sleep(0.05)
            wait_http(self.url + "/health", timeout=30, proc=self.proc)
        except BaseException as exc:
            self.stop()
            raise RuntimeError(f"vault did not start ({exc}):\n{self.log_path.read_text()}") \
                from None
        return self

    def stop(self) -> None:
        stop_process(self.proc)

    def access_lines(self) -> list[str]:
        return [line for line in self.log_path.read_text(errors="replace").splitlines()
                if " artifact_vault.access " in line]


class DistProxy:
    """distribution 2.8 in pull-through cache mode (``proxy: remoteurl``), its own storage."""

    def __init__(self, remote_url: str, workdir: Path) -> None:
        self.remote_url = remote_url
        self.workdir = workdir
        self.storage = workdir / "storage"
        self.log_path = workdir / "registry.log"
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def host(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def ref(self) -> str:
        return f"{self.host}/{IMAGE_NAME}:{IMAGE_TAG}"

    def start(self) -> DistProxy:
        import yaml

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage.mkdir(exist_ok=True)
        for _attempt in range(5):
            self.port = free_port()
            config = {
                "version": 0.1,
                "log": {"level": "warn", "formatter": "text", "accesslog": {"disabled": True}},
                "storage": {"filesystem": {"rootdirectory": str(self.storage)},
                            "maintenance": {"uploadpurging": {"enabled": False}}},
                "http": {"addr": f"{HOST}:{self.port}", "secret": secrets.token_hex(16)},
                "proxy": {"remoteurl": self.remote_url},
            }
            config_path = self.workdir / "config.yml"
            config_path.write_text(yaml.safe_dump(config, sort_keys=False))
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.workdir)}
            with open(self.log_path, "ab") as f:
                self.proc = popen([REGISTRY_BIN, "serve", str(config_path)],
                                  stdin=subprocess.DEVNULL, stdout=f, stderr=f, env=env,
                                  cwd=self.workdir)
            try:
                wait_http(f"http://{self.host}/v2/", timeout=20, proc=self.proc)
                return self
            except RuntimeError:
                self.stop()
        raise RuntimeError(f"distribution proxy did not start:\n{self.log_tail()}")

    def stop(self) -> None:
        stop_process(self.proc)

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


# -- the image and the pulls ------------------------------------------------------------------

def build_big_image(layout: Path, layers: int, layer_bytes: int) -> None:
    """bench/big:v1 in an OCI layout: ``layers`` layers of pseudo-random bytes (seeded, so the
    digests are the same every run), one file per layer, gzip'd tar (build_image)."""
    data = [random.Random(f"registry-compare-{i}").randbytes(layer_bytes) for i in range(layers)]
    image = build_image(layout, IMAGE_TAG, data)
    image.blobs.clear()


@dataclass
class Pull:
    seconds: float
    cpu: dict[str, float] = field(default_factory=dict)  # server -> CPU seconds during the pull


class Puller:
    """Runs timed skopeo pulls into fresh directories and checks what arrived."""

    def __init__(self, pushed: Pushed, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        doc = json.loads(pushed.manifest)
        self.sizes = {doc["config"]["digest"]: doc["config"]["size"],
                      **{layer["digest"]: layer["size"] for layer in doc["layers"]}}
        self.total_bytes = sum(self.sizes.values())
        self.manifest = pushed.manifest
        self._n = 0

    def pull(self, ref: str, watch: dict[str, int] | None = None) -> Pull:
        """One pull of ``ref``; ``watch``: name -> pid whose CPU time to report."""
        self._n += 1
        dest = self.workdir / f"pull-{self._n}"
        before = {name: cpu_seconds(pid) for name, pid in (watch or {}).items()}
        started = time.monotonic()
        try:
            result = skopeo_copy(ref, dest, timeout=PULL_TIMEOUT)
            seconds = time.monotonic() - started
            if result.returncode != 0:
                raise RuntimeError(f"skopeo copy {ref} failed:\n{result.stderr}")
            self._check(dest, ref)
        finally:
            shutil.rmtree(dest, ignore_errors=True)
        cpu = {name: cpu_seconds(pid) - before[name] for name, pid in (watch or {}).items()}
        return Pull(seconds, cpu)

    def _check(self, dest: Path, ref: str) -> None:
        if (dest / "manifest.json").read_bytes() != self.manifest:
            raise RuntimeError(f"{ref}: the pulled manifest is not the pushed one")
        for digest, size in self.sizes.items():
            path = dest / digest.split(":", 1)[1]
            if not path.exists() or path.stat().st_size != size:
                raise RuntimeError(f"{ref}: blob {digest} missing or of the wrong size")

    def concurrent(self, ref: str, n: int) -> tuple[float, list[float]]:
        """``n`` pulls at once; (wall time until the last one ended, each pull's time)."""
        barrier_start = time.monotonic()
        with ThreadPoolExecutor(n) as pool:
            pulls = list(pool.map(lambda _: self.pull(ref), range(n)))
        return time.monotonic() - barrier_start, [p.seconds for p in pulls]


def settle_counts(reg: Registry, quiet: float = 1.5, timeout: float = 60) -> None:
    """Wait until no new request reached the upstream for ``quiet`` seconds (distribution's
    proxy stores a blob in a background goroutine that may outlive the client's pull)."""
    deadline = time.monotonic() + timeout
    last, since = len(reg.log), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = len(reg.log)
        pending = any(r.status is None for r in list(reg.log))
        if now != last or pending:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


def blob_gets(reg: Registry, digests: list[str]) -> dict[str, int]:
    counts = reg.blob_gets(IMAGE_NAME)
    return {d: counts.get(d, 0) for d in digests}


@contextlib.contextmanager
def running(server: VaultProc | DistProxy) -> Iterator[VaultProc | DistProxy]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- the run ----------------------------------------------------------------------------------

@dataclass
class Target:
    name: str
    cold: list[Pull] = field(default_factory=list)
    warm: list[Pull] = field(default_factory=list)
    single_gets: dict[str, int] = field(default_factory=dict)  # one cold pull
    conc_gets: dict[str, int] = field(default_factory=dict)  # N concurrent cold pulls
    conc_wall: float | None = None
    conc_each: list[float] = field(default_factory=list)
    other_upstream: int = 0  # upstream requests other than blob GETs, one cold pull


def best(pulls: list[Pull]) -> float | None:
    return min(p.seconds for p in pulls) if pulls else None


def fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def run(args: argparse.Namespace, tmp: Path) -> None:
    require_tools(REGISTRY_BIN, "skopeo")
    log(f"building the image: {args.layers} x {args.layer_mib} MiB layers")
    build_big_image(tmp / "img", args.layers, args.layer_mib * MiB)
    with contextlib.ExitStack() as stack:
        reg = start_registry(tmp / "upstream")
        stack.callback(reg.close)
        log(f"upstream registry on {reg.backend_host}, counting proxy on {reg.host}; pushing")
        pushed = push(tmp / "img", f"{IMAGE_NAME}:{IMAGE_TAG}", reg)
        shutil.rmtree(tmp / "img")
        puller = Puller(pushed, tmp / "pulls")
        digests = pushed.blob_digests
        print(f"image {IMAGE_NAME}:{IMAGE_TAG}: {len(digests)} blobs (config + "
              f"{len(digests) - 1} layers), {puller.total_bytes / MiB:.1f} MiB compressed, "
              f"manifest {pushed.digest[:19]}...")
        registry_pid = {"registry": reg.proc.pid} if reg.proc else {}

        # (a) direct
        direct, raw = Target("direct"), Target("direct-raw")
        for i in range(args.rounds):
            reg.clear_requests()
            direct.cold.append(puller.pull(f"{reg.host}/{IMAGE_NAME}:{IMAGE_TAG}",
                                           registry_pid))
            if i == 0:
                settle_counts(reg)
                direct.single_gets = blob_gets(reg, digests)
            raw.cold.append(puller.pull(f"{reg.backend_host}/{IMAGE_NAME}:{IMAGE_TAG}",
                                        registry_pid))
            log(f"direct round {i + 1}: {direct.cold[-1].seconds:.2f}s via the counting proxy, "
                f"{raw.cold[-1].seconds:.2f}s straight")

        # (b) Vault and (c) distribution's proxy: cold (fresh instance, empty cache), then warm
        vault, dist = Target("vault"), Target("distproxy")
        vault_cold_log: list[str] = []
        factories: list[tuple[Target, Callable[[Path], VaultProc | DistProxy]]] = [
            (vault, lambda d: VaultProc(reg.url, d, threads=args.threads)),
            (dist, lambda d: DistProxy(reg.url, d)),
        ]
        for target, make in factories:
            for i in range(args.rounds):
                workdir = tmp / f"{target.name}-cold-{i}"
                with running(make(workdir)) as server:
                    watch = {target.name: server.pid, **registry_pid}
                    reg.clear_requests()
                    target.cold.append(puller.pull(server.ref(), watch))
                    settle_counts(reg)
                    if i == 0:
                        target.single_gets = blob_gets(reg, digests)
                        target.other_upstream = len(reg.log) - sum(target.single_gets.values())
                    if isinstance(server, VaultProc):
                        vault_cold_log = server.access_lines()
                    log(f"{target.name} cold round {i + 1}: {target.cold[-1].seconds:.2f}s, "
                        f"upstream blob GETs {sorted(blob_gets(reg, digests).values())}")
                    if i == args.rounds - 1:  # warm pulls from the last cold instance
                        for j in range(args.rounds):
                            target.warm.append(puller.pull(server.ref(), watch))
                            log(f"{target.name} warm round {j + 1}: "
                                f"{target.warm[-1].seconds:.2f}s")
                shutil.rmtree(workdir, ignore_errors=True)

        # (d) N concurrent cold pulls, fresh instance each
        for target, make in factories:
            workdir = tmp / f"{target.name}-concurrent"
            with running(make(workdir)) as server:
                reg.clear_requests()
                wall, each = puller.concurrent(server.ref(), args.concurrency)
                settle_counts(reg)
                target.conc_wall, target.conc_each = wall, each
                target.conc_gets = blob_gets(reg, digests)
                log(f"{target.name} {args.concurrency} concurrent cold pulls: {wall:.2f}s, "
                    f"upstream blob GETs {sorted(target.conc_gets.values())}")
            shutil.rmtree(workdir, ignore_errors=True)
        reg.clear_requests()
        wall, each = puller.concurrent(f"{reg.host}/{IMAGE_NAME}:{IMAGE_TAG}", args.concurrency)
        settle_counts(reg)
        direct.conc_wall, direct.conc_each = wall, each
        direct.conc_gets = blob_gets(reg, digests)

    report(args, puller, [direct, raw, vault, dist], vault_cold_log)


def report(args: argparse.Namespace, puller: Puller, targets: list[Target],
           vault_cold_log: list[str]) -> None:
    direct, raw, vault, dist = targets
    n = args.concurrency
    mib = puller.total_bytes / MiB

    def gets(counts: dict[str, int]) -> str:
        return "-" if not counts else f"{max(counts.values())} (total {sum(counts.values())})"

    def cpu(pulls: list[Pull], name: str) -> str:
        values = [p.cpu[name] for p in pulls if name in p.cpu]
        return "-" if not values else f"{statistics.median(values):.2f}"

    rows = []
    for t in targets:
        cold, warm = best(t.cold), best(t.warm)
        rows.append([
            t.name, fmt_s(cold), f"{mib / cold:.0f}" if cold else "-", fmt_s(warm),
            f"{mib / warm:.0f}" if warm else "-",
            cpu(t.cold, t.name) if t.name in ("vault", "distproxy") else "-",
            cpu(t.warm, t.name) if t.name in ("vault", "distproxy") else "-",
            gets(t.single_gets), fmt_s(t.conc_wall),
            fmt_s(max(t.conc_each)) if t.conc_each else "-", gets(t.conc_gets)])
    print_table(["target", "cold s", "MiB/s", "warm s", "MiB/s", "cpu cold", "cpu warm",
                 "GETs/blob 1 pull", f"{n}x cold wall s", f"{n}x slowest s",
                 f"GETs/blob {n}x cold (max)"], rows,
                title=f"skopeo copy of {mib:.0f} MiB, best of {args.rounds} "
                      f"(direct has no cache: its 'cold' is every pull)")
    print("  cpu: median CPU seconds of the server process per pull (vault: the Python process;"
          " distproxy: docker-registry)")
    print("  direct: through the fixtures' counting proxy (the same hop Vault and distproxy use);"
          " direct-raw: the registry port itself")

    ratios = []
    wv, wd = best(vault.warm), best(dist.warm)
    cv, cd = best(vault.cold), best(direct.cold)
    if wv and wd:
        ratios.append(["warm vault / warm distproxy", f"{wv / wd:.2f}", "<= 1.0",
                       "ok" if wv / wd <= 1.0 else "MISSED"])
    if cv and cd:
        ratios.append(["cold vault / direct", f"{cv / cd:.2f}", "<= 1.10",
                       "ok" if cv / cd <= 1.10 else "MISSED"])
    cdp = best(dist.cold)
    if cdp and cd:
        ratios.append(["cold distproxy / direct", f"{cdp / cd:.2f}", "(reference)", ""])
    if vault.conc_gets:
        worst = max(vault.conc_gets.values())
        ratios.append([f"vault upstream GETs per blob, {n}x cold", str(worst), "== 1",
                       "ok" if all(v == 1 for v in vault.conc_gets.values()) else "MISSED"])
    if dist.conc_gets:
        ratios.append([f"distproxy upstream GETs per blob, {n}x cold",
                       str(max(dist.conc_gets.values())), "(reference)", ""])
    print_table(["ratio", "value", "target", ""], ratios, title="targets")

    print(f"\n== vault access log, last cold pull ({len(vault_cold_log)} requests) ==")
    pattern = re.compile(r"\] (\S+) (\S+) (\d+) (\d+)B ([\d.]+)s cache=(\S+) upstream=([\d.]+)s")
    for line in vault_cold_log:
        m = pattern.search(line)
        if not m:
            continue
        method, path, status, size, secs, cache, upstream = m.groups()
        path = re.sub(r"sha256:([0-9a-f]{12})[0-9a-f]+", r"sha256:\1", path)
        print(f"  {method:4} {path:48} {status} {int(size) / MiB:7.2f} MiB {float(secs):6.3f}s "
              f"cache={cache:<11} upstream-answer={float(upstream):.3f}s")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="best of N (default 3)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--layer-mib", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--threads", type=int, default=32, help="Vault's waitress threads")
    parser.add_argument("--time-limit", type=int, default=1200, help="seconds, whole script")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (prints it)")
    args = parser.parse_args()
    guard(args.time_limit)
    print(environment())
    with temp_dir("registry-compare-") as tmp:
        try:
            run(args, tmp)
        finally:
            if args.keep:
                kept = Path(str(tmp) + "-kept")
                shutil.copytree(tmp, kept, ignore=shutil.ignore_patterns("pull-*", "storage",
                                                                         "blobs"))
                print(f"logs and configs kept in {kept}")


if __name__ == "__main__":
    main()
