#!/usr/bin/env python3
"""pip and uv through Vault's pypi backend, proxpi, devpi-server and straight from PyPI.

For the fixed requirements list bench/pypi_requirements.txt (29 pinned packages, large binary
wheels among them) this times, for each target and client, COLD runs (the proxy has just
been started on an empty cache) and WARM runs (the same proxy again, after its background
downloads have finished), then measures cache-hit index pages per second with wrk. The cold
runs go round by round: in each, every client against every target in turn, so that the
network's swings hit them alike (run one target after another, the direct runs and Vault's
were minutes apart, and their ratio moved with the network).

    pip   python -m pip --isolated --disable-pip-version-check --no-cache-dir
              download -d DIR -r REQS --index-url URL
    uv    uv venv (untimed), then uv pip install --no-cache -p VENV/bin/python -r REQS
              --index-url URL          (UV_NO_CONFIG=1, UV_CACHE_DIR in the temp dir)
    wrk   wrk -c16 -t2 -d10s on the warm project page of numpy, with a PEP 691 JSON Accept
          header and with Accept: text/html (proxpi answers 406 to a request with no Accept);
          also the median of 5 sequential GETs of that page ("1 GET ms")

Targets:
    vault   .venv/bin/python main.py --config CFG (one pypi backend at /pypi/, upstream
            https://pypi.org/simple/, default threads), on a free port, with public_url set
            to it as the README recommends (pages link files by absolute URL)
    proxpi  gunicorn --preload --threads 32 proxpi.server:app (its Docker image runs gunicorn;
            its README says threads, not processes); index at /index/
    devpi   devpi-init, then devpi-server --request-timeout 60 (else defaults: 50 threads);
            index at /root/pypi/+simple/. Its default upstream timeout of 5 s made it answer
            "project does not exist" to uv's 29 concurrent cold page requests
    direct  https://pypi.org/simple/ itself (cold only: without a cache warm is the same)

proxpi and devpi-server (and gunicorn, py-spy) are installed from PyPI into a venv of their
own in the temp dir (or --bench-venv DIR, reused if it already has them), never into .venv.
Each cold run starts its server anew on an empty cache, so each (target, client) pair costs
one full download of the set (~90 MB) from PyPI. Every server listens on 127.0.0.1 only, runs
in its own process group and is stopped at the end, also on error, Ctrl-C, SIGTERM or the
time limit; the temp dir is removed unless --keep.

    .venv/bin/python bench/pypi_compare.py                 # everything (~15-30 min)
    .venv/bin/python bench/pypi_compare.py --targets vault,direct --clients uv --warm-rounds 3
    .venv/bin/python bench/pypi_compare.py --py-spy --out /tmp/pypi-compare   # + profiles

--py-spy adds an untimed pass at the end: a fresh Vault, each client cold and warm and the wrk
JSON load, each under `py-spy record` (it slows Vault down a lot, so the timed runs are never
profiled); it prints the functions with the most samples.

--pin gives the proxy under test (Vault, proxpi, devpi) the last CPU and keeps pip and uv on
the others (see common.pin_proxy); unpinned, they share every CPU, as on one small machine.

Ratios printed at the end (targets in brackets): warm Vault / best of proxpi and devpi [<= 1.0],
cold Vault / direct [<= 1.10], Vault wrk req/s / best other [>= 2.0]. Vault's upstream
requests per phase come from its access log (cache=MISS lines) and its /metrics.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    BenchTimeout,
    _pdeathsig,
    free_port,
    guard,
    pin_proxy,
    print_table,
)

_VENV_PY = ROOT / ".venv" / "bin" / "python"
PYTHON = str(_VENV_PY) if _VENV_PY.exists() else sys.executable
UV = str(Path(PYTHON).parent / "uv") if (Path(PYTHON).parent / "uv").exists() else "uv"
REQS = ROOT / "bench" / "pypi_requirements.txt"
PYPI = "https://pypi.org/simple/"
HOST = "127.0.0.1"
JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"
PAGE_PROJECT = "numpy"
CLIENT_TIMEOUT = 900
CLIENT_HTTP_TIMEOUT: int | None = None  # --client-timeout: pip --timeout, UV_HTTP_TIMEOUT
PROXY_CPUS: set[int] | None = None  # --pin: the CPU the proxies under test run on


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def local_get(port: int, path: str, headers: dict[str, str] | None = None,
              timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
    """One GET to 127.0.0.1:port (http.client: no proxy settings are ever consulted)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def dir_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


