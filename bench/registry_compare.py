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

Measured, in one run (rounds interleaved target by target, so that load from elsewhere on
the machine hits every target alike):

    (a) direct   pulls from the counting proxy ("direct") and from the registry port itself
                 ("direct-raw": the counting proxy's own cost is the difference); best of N
    (b, c) cold  vault / distproxy each started anew on an empty cache, one pull; best of N
           warm  more pulls from the last round's instances (fresh destination each); best of N
                 Also: the server's CPU seconds per pull, and how many requests reached the
                 upstream during one cold and one warm pull (and blob GETs per blob)
    (d) 8x cold  8 concurrent pulls against a fresh instance (fresh cache): wall time, and
                 upstream GETs per blob from the counting proxy (target for Vault: exactly 1)
    (e) blobs    each 20 MiB layer GET once with curl from a fresh instance (cold), then again
                 (warm): the servers' own streaming speed, without skopeo's costs

Ratios printed at the end (targets in brackets): warm Vault / warm distproxy [<= 1.0] and cold
Vault / direct [<= 1.10]; then Vault's access-log lines of its last cold pull as a timeline
(when each request started and ended, from skopeo's start), to show where its time goes.

    .venv/bin/python bench/registry_compare.py              # ~2-4 minutes
    .venv/bin/python bench/registry_compare.py --rounds 5 --concurrency 8 --keep
    .venv/bin/python bench/registry_compare.py --rounds 5 --pin

--pin gives the proxy under test (Vault, distproxy) the last CPU and keeps skopeo, the
upstream registry and the counting proxy on the others (see common.pin_proxy); unpinned,
everything shares every CPU, as it would on one small machine.

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
    curl_get,
    environment,
    guard,
    pin_proxy,
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

    def __init__(self, upstream_url: str, workdir: Path, threads: int = 32,
                 cpus: set[int] | None = None) -> None:
        self.upstream_url = upstream_url
        self.workdir = workdir
        self.threads = threads
        self.cpus = cpus
        self.cache_dir = workdir / "cache"
        self.log_path = workdir / "vault.log"
        self.proc: subprocess.Popen | None = None
        self.url = ""

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")

    @property
    def data_dir(self) -> Path:
        return self.cache_dir

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
                              cpus=self.cpus, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=f, cwd=self.workdir,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
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

    def __init__(self, remote_url: str, workdir: Path, cpus: set[int] | None = None) -> None:
        self.remote_url = remote_url
        self.workdir = workdir
        self.cpus = cpus
        self.storage = workdir / "storage"
        self.log_path = workdir / "registry.log"
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def host(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.storage

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
                self.proc = popen([REGISTRY_BIN, "serve", str(config_path)], cpus=self.cpus,
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
    started_at: float = 0.0  # time.time() when skopeo was started
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
        started_at = time.time()
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
        return Pull(seconds, started_at, cpu)

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


def curl_ms(url: str, size: int) -> float:
    """Milliseconds for one GET of ``url`` with curl (body to /dev/null), checked."""
    got = curl_get(url, max_time=120)
    if got.status != 200 or got.size != size or got.exit_code != 0:
        raise RuntimeError(f"GET {url}: status {got.status}, {got.size} bytes, "
                           f"curl exit {got.exit_code}")
    return got.seconds * 1000


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
    cold_upstream: int | None = None  # upstream requests of one cold pull (all kinds)
    warm_upstream: list[int] = field(default_factory=list)  # the same, per warm pull
    blob_cold_ms: list[float] = field(default_factory=list)  # curl GET of one layer blob
    blob_warm_ms: list[float] = field(default_factory=list)


def best(pulls: list[Pull]) -> float | None:
    return min(p.seconds for p in pulls) if pulls else None


def fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def run(args: argparse.Namespace, tmp: Path) -> None:
    require_tools(REGISTRY_BIN, "skopeo")
    proxy_cpus = pin_proxy() if args.pin else None
    if args.pin:
        print(f"pinned: proxies on CPU {proxy_cpus}, skopeo and the upstream on "
              f"{os.sched_getaffinity(0)}")
    log(f"building the image: {args.layers} x {args.layer_mib} MiB layers")
    build_big_image(tmp / "img", args.layers, args.layer_mib * MiB)
    with contextlib.ExitStack() as stack:
        reg = start_registry(tmp / "upstream")
        stack.callback(reg.close)
        if reg.proxy is not None:  # skopeo's TLS probe makes it log a traceback per pull
            reg.proxy.server.handle_error = lambda *_: None  # type: ignore[method-assign]
        log(f"upstream registry on {reg.backend_host}, counting proxy on {reg.host}; pushing")
        pushed = push(tmp / "img", f"{IMAGE_NAME}:{IMAGE_TAG}", reg)
        shutil.rmtree(tmp / "img")
        puller = Puller(pushed, tmp / "pulls")
        digests = pushed.blob_digests
        print(f"image {IMAGE_NAME}:{IMAGE_TAG}: {len(digests)} blobs (config + "
              f"{len(digests) - 1} layers), {puller.total_bytes / MiB:.1f} MiB compressed, "
              f"manifest {pushed.digest[:19]}...")

        # (a) direct, (b) Vault and (c) distribution's proxy, interleaved round by round so
        # that load from elsewhere on the machine hits every target alike. Cold: a fresh
        # instance on an empty cache. Warm: more pulls from the last round's instances.
        direct, raw = Target("direct"), Target("direct-raw")
        vault, dist = Target("vault"), Target("distproxy")
        vault_cold_log: tuple[Pull, list[str]] | None = None
        factories: list[tuple[Target, Callable[[Path], VaultProc | DistProxy]]] = [
            (vault, lambda d: VaultProc(reg.url, d, threads=args.threads, cpus=proxy_cpus)),
            (dist, lambda d: DistProxy(reg.url, d, cpus=proxy_cpus)),
        ]
        live: dict[str, VaultProc | DistProxy] = {}

        def stop_live() -> None:
            for server in live.values():
                server.stop()
                shutil.rmtree(server.data_dir, ignore_errors=True)  # logs stay (--keep)
            live.clear()

        stack.callback(stop_live)
        for i in range(args.rounds):
            reg.clear_requests()
            direct.cold.append(puller.pull(f"{reg.host}/{IMAGE_NAME}:{IMAGE_TAG}"))
            settle_counts(reg, quiet=0.5)
            if i == 0:
                direct.single_gets = blob_gets(reg, digests)
                direct.cold_upstream = len(reg.log)
            raw.cold.append(puller.pull(f"{reg.backend_host}/{IMAGE_NAME}:{IMAGE_TAG}"))
            log(f"direct round {i + 1}: {direct.cold[-1].seconds:.2f}s via the counting proxy, "
                f"{raw.cold[-1].seconds:.2f}s straight")
            stop_live()
            for target, make in factories:
                server = make(tmp / f"{target.name}-cold-{i}").start()
                live[target.name] = server
                watch = {target.name: server.pid}
                reg.clear_requests()
                target.cold.append(puller.pull(server.ref(), watch))
                settle_counts(reg)
                if i == 0:
                    target.single_gets = blob_gets(reg, digests)
                    target.cold_upstream = len(reg.log)
                if isinstance(server, VaultProc):
                    vault_cold_log = (target.cold[-1], server.access_lines())
                log(f"{target.name} cold round {i + 1}: {target.cold[-1].seconds:.2f}s, "
                    f"upstream blob GETs {sorted(blob_gets(reg, digests).values())}")
        for j in range(args.rounds):
            for target, _make in factories:
                server = live[target.name]
                watch = {target.name: server.pid}
                reg.clear_requests()
                target.warm.append(puller.pull(server.ref(), watch))
                settle_counts(reg, quiet=0.3)
                target.warm_upstream.append(len(reg.log))
                log(f"{target.name} warm round {j + 1}: {target.warm[-1].seconds:.2f}s")
        stop_live()

        # (d) N concurrent cold pulls, fresh instance each
        for target, make in factories:
            with running(make(tmp / f"{target.name}-concurrent")) as server:
                reg.clear_requests()
                wall, each = puller.concurrent(server.ref(), args.concurrency)
                settle_counts(reg)
                target.conc_wall, target.conc_each = wall, each
                target.conc_gets = blob_gets(reg, digests)
                log(f"{target.name} {args.concurrency} concurrent cold pulls: {wall:.2f}s, "
                    f"upstream blob GETs {sorted(target.conc_gets.values())}")
            shutil.rmtree(server.data_dir, ignore_errors=True)
        reg.clear_requests()
        wall, each = puller.concurrent(f"{reg.host}/{IMAGE_NAME}:{IMAGE_TAG}", args.concurrency)
        settle_counts(reg)
        direct.conc_wall, direct.conc_each = wall, each
        direct.conc_gets = blob_gets(reg, digests)

        # (e) the servers alone, without skopeo: each layer blob GET once with curl (cold), then
        # again (warm), on a fresh instance; interleaved, repeated for every round
        layers = json.loads(pushed.manifest)["layers"]
        for i in range(args.rounds):
            for layer in layers:
                direct.blob_cold_ms.append(curl_ms(
                    f"{reg.url}/v2/{IMAGE_NAME}/blobs/{layer['digest']}", layer["size"]))
                raw.blob_cold_ms.append(curl_ms(
                    f"{reg.backend_url}/v2/{IMAGE_NAME}/blobs/{layer['digest']}", layer["size"]))
            for target, make in factories:
                with running(make(tmp / f"{target.name}-blobs-{i}")) as server:
                    base = (f"http://{server.host}/v2/"
                            f"{'hub/' if isinstance(server, VaultProc) else ''}{IMAGE_NAME}")
                    for layer in layers:
                        url = f"{base}/blobs/{layer['digest']}"
                        target.blob_cold_ms.append(curl_ms(url, layer["size"]))
                        settle_counts(reg, quiet=0.3)  # distproxy: its background store
                        target.blob_warm_ms.append(curl_ms(url, layer["size"]))
                shutil.rmtree(server.data_dir, ignore_errors=True)
        log("single-blob GETs done")

    report(args, puller, [direct, raw, vault, dist], vault_cold_log)


def report(args: argparse.Namespace, puller: Puller, targets: list[Target],
           vault_cold_log: tuple[Pull, list[str]] | None) -> None:
    direct, raw, vault, dist = targets
    n = args.concurrency
    mib = puller.total_bytes / MiB

    def gets(counts: dict[str, int]) -> str:
        return "-" if not counts else f"{max(counts.values())} (total {sum(counts.values())})"

    def cpu(pulls: list[Pull], name: str) -> str:
        values = [p.cpu[name] for p in pulls if name in p.cpu]
        return "-" if not values else f"{statistics.median(values):.2f}"

    def ms(values: list[float]) -> str:
        return "-" if not values else f"{statistics.median(values):.0f} / {min(values):.0f}"

    def reqs(values: list[int] | int | None) -> str:
        if values is None or values == []:
            return "-"
        return str(values) if isinstance(values, int) else str(max(values))

    servers = ("vault", "distproxy")
    rows = []
    for t in targets:
        cold, warm = best(t.cold), best(t.warm)
        rows.append([
            t.name, fmt_s(cold), f"{mib / cold:.0f}" if cold else "-", fmt_s(warm),
            f"{mib / warm:.0f}" if warm else "-",
            cpu(t.cold, t.name) if t.name in servers else "-",
            cpu(t.warm, t.name) if t.name in servers else "-",
            reqs(t.cold_upstream), reqs(t.warm_upstream), gets(t.single_gets)])
    print_table(["target", "cold s", "MiB/s", "warm s", "MiB/s", "cpu cold", "cpu warm",
                 "upstream reqs cold", "warm", "GETs/blob (max)"], rows,
                title=f"(a-c) skopeo copy of {mib:.0f} MiB, best of {args.rounds} "
                      "(direct has no cache: every pull is 'cold')")
    print("  cpu: median CPU seconds of the server process per pull (vault: its Python process;"
          " distproxy: its docker-registry)")
    print("  upstream reqs: requests that reached the counting proxy during one pull (cold: the"
          " first round; warm: the most of any round)")
    print("  direct: through the fixtures' counting proxy (the same hop Vault and distproxy use);"
          " direct-raw: the registry port itself")

    rows = [[t.name, fmt_s(t.conc_wall), fmt_s(max(t.conc_each)) if t.conc_each else "-",
             fmt_s(min(t.conc_each)) if t.conc_each else "-", gets(t.conc_gets)]
            for t in (direct, vault, dist)]
    print_table(["target", "wall s", "slowest s", "fastest s", "upstream GETs/blob max (total)"],
                rows, title=f"(d) {n} concurrent cold pulls (fresh cache), one run")

    rows = [[t.name, ms(t.blob_cold_ms), ms(t.blob_warm_ms)] for t in targets]
    blob_mib = (puller.total_bytes - min(puller.sizes.values())) / (len(puller.sizes) - 1) / MiB
    print_table(["target", "cold ms median / min", "warm ms median / min"], rows,
                title=f"(e) one {blob_mib:.0f} MiB layer blob GET with curl, no skopeo "
                      f"({len(puller.sizes) - 1} layers x {args.rounds} rounds)")

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

    if vault_cold_log is not None:
        print_timeline(*vault_cold_log)
    sys.stdout.flush()


def print_timeline(pull: Pull, lines: list[str]) -> None:
    """Vault's access-log lines of one pull, as offsets from the moment skopeo was started:
    when each request reached the app, when its last byte was handed to waitress."""
    pattern = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) .*\] (\S+) (\S+) "
                         r"(\d+) (\d+)B ([\d.]+)s cache=(\S+) upstream=([\d.]+)s")
    print(f"\n== vault access log of its last cold pull (skopeo took {pull.seconds:.3f}s; "
          "times in s from skopeo's start) ==")
    print(f"  {'start':>6} {'end':>6}  request")
    for line in lines:
        m = pattern.match(line)
        if not m:
            continue
        stamp, ms, method, path, status, size, secs, cache, upstream = m.groups()
        end = time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(ms) / 1000
        end -= pull.started_at
        if end < -1 or end > pull.seconds + 1:
            continue  # not this pull's (the /health probe of the start-up)
        path = re.sub(r"sha256:([0-9a-f]{12})[0-9a-f]+", r"sha256:\1", path)
        print(f"  {end - float(secs):6.3f} {end:6.3f}  {method:4} {path:46} {status} "
              f"{int(size) / MiB:6.2f} MiB cache={cache:<4} upstream-answer={float(upstream):.3f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="best of N (default 3)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--layer-mib", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--threads", type=int, default=32, help="Vault's waitress threads")
    parser.add_argument("--time-limit", type=int, default=1200, help="seconds, whole script")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (prints it)")
    parser.add_argument("--pin", action="store_true",
                        help="the proxy under test on a CPU of its own (see the docstring)")
    args = parser.parse_args()
    guard(args.time_limit)
    print(environment())
    with temp_dir("registry-compare-") as tmp:
        try:
            run(args, tmp)
        finally:
            if args.keep:
                kept = Path(str(tmp) + "-kept")
                shutil.copytree(tmp, kept, ignore=shutil.ignore_patterns(
                    "pull-*", "storage", "cache", "img"))
                print(f"logs and configs kept in {kept}")


if __name__ == "__main__":
    main()