# -- the servers ------------------------------------------------------------------------------

def _pinned() -> None:
    _pdeathsig()
    if PROXY_CPUS:
        os.sched_setaffinity(0, PROXY_CPUS)


class Server:
    """A proxy under test, in a process group of its own, with its log in ``self.log_path``."""

    name = "?"
    index_path = "/"
    page_fmt = "/{}/"

    def __init__(self, work: Path, bench_bin: Path | None) -> None:
        self.work = work
        self.bench_bin = bench_bin
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log_path = work / f"{self.name}.log"

    @property
    def index_url(self) -> str:
        return f"http://{HOST}:{self.port}{self.index_path}"

    def page_path(self, project: str) -> str:
        return self.index_path + self.page_fmt.format(project).lstrip("/")

    def _spawn(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(list(args), stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.work, env=env,
                                         start_new_session=True, preexec_fn=_pinned)

    def _wait_http(self, path: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; log:\n"
                                   + self.log_tail())
            with contextlib.suppress(OSError, http.client.HTTPException):
                if local_get(self.port, path, timeout=5)[0] == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer {path} within {seconds}s; log:\n"
                           + self.log_tail())

    def log_tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""

    def start(self) -> None:
        raise NotImplementedError

    def cache_dir(self) -> Path:
        raise NotImplementedError

    def settle(self, limit: float = 180) -> float:
        """Wait until background downloads are done: the cache stops growing for 3 s."""
        t0 = time.monotonic()
        last, still_since = -1, time.monotonic()
        while time.monotonic() - t0 < limit:
            size = dir_bytes(self.cache_dir())
            if size != last:
                last, still_since = size, time.monotonic()
            elif time.monotonic() - still_since >= 3:
                break
            time.sleep(0.5)
        return time.monotonic() - t0

    def stop(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # its own group: the server and its workers
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        else:  # the leader is gone; make sure no worker of its group is left
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


class Vault(Server):
    name = "vault"
    index_path = "/pypi/simple/"
    _LISTEN = re.compile(r"listening on http://([0-9.]+):(\d+)/")

    def cache_dir(self) -> Path:
        return self.work / "vault-cache"

    def start(self) -> None:
        self.cache_dir().mkdir(parents=True, exist_ok=True)
        cfg = self.work / "vault.yml"
        port = free_port()  # known up front: public_url names it
        cfg.write_text(
            f"http_host: {HOST}\nhttp_port: {port}\npublic_url: http://{HOST}:{port}\n"
            f"cache_dir: {self.cache_dir()}\nlog_level: INFO\n"
            "backends:\n  - type: pypi\n    config:\n      prefix: /pypi/\n"
            f"      base_url: {PYPI}\n")
        self.log_path.write_bytes(b"")
        self._spawn([PYTHON, str(ROOT / "main.py"), "--config", str(cfg)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = self._LISTEN.search(self.log_path.read_text(errors="replace"))
            if m:
                self.port = int(m.group(2))
                return
            if self.proc and self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"vault did not start; log:\n{self.log_tail()}")

    def metrics(self) -> dict[str, float]:
        """Totals of a few /metrics series, summed over their labels."""
        _, _, body = local_get(self.port, "/metrics", timeout=10)
        out: dict[str, float] = collections.defaultdict(float)
        for line in body.decode().splitlines():
            m = re.match(r"^(vault_\w+?)(?:\{[^}]*\})? ([0-9.e+-]+)$", line)
            if m:
                out[m.group(1)] += float(m.group(2))
        return out

    def settle(self, limit: float = 180) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            if self.metrics().get("vault_fills_in_progress", 0) == 0:
                break
            time.sleep(0.25)
        return time.monotonic() - t0

    def log_offset(self) -> int:
        return self.log_path.stat().st_size

    def access_counts(self, since: int) -> collections.Counter:
        """cache=STATUS counts of the access log lines written after byte ``since``."""
        with open(self.log_path, "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        return collections.Counter(re.findall(r" cache=(\S+) upstream=", text))


class Proxpi(Server):
    name = "proxpi"
    index_path = "/index/"

    def cache_dir(self) -> Path:
        return self.work / "proxpi-cache"

    def start(self) -> None:
        assert self.bench_bin is not None
        self.cache_dir().mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        env = {**os.environ, "PROXPI_INDEX_URL": PYPI, "PROXPI_CACHE_DIR": str(self.cache_dir()),
               "PROXPI_CACHE_SIZE": str(4 * 1024 ** 3), "NO_COLOR": "1"}
        if os.path.exists(SYSTEM_CA):
            env.setdefault("REQUESTS_CA_BUNDLE", SYSTEM_CA)
        self._spawn([str(self.bench_bin / "gunicorn"), "--preload", "--threads", "32",
                     "--bind", f"{HOST}:{self.port}", "--timeout", "300",
                     "proxpi.server:app"], env)
        self._wait_http("/health", 60)


class Devpi(Server):
    name = "devpi"
    index_path = "/root/pypi/+simple/"

    def cache_dir(self) -> Path:
        return self.work / "devpi-server"

    def start(self) -> None:
        assert self.bench_bin is not None
        env = dict(os.environ)
        if os.path.exists(SYSTEM_CA):
            env.setdefault("REQUESTS_CA_BUNDLE", SYSTEM_CA)
            env.setdefault("SSL_CERT_FILE", SYSTEM_CA)
        subprocess.run([str(self.bench_bin / "devpi-init"), "--serverdir", str(self.cache_dir())],
                       check=True, capture_output=True, env=env, timeout=120,
                       preexec_fn=_pdeathsig)
        self.port = free_port()
        self._spawn([str(self.bench_bin / "devpi-server"), "--serverdir", str(self.cache_dir()),
                     "--host", HOST, "--port", str(self.port), "--request-timeout", "60"], env)
        self._wait_http("/+api", 90)


class Direct(Server):
    name = "direct"

    @property
    def index_url(self) -> str:
        return PYPI

    def start(self) -> None:
        pass

    def settle(self, limit: float = 0) -> float:
        return 0.0


TARGETS = {"vault": Vault, "proxpi": Proxpi, "devpi": Devpi, "direct": Direct}


# -- the clients ------------------------------------------------------------------------------

def client_env(work: Path) -> dict[str, str]:
    """This machine's environment less every pip/uv/proxy setting (the CA file stays)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "UV_")) and "proxy" not in k.lower()}
    env.update(UV_NO_CONFIG="1", UV_CACHE_DIR=str(work / "uv-cache"),
               UV_PYTHON_DOWNLOADS="never", PIP_CONFIG_FILE=os.devnull)
    if CLIENT_HTTP_TIMEOUT:
        env["UV_HTTP_TIMEOUT"] = str(CLIENT_HTTP_TIMEOUT)
    if os.path.exists(SYSTEM_CA):
        env.setdefault("SSL_CERT_FILE", SYSTEM_CA)
    return env


@dataclass
class Run:
    seconds: float | None = None
    ok: bool = False
    note: str = ""
    access: collections.Counter = field(default_factory=collections.Counter)
    upstream_requests: float | None = None
    upstream_mb: float | None = None
    settle: float = 0.0


def expected_count() -> int:
    return sum(1 for line in REQS.read_text().splitlines()
               if line.strip() and not line.lstrip().startswith("#"))


def run_client(client: str, index_url: str, work: Path) -> Run:
    """One timed client run into fresh dirs of its own; the dirs are removed afterwards."""
    env = client_env(work)
    scratch = Path(tempfile.mkdtemp(prefix=f"{client}-", dir=work))
    try:
        if client == "pip":
            args = [PYTHON, "-m", "pip", "--isolated", "--disable-pip-version-check",
                    "--no-cache-dir", "download", "-d", str(scratch / "dl"), "-r", str(REQS),
                    "--index-url", index_url, "--progress-bar", "off"]
            if CLIENT_HTTP_TIMEOUT:
                args += ["--timeout", str(CLIENT_HTTP_TIMEOUT)]
        else:
            subprocess.run([UV, "venv", "-q", "-p", PYTHON, str(scratch / "venv")], env=env,
                           check=True, capture_output=True, timeout=120, preexec_fn=_pdeathsig)
            args = [UV, "pip", "install", "--no-cache", "-p", str(scratch / "venv/bin/python"),
                    "-r", str(REQS), "--index-url", index_url]
        shutil.rmtree(env["UV_CACHE_DIR"], ignore_errors=True)
        t0 = time.perf_counter()
        try:
            res = subprocess.run(args, env=env, cwd=scratch, capture_output=True, text=True,
                                 timeout=CLIENT_TIMEOUT, preexec_fn=_pdeathsig)
        except subprocess.TimeoutExpired:
            return Run(note=f"timed out after {CLIENT_TIMEOUT}s")
        seconds = time.perf_counter() - t0
        want = expected_count()
        if res.returncode != 0:
            tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
            return Run(seconds, note=f"exit {res.returncode}: " + " | ".join(tail)[:300])
        if client == "pip":
            got = len([p for p in (scratch / "dl").iterdir() if p.suffix == ".whl"])
            sdists = len(list((scratch / "dl").iterdir())) - got
            ok = got == want and sdists == 0
            note = f"{got} wheels" + (f", {sdists} other files" if sdists else "")
        else:
            m = re.search(r"Installed (\d+) packages?", res.stderr)
            got = int(m.group(1)) if m else 0
            ok = got == want
            note = f"{got} installed"
        return Run(seconds, ok, note)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# -- wrk and py-spy ---------------------------------------------------------------------------

@dataclass
class WrkResult:
    rps: float | None = None
    latency: str = ""
    errors: str = ""
    single_ms: float | None = None
    content_type: str = ""
    body_bytes: int = 0
    note: str = ""


def _wrk(url: str, header: str | None, seconds: int) -> tuple[float | None, str, str, str]:
    args = ["wrk", "-c16", "-t2", f"-d{seconds}s", "--timeout", "10s"]
    if header:
        args += ["-H", header]
    res = subprocess.run([*args, url], capture_output=True, text=True, timeout=seconds + 60,
                         preexec_fn=_pdeathsig)
    out = res.stdout
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    lat = re.search(r"Latency\s+(\S+)", out)
    errs = []
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errs.append(f"non2xx={m.group(1)}")
    if m := re.search(r"Socket errors: (.*)", out):
        errs.append(m.group(1).replace(" ", ""))
    return (float(rps.group(1)) if rps else None, lat.group(1) if lat else "",
            ",".join(errs), out if not rps else "")


def wrk_page(server: Server, accept: str | None, seconds: int,
             profile_to: Path | None = None, bench_bin: Path | None = None) -> WrkResult:
    path = server.page_path(PAGE_PROJECT)
    headers = {"Accept": accept} if accept else {}
    for _ in range(2):  # make sure the page is cached (and rendered) before measuring
        status, hdrs, body = local_get(server.port, path, headers)
    if status != 200:
        return WrkResult(note=f"GET {path} gave {status}")
    singles = []
    for _ in range(5):
        t0 = time.perf_counter()
        local_get(server.port, path, headers)
        singles.append(time.perf_counter() - t0)
    result = WrkResult(content_type=hdrs.get("content-type", "").split(";")[0],
                       body_bytes=len(body), single_ms=1000 * statistics.median(singles))
    spy = None
    if profile_to is not None and bench_bin is not None:
        spy = start_py_spy(bench_bin, server.pid, max(1, seconds - 2), profile_to)
    try:
        rps, lat, errs, raw = _wrk(f"http://{HOST}:{server.port}{path}",
                                   f"Accept: {accept}" if accept else None, seconds)
    finally:
        if spy is not None:
            finish_py_spy(spy)
    result.rps, result.latency, result.errors = rps, lat, errs
    if rps is None:
        result.note = "wrk printed no Requests/sec: " + raw[-200:]
    return result


def start_py_spy(bench_bin: Path, pid: int, seconds: int, out: Path) -> subprocess.Popen | None:
    exe = bench_bin / "py-spy"
    if not exe.exists():
        return None
    return subprocess.Popen([str(exe), "record", "--pid", str(pid), "--duration", str(seconds),
                             "--rate", "200", "--format", "raw", "--output", str(out),
                             "--nonblocking"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, preexec_fn=_pdeathsig)


def finish_py_spy(proc: subprocess.Popen) -> None:
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait(10)


def summarize_profile(path: Path, top: int = 15) -> str:
    """Self and inclusive sample shares per function from a py-spy raw (collapsed) file."""
    if not path.exists():
        return f"  (no profile at {path})"
    own: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    if not total:
        return "  (empty profile)"
    lines = [f"  {total} samples (non-idle threads)", "  self%  function"]
    lines += [f"  {100 * c / total:5.1f}  {f}" for f, c in own.most_common(top)]
    lines += ["  incl%  function (frames from artifact_vault, waitress, urllib3, ssl, socket)"]
    keep = [(f, c) for f, c in incl.most_common()
            if re.search(r"artifact_vault|waitress|urllib3|ssl|socket|http", f)]
    lines += [f"  {100 * c / total:5.1f}  {f}" for f, c in keep[:top]]
    return "\n".join(lines)


# -- the bench venv ---------------------------------------------------------------------------

def bench_venv(where: Path, want_spy: bool) -> Path:
    """A venv with proxpi, devpi-server and gunicorn (and py-spy) from PyPI; returns its bin/."""
    bin_dir = where / "bin"
    needed = ["gunicorn", "devpi-server", "devpi-init"] + (["py-spy"] if want_spy else [])
    have_proxpi = bin_dir.exists() and subprocess.run(
        [str(bin_dir / "python"), "-c", "import proxpi"], capture_output=True).returncode == 0
    if have_proxpi and all((bin_dir / n).exists() for n in needed):
        return bin_dir
    if not bin_dir.exists():
        log(f"creating the bench venv {where}")
        subprocess.run([sys.executable if not os.path.exists("/usr/bin/python3")
                        else "/usr/bin/python3", "-m", "venv", str(where)], check=True)
    pkgs = ["proxpi", "devpi-server", "gunicorn"] + (["py-spy"] if want_spy else [])
    log(f"installing {' '.join(pkgs)} into it")
    subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q",
                    "--disable-pip-version-check", *pkgs], check=True, timeout=900)
    return bin_dir


# -- the benchmark ----------------------------------------------------------------------------

@dataclass
class Cell:
    cold: list[Run] = field(default_factory=list)
    warm: list[Run] = field(default_factory=list)


def best(runs: list[Run], how: str) -> float | None:
    times = [r.seconds for r in runs if r.ok and r.seconds is not None]
    if not times:
        return None
    return min(times) if how == "min" else statistics.median(times)


def fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def bench_round(name: str, client: str, last_client: bool, cold_round: int,
                args: argparse.Namespace, work: Path, bench_bin: Path | None,
                cells: dict[tuple[str, str], Cell], wrks: dict[tuple[str, str], WrkResult]
                ) -> None:
    """One cold run of ``client`` against a fresh ``name``; in the first round also its warm
    runs, and after the last client wrk."""
    cell = cells.setdefault((name, client), Cell())
    tdir = work / f"{name}-{client}-{cold_round}"
    tdir.mkdir()
    server = TARGETS[name](tdir, bench_bin)
    try:
        log(f"{name}: starting for {client} cold round {cold_round + 1}")
        server.start()
        vault = server if isinstance(server, Vault) else None
        phases = [("cold", 1)] + ([] if name == "direct" or cold_round
                                  else [("warm", args.warm_rounds)])
        for phase, count in phases:
            for i in range(count):
                off = vault.log_offset() if vault else 0
                m0 = vault.metrics() if vault else {}
                log(f"{name}: {client} {phase} run {i + 1}/{count}")
                run = run_client(client, server.index_url, work)
                run.settle = server.settle()
                if vault:
                    run.access = vault.access_counts(off)
                    m1 = vault.metrics()
                    run.upstream_requests = (
                        m1.get("vault_upstream_latency_seconds_count", 0)
                        - m0.get("vault_upstream_latency_seconds_count", 0))
                    run.upstream_mb = (m1.get("vault_upstream_bytes_total", 0)
                                       - m0.get("vault_upstream_bytes_total", 0)) / 2**20
                log(f"{name}: {client} {phase}: {fmt_s(run.seconds)}s ok={run.ok} "
                    f"{run.note} (settled in {run.settle:.1f}s)")
                (cell.cold if phase == "cold" else cell.warm).append(run)
        if name != "direct" and cold_round == 0 and last_client \
                and args.wrk_seconds > 0:
            for label, accept in (("json", JSON_ACCEPT), ("html", "text/html")):
                log(f"{name}: wrk {label} on {server.page_path(PAGE_PROJECT)}")
                try:
                    wrks[(name, label)] = wrk_page(server, accept, args.wrk_seconds)
                except Exception as exc:  # noqa: BLE001 - report and go on
                    wrks[(name, label)] = WrkResult(note=f"{type(exc).__name__}: {exc}")
    except (BenchTimeout, KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - one target failing must not hide the rest
        log(f"{name}: FAILED: {type(exc).__name__}: {exc}")
        cell.cold.append(Run(note=f"{type(exc).__name__}: {str(exc)[:300]}"))
    finally:
        dispose(server, tdir, args)


def dispose(server: Server, tdir: Path, args: argparse.Namespace) -> None:
    """Stop ``server``, keep its log (--out) and remove its directory."""
    server.stop()
    if args.out:
        with contextlib.suppress(OSError):
            shutil.copy(server.log_path, Path(args.out) / f"{tdir.name}.log")
    shutil.rmtree(tdir, ignore_errors=True)


def profile_pass(clients: list[str], args: argparse.Namespace, work: Path, bench_bin: Path,
                 profiles: dict[str, tuple[Path, str]]) -> None:
    """Untimed: a fresh Vault per client, cold and warm run and wrk JSON under py-spy."""
    for client in clients:
        tdir = work / f"profile-{client}"
        tdir.mkdir()
        vault = Vault(tdir, bench_bin)
        try:
            vault.start()
            for phase in ("cold", "warm"):
                prof = work / f"profile-vault-{client}-{phase}.raw"
                spy = start_py_spy(bench_bin, vault.pid, 900, prof)
                time.sleep(1)  # let py-spy attach
                log(f"py-spy pass: vault {client} {phase}")
                try:
                    run = run_client(client, vault.index_url, work)
                finally:
                    if spy is not None:
                        spy.send_signal(signal.SIGINT)  # py-spy writes what it has and stops
                        finish_py_spy(spy)
                vault.settle()
                profiles[f"{client} {phase} run"] = (
                    prof, f"took {fmt_s(run.seconds)} s under py-spy, {run.note}")
            if client == clients[-1] and args.wrk_seconds > 0:
                prof = work / "profile-vault-wrk-json.raw"
                log("py-spy pass: vault wrk json")
                w = wrk_page(vault, JSON_ACCEPT, args.wrk_seconds, prof, bench_bin)
                profiles["wrk json"] = (prof, f"{w.rps} req/s under py-spy")
        except (BenchTimeout, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001
            log(f"py-spy pass failed: {type(exc).__name__}: {exc}")
        finally:
            dispose(vault, tdir, args)


def report(args: argparse.Namespace, targets: list[str], clients: list[str],
           cells: dict[tuple[str, str], Cell], wrks: dict[tuple[str, str], WrkResult],
           profiles: dict[str, tuple[Path, str]]) -> None:
    if CLIENT_HTTP_TIMEOUT:
        print(f"\nclient HTTP timeout: {CLIENT_HTTP_TIMEOUT} s (pip --timeout, UV_HTTP_TIMEOUT)")
    print(f"\nrequirements: {REQS.relative_to(ROOT)} ({expected_count()} pinned packages); "
          f"cold = fresh server on an empty cache ({args.cold_rounds} round(s), median), "
          f"warm = same server after its fills settled ({args.warm_rounds} round(s), min)\n")
    rows = []
    for t in targets:
        for c in clients:
            cell = cells.get((t, c))
            if cell is None:
                continue
            cold = best(cell.cold, "median")
            warm = best(cell.warm, "min") if t != "direct" else None
            notes = {r.note for r in cell.cold + cell.warm if r.note}
            fails = [r.note for r in cell.cold + cell.warm if not r.ok]
            rows.append([t, c, fmt_s(cold), "n/a" if t == "direct" else fmt_s(warm),
                         " ".join(fmt_s(r.seconds) for r in cell.cold),
                         " ".join(fmt_s(r.seconds) for r in cell.warm) or "-",
                         (("FAIL: " + fails[0]) if fails else "; ".join(sorted(notes)))[:110]])
    print_table(["target", "client", "cold s", "warm s", "cold runs", "warm runs", "result"], rows)

    vrows = []
    for c in clients:
        cell = cells.get(("vault", c))
        if not cell:
            continue
        for phase, runs in (("cold", cell.cold), ("warm", cell.warm)):
            for i, r in enumerate(runs):
                if r.seconds is None:
                    continue
                vrows.append([c, f"{phase} {i + 1}", sum(r.access.values()),
                              r.access.get("MISS", 0),
                              " ".join(f"{k}={v}" for k, v in sorted(r.access.items())),
                              "-" if r.upstream_requests is None else int(r.upstream_requests),
                              "-" if r.upstream_mb is None else f"{r.upstream_mb:.1f}",
                              f"{r.settle:.1f}"])
    if vrows:
        print("Vault: client requests and upstream traffic per run (access log; /metrics)")
        print_table(["client", "run", "requests", "cache=MISS", "by cache status",
                     "upstream reqs", "upstream MiB", "settle s"], vrows)

    if wrks:
        print(f"index page cache hits: wrk -c16 -t2 -d{args.wrk_seconds}s on the {PAGE_PROJECT} "
              "project page (JSON: Accept: " + JSON_ACCEPT + "; HTML: Accept: text/html)")
        wrows = []
        for (t, label), w in wrks.items():
            wrows.append([t, label, "-" if w.rps is None else f"{w.rps:.0f}", w.latency or "-",
                          "-" if w.single_ms is None else f"{w.single_ms:.1f}",
                          w.content_type or "-", w.body_bytes or "-",
                          w.errors if w.errors not in ("", "connect0,read0,write0,timeout0")
                          else "-", w.note or ""])
        print_table(["target", "page", "req/s", "avg lat", "1 GET ms", "content-type", "body B",
                     "errors",
                     "note"], wrows)

    print("ratios")
    rrows = []
    for c in clients:
        v_warm = best(cells.get(("vault", c), Cell()).warm, "min")
        others = [best(cells[(t, c)].warm, "min") for t in ("proxpi", "devpi")
                  if (t, c) in cells]
        others = [o for o in others if o is not None]
        if v_warm is not None and others:
            r = v_warm / min(others)
            rrows.append([f"warm {c}: vault / best(proxpi, devpi)", f"{r:.2f}", "<= 1.00",
                          "ok" if r <= 1.0 else "MISSED"])
        v_cold = best(cells.get(("vault", c), Cell()).cold, "median")
        d_cold = best(cells.get(("direct", c), Cell()).cold, "median")
        if v_cold is not None and d_cold is not None:
            r = v_cold / d_cold
            rrows.append([f"cold {c}: vault / direct", f"{r:.2f}", "<= 1.10",
                          "ok" if r <= 1.10 else "MISSED"])
    for label in ("json", "html"):
        v = wrks.get(("vault", label))
        others = [w.rps for (t, lab), w in wrks.items()
                  if lab == label and t != "vault" and w.rps]
        if v and v.rps and others:
            r = v.rps / max(others)
            rrows.append([f"wrk {label}: vault req/s / best other", f"{r:.2f}", ">= 2.00",
                          "ok" if r >= 2.0 else "MISSED"])
    print_table(["ratio", "value", "target", ""], rrows)

    for label, (path, what) in profiles.items():
        print(f"py-spy profile of Vault during the {label} ({what}; not a timing):")
        print(summarize_profile(path))
        print()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", default="direct,vault,proxpi,devpi",
                    help="comma list of vault, proxpi, devpi, direct (default: all)")
    ap.add_argument("--clients", default="pip,uv", help="comma list of pip, uv")
    ap.add_argument("--cold-rounds", type=int, default=1,
                    help="cold runs per target and client, each on a fresh server (default 1)")
    ap.add_argument("--warm-rounds", type=int, default=2, help="warm runs, the best counts")
    ap.add_argument("--wrk-seconds", type=int, default=10, help="0: no wrk")
    ap.add_argument("--bench-venv", type=Path, default=None,
                    help="venv for proxpi/devpi-server/gunicorn/py-spy (default: in the temp dir)")
    ap.add_argument("--py-spy", action="store_true",
                    help="add an untimed pass profiling Vault with py-spy record")
    ap.add_argument("--out", default=None, help="keep server logs and profiles in this dir")
    ap.add_argument("--keep", action="store_true", help="do not remove the temp dir")
    ap.add_argument("--pin", action="store_true",
                    help="the proxy under test on a CPU of its own (see the docstring)")
    ap.add_argument("--time-limit", type=int, default=5400, help="seconds for the whole run")
    ap.add_argument("--client-timeout", type=int, default=None,
                    help="HTTP read timeout for the clients (pip --timeout, UV_HTTP_TIMEOUT); "
                         "default: theirs (pip 15 s, uv 30 s), which devpi's cold pages exceed")
    args = ap.parse_args()
    global CLIENT_HTTP_TIMEOUT, PROXY_CPUS
    CLIENT_HTTP_TIMEOUT = args.client_timeout
    targets = [t for t in args.targets.split(",") if t]
    clients = [c for c in args.clients.split(",") if c]
    if bad := [t for t in targets if t not in TARGETS] + [c for c in clients
                                                           if c not in ("pip", "uv")]:
        ap.error(f"unknown target or client: {', '.join(bad)}")
    for tool in ("wrk",) if args.wrk_seconds else ():
        if not shutil.which(tool):
            ap.error(f"{tool} is not installed (use --wrk-seconds 0 to skip it)")
    guard(args.time_limit)
    if args.pin:
        PROXY_CPUS = pin_proxy()
        log(f"pinned: proxies on CPU {PROXY_CPUS}, the clients on {os.sched_getaffinity(0)}")
    work = Path(tempfile.mkdtemp(prefix="pypi-compare-"))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    cells: dict[tuple[str, str], Cell] = {}
    wrks: dict[tuple[str, str], WrkResult] = {}
    profiles: dict[str, tuple[Path, str]] = {}
    t0 = time.monotonic()
    try:
        bench_bin = None
        if {"proxpi", "devpi"} & set(targets) or args.py_spy:
            try:
                bench_bin = bench_venv(args.bench_venv or work / "benchvenv", args.py_spy)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                log(f"could not install the other proxies: {exc}; going on without them")
                targets = [t for t in targets if t not in ("proxpi", "devpi")]
        # Round by round, each client against each target in turn, so that the network's
        # swings (minutes long, tens of percent against the real PyPI) hit every target alike.
        for cold_round in range(args.cold_rounds):
            for ci, client in enumerate(clients):
                for name in targets:
                    bench_round(name, client, ci == len(clients) - 1, cold_round, args, work,
                                bench_bin, cells, wrks)
        if args.py_spy and bench_bin and (bench_bin / "py-spy").exists():
            profile_pass(clients, args, work, bench_bin, profiles)
    except (BenchTimeout, KeyboardInterrupt) as exc:
        log(f"stopped early: {exc!r}; reporting what was measured")
    finally:
        if args.out:
            for p, _ in profiles.values():
                with contextlib.suppress(OSError):
                    shutil.copy(p, Path(args.out) / p.name)
        try:
            report(args, targets, clients, cells, wrks, profiles)
            print(f"total {time.monotonic() - t0:.0f}s")
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
            else:
                log(f"kept {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
