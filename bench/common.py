"""Shared helpers for the benchmark scripts in bench/ (measurements, not tests).

Everything runs on 127.0.0.1 only, in a temp dir that is removed at the end, and every
process started here is stopped at the end, also on error, Ctrl-C, SIGTERM or the script's
time limit (children also get SIGTERM from the kernel if the script itself dies: PDEATHSIG).

    guard(seconds)              SIGTERM -> SystemExit, and a time limit for the whole script
    temp_dir()                  a temp dir that is always removed
    free_port()                 a free TCP port on 127.0.0.1
    make_file(path, size)       a file of pseudo-random bytes, written 1 MiB at a time
    Nginx(root, ...)            nginx serving a directory with sendfile on (optionally rate-limited)
    Vault(base_url, ...)        `python main.py --config CFG` with one http backend at /files/
    BareWaitress(path)          bench/bare_waitress.py: waitress returning one file, nothing else
    vm_hwm(pid), RssSampler     peak RSS (VmHWM) of a process; a poller of VmRSS and threads
    cpu_seconds(pid)            CPU time used by a process (and its children)
    split_cpus()                which CPUs to pin a server and its load generator to
    pin_proxy()                 --pin: the proxy under test on a CPU of its own
    wrk(url, ...)               runs wrk and parses Requests/sec, latency and errors
    curl_get(url, ...)          one download with curl; returns status, bytes, seconds
    parallel_curl(urls, ...)    N downloads at once, optionally each hashed (sha256)
    environment()               waits for a quiet machine; one line describing it and the code
    print_table(headers, rows)  the small stdout table every script prints
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
_VENV_PY = ROOT / ".venv" / "bin" / "python"
PYTHON = str(_VENV_PY) if _VENV_PY.exists() else sys.executable
MiB = 1024 * 1024
HOST = "127.0.0.1"
NGINX_BIN = shutil.which("nginx") or "/usr/sbin/nginx"  # /usr/sbin is not on every user's PATH


# -- process hygiene --------------------------------------------------------------------------

def _pdeathsig() -> None:
    """In the child, before exec: get SIGTERM if the bench script dies (Linux only)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def popen(args: Sequence[str], cpus: set[int] | None = None, **kw: Any) -> subprocess.Popen:
    """Popen with PDEATHSIG; ``cpus``: pin the process (and all it starts) to those CPUs."""
    def pre() -> None:
        _pdeathsig()
        if cpus:
            os.sched_setaffinity(0, cpus)
    return subprocess.Popen(list(args), preexec_fn=pre, **kw)


def split_cpus() -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, load-generator CPUs) for pinned runs: the server gets the last CPU it may
    use, the client the others; (None, None) when there are fewer than two CPUs.

    Pinning matters on small VMs: a waitress server is one process whose threads hand the GIL
    to each other; spread over vCPUs, every handoff is a cross-CPU wake-up, and on the 2-vCPU
    VM these scripts were written on that made unpinned small-request figures vary 10x from
    run to run. Pinned, each server gets one CPU, which is also all a GIL-bound process can
    use for Python code, and nginx runs 1 worker."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None
    return {allowed[-1]}, set(allowed[:-1])


def pin_proxy() -> set[int] | None:
    """For ``--pin``: keep this process, and the clients and upstreams it starts, off the last
    CPU, and return that CPU for the proxy under test; None (nothing pinned) on one CPU.

    This separates what a proxy costs by being on the path (one more hop, the fill) from what
    it costs by sharing the CPUs with its client. On the 2-vCPU VM the cold figures were taken
    on, uv alone keeps both CPUs busy, so unpinned every CPU second the proxy spends is added
    to the client's wall time."""
    proxy, rest = split_cpus()
    if proxy is not None:
        os.sched_setaffinity(0, rest)
    return proxy


class BenchTimeout(Exception):
    pass


def guard(seconds: int) -> None:
    """Turn SIGTERM into SystemExit and bound the whole script with SIGALRM, so every
    ``with``/``finally`` cleanup runs however the script ends (short of SIGKILL). The limit
    is ``seconds`` plus the wait for a quiet machine (see ``wait_for_quiet``)."""
    seconds += int(float(os.environ.get("BENCH_QUIET_WAIT", 120)))
    def on_term(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    def on_alarm(_signum: int, _frame: Any) -> None:
        raise BenchTimeout(f"time limit of {seconds}s reached")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)


def stop_process(proc: subprocess.Popen | None, sig: int = signal.SIGTERM,
                 timeout: float = 10) -> None:
    """Stop one process we started (by its pid), killing it if it does not exit in time."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@contextlib.contextmanager
def temp_dir(prefix: str = "vault-bench-") -> Iterator[Path]:
    """A temp dir (under $BENCH_TMPDIR if set, else the system default), always removed."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("BENCH_TMPDIR")))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- files, ports, HTTP -----------------------------------------------------------------------

def free_port() -> int:
    """A port nothing listens on right now (bind port 0, read it, close)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def make_file(path: Path, size: int, block: int = MiB) -> str:
    """Write ``size`` pseudo-random bytes to ``path`` in ``block`` pieces; return its sha256."""
    sha = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left > 0:
            data = os.urandom(min(block, left))
            f.write(data)
            sha.update(data)
            left -= len(data)
    return sha.hexdigest()


def http_head(url: str, timeout: float = 10) -> tuple[int, dict[str, str]]:
    """Status and (lower-cased) headers of a HEAD request."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("HEAD", parts.path or "/")
        resp = conn.getresponse()
        resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def wait_http(url: str, timeout: float = 20, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers at all (any status)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        try:
            http_head(url, timeout=2)
            return
        except OSError as exc:
            last = exc
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout}s: {last}")


@dataclass
class Download:
    status: int
    size: int
    seconds: float
    exit_code: int = 0
    sha256: str | None = None

    @property
    def mib_s(self) -> float:
        return self.size / MiB / self.seconds if self.seconds else 0.0


_CURL_FMT = "%{http_code} %{size_download} %{time_total}"
# openssl uses the CPU's SHA extensions (~5x coreutils' sha256sum here); both print hex first.
HASHER = ["openssl", "dgst", "-sha256", "-r"] if shutil.which("openssl") else ["sha256sum"]


def curl_args(url: str, max_time: float) -> list[str]:
    return ["curl", "-s", "--noproxy", "*", "--max-time", str(max_time), url]


def curl_get(url: str, max_time: float = 300) -> Download:
    """One GET with curl, body to /dev/null; curl's own time_total (connect to last byte)."""
    out = subprocess.run([*curl_args(url, max_time), "-o", "/dev/null", "-w", _CURL_FMT],
                         capture_output=True, text=True, timeout=max_time + 10)
    status, size, seconds = out.stdout.split()
    return Download(int(status), int(size), float(seconds), out.returncode)


def parallel_curl(urls: Sequence[str], workdir: Path, hash_bodies: bool = False,
                  max_time: float = 300) -> tuple[float, list[Download], list[dict[str, str]]]:
    """Start one curl per URL at once; wait for all. Bodies go to /dev/null, or through
    a hasher (``HASHER``: a separate process per client) when ``hash_bodies``.

    Returns the wall time from the first start to the last finish, one ``Download`` per
    client (curl's own timing) and each client's response headers."""
    procs: list[tuple[subprocess.Popen, subprocess.Popen | None, Path, Path]] = []
    try:
        started = time.monotonic()
        for i, url in enumerate(urls):
            hdr, wout = workdir / f"client{i}.headers", workdir / f"client{i}.w"
            args = [*curl_args(url, max_time), "-D", str(hdr), "-w", "%{stderr}" + _CURL_FMT]
            with open(wout, "wb") as err:
                if hash_bodies:
                    curl = popen(args, stdout=subprocess.PIPE, stderr=err)
                    procs.append((curl, None, hdr, wout))
                    hasher = popen(HASHER, stdin=curl.stdout, stdout=subprocess.PIPE)
                    assert curl.stdout is not None
                    curl.stdout.close()  # the hasher holds the read end now
                    procs[-1] = (curl, hasher, hdr, wout)
                else:
                    curl = popen([*args, "-o", "/dev/null"], stdout=subprocess.DEVNULL,
                                 stderr=err)
                    procs.append((curl, None, hdr, wout))
        for curl, hasher, _, _ in procs:
            curl.wait(max_time + 10)
            if hasher is not None:
                hasher.wait(max_time + 10)
        wall = time.monotonic() - started
        results, headers = [], []
        for curl, hasher, hdr, wout in procs:
            fields = wout.read_text().split()
            status, size, seconds = (fields + ["0", "0", "0"])[:3]
            digest = hasher.stdout.read().split()[0].decode() if hasher is not None else None
            results.append(Download(int(status), int(size), float(seconds), curl.returncode,
                                    digest))
            headers.append(parse_headers(hdr.read_text() if hdr.exists() else ""))
        return wall, results, headers
    finally:
        for curl, hasher, _, _ in procs:
            stop_process(curl, timeout=2)
            stop_process(hasher, timeout=2)
            if hasher is not None and hasher.stdout is not None:
                hasher.stdout.close()


def parse_headers(text: str) -> dict[str, str]:
    headers = {}
    for line in text.splitlines()[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


# -- /proc ------------------------------------------------------------------------------------

def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (peak RSS) and Threads of ``pid``, in bytes / count."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) * 1024
            elif key == "Threads":
                found[key] = int(value)
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its live children (nginx: master + workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            pids += [int(c) for c in (task / "children").read_text().split()]
    total = 0
    for p in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def vm_hwm(pid: int) -> int:
    """Peak resident set size of ``pid`` so far, in bytes."""
    return proc_status(pid)["VmHWM"]


class RssSampler:
    """Polls /proc/PID/status in a thread; keeps the highest VmRSS and Threads it saw."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.max_rss = 0
        self.max_threads = 0
        self.hwm = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        try:
            st = proc_status(self.pid)
        except OSError:
            return
        self.max_rss = max(self.max_rss, st["VmRSS"])
        self.max_threads = max(self.max_threads, st["Threads"])
        self.hwm = max(self.hwm, st["VmHWM"])

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sample()


# -- servers ----------------------------------------------------------------------------------

_NGINX_CONF = """\
daemon off;
master_process on;
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
{user}
events {{ worker_connections 4096; }}
http {{
    log_format bench '$remote_addr "$request" $status $body_bytes_sent $request_time';
    access_log {dir}/access.log bench;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 65;
    server {{
        listen {host}:{port};
        root {root};
        location / {{
            limit_rate {rate};
        }}
    }}
}}
"""


class Nginx:
    """nginx (master + ``workers`` workers, sendfile on) serving ``root`` on a free port.

    ``rate`` is nginx's per-connection ``limit_rate`` (e.g. "100m" = 100 MiB/s; "0": none).
    Every request is logged to ``access_log`` (path, status, bytes)."""

    def __init__(self, root: Path, workdir: Path, rate: str = "0", workers: int = 1,
                 cpus: set[int] | None = None) -> None:
        self.root = root
        self.cpus = cpus
        self.dir = workdir / f"nginx-{time.monotonic_ns()}"
        self.rate = rate
        self.workers = workers
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.dir / "access.log"

    def start(self) -> Nginx:
        self.dir.mkdir(parents=True)
        # As root, nginx's workers would run as nobody and could not read a 0700 temp dir.
        user = "user root;" if os.geteuid() == 0 else ""
        for attempt in range(5):
            self.port = free_port()
            conf = self.dir / "nginx.conf"
            conf.write_text(_NGINX_CONF.format(dir=self.dir, user=user, host=HOST, port=self.port,
                                               root=self.root, rate=self.rate,
                                               workers=self.workers))
            self.proc = popen([NGINX_BIN, "-p", str(self.dir), "-c", str(conf),
                               "-e", str(self.dir / "error.log")], cpus=self.cpus,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_http(self.url + "/", timeout=10, proc=self.proc)
                return self
            except RuntimeError:
                stop_process(self.proc, signal.SIGQUIT)
                if attempt == 4:
                    err = self.dir / "error.log"
                    raise RuntimeError("nginx did not start:\n" +
                                       (err.read_text() if err.exists() else "")) from None
        return self

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGTERM)  # SIGTERM: nginx's fast shutdown

    def requests_for(self, path: str, since: int = 0) -> list[str]:
        """Access-log lines (after byte offset ``since``) whose request is ``GET path``."""
        with open(self.access_log, "rb") as f:
            f.seek(since)
            lines = f.read().decode(errors="replace").splitlines()
        return [line for line in lines if f'"GET {path} ' in line]

    def log_offset(self) -> int:
        return self.access_log.stat().st_size if self.access_log.exists() else 0

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Vault:
    """Artifact Vault as a real process: ``.venv/bin/python main.py --config CFG``.

    One http backend at ``/files/`` in front of ``base_url``, every path immutable (a hit never
    revalidates), port 0 (the port is read from the "listening on" line, which is logged at
    INFO; at INFO every request also logs an access line, the production cost, so measure at
    INFO). stderr goes to a log file in the workdir."""

    def __init__(self, base_url: str, workdir: Path, cache_dir: Path | None = None,
                 log_level: str = "INFO", threads: int = 32,
                 cpus: set[int] | None = None) -> None:
        self.base_url = base_url
        self.cpus = cpus
        self.workdir = workdir
        self.cache_dir = cache_dir or workdir / "vault-cache"
        self.log_level = log_level
        self.threads = threads
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.log_path = workdir / f"vault-{time.monotonic_ns()}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def file_url(self, name: str) -> str:
        return f"{self.url}/files/{name}"

    def start(self) -> Vault:
        # At INFO: port 0, and the port is read from the "listening on" line (logged at INFO).
        # At a quieter level that line is not logged: pick a free port and poll /health.
        for attempt in range(5):
            port = 0 if self.log_level in ("INFO", "DEBUG") else free_port()
            try:
                return self._start(port)
            except RuntimeError:
                if port == 0 or attempt == 4:
                    raise
        return self

    def _start(self, port: int) -> Vault:
        import yaml  # in the venv; only needed here

        config = {
            "http_host": HOST, "http_port": port, "cache_dir": str(self.cache_dir),
            "log_level": self.log_level, "threads": self.threads, "cache": {"min_free": 0},
            "backends": [{"type": "http", "config": {
                "prefix": "/files/", "base_url": self.base_url, "immutable": ["*"],
                "retries": 0}}],
        }
        config_path = self.workdir / f"vault-{time.monotonic_ns()}.yml"
        config_path.write_text(yaml.safe_dump(config))
        args = [PYTHON, str(ROOT / "main.py"), "--config", str(config_path)]
        with open(self.log_path, "ab") as log:
            self.proc = popen(args, cpus=self.cpus, stdout=subprocess.DEVNULL, stderr=log,
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            if port:
                self.url = f"http://{HOST}:{port}"
            else:
                self.url = self._wait_listening()
            wait_http(self.url + "/health", timeout=30, proc=self.proc)
            return self
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"vault did not start ({exc}):\n{self.log_path.read_text()}") \
                from None

    def _wait_listening(self) -> str:
        deadline = time.monotonic() + 30
        assert self.proc is not None
        while time.monotonic() < deadline:
            match = re.search(r"listening on http://[\d.]+:(\d+)/", self.log_path.read_text())
            if match:
                return f"http://{HOST}:{match[1]}"
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode}")
            time.sleep(0.05)
        raise RuntimeError("no 'listening on' line within 30s")

    def stop(self) -> None:
        stop_process(self.proc)

    def access_lines(self) -> int:
        return sum(1 for line in self.log_path.read_text(errors="replace").splitlines()
                   if "artifact_vault.access" in line)

    def __enter__(self) -> Vault:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class BareWaitress:
    """bench/bare_waitress.py serving one file on a free port (the floor for Vault)."""

    def __init__(self, path: Path, threads: int = 32, cpus: set[int] | None = None) -> None:
        self.path = path
        self.cpus = cpus
        self.threads = threads
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> BareWaitress:
        for attempt in range(5):
            port = free_port()
            self.proc = popen([PYTHON, str(BENCH / "bare_waitress.py"), str(self.path),
                               "--port", str(port), "--threads", str(self.threads)],
                              cpus=self.cpus, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
            self.url = f"http://{HOST}:{port}/"
            try:
                wait_http(self.url, proc=self.proc)
                return self
            except RuntimeError:
                stop_process(self.proc)
                if attempt == 4:
                    raise
        return self

    def stop(self) -> None:
        stop_process(self.proc)

    def __enter__(self) -> BareWaitress:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- wrk --------------------------------------------------------------------------------------

@dataclass
class WrkResult:
    rps: float
    latency_avg: str
    requests: int
    non_2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    raw: str = ""

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())


def wrk(url: str, connections: int = 16, threads: int = 2, duration: int = 10,
        cpus: set[int] | None = None) -> WrkResult:
    proc = popen(["wrk", f"-c{connections}", f"-t{threads}", f"-d{duration}s", "--timeout", "10s",
                  url], cpus=cpus, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=duration + 30)
    finally:
        stop_process(proc, timeout=2)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err}")
    rps = re.search(r"Requests/sec:\s*([\d.]+)", out)
    lat = re.search(r"Latency\s+(\S+)", out)
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if not rps or not total:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    errors = {}
    if sock:
        errors = dict(zip(("connect", "read", "write", "timeout"), map(int, sock.groups())))
    return WrkResult(float(rps[1]), lat[1] if lat else "?", int(total[1]),
                     int(non2xx[1]) if non2xx else 0, errors, out)


# -- output -----------------------------------------------------------------------------------

def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> None:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    if title:
        print(f"\n== {title} ==")
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths))).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    sys.stdout.flush()


def busy_fraction(seconds: float = 1.0) -> float:
    """How busy all CPUs were over the next ``seconds`` (0..1), from /proc/stat."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values), idle
    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1 - (idle1 - idle0) / max(total1 - total0, 1)


def wait_for_quiet(max_wait: float = 120, threshold: float = 0.15) -> float:
    """Wait (at most ``max_wait`` s, or $BENCH_QUIET_WAIT) until the machine is under
    ``threshold`` busy, so other work does not end up in the figures; returns the last busy
    fraction seen. BENCH_NO_WAIT=1 skips the wait."""
    max_wait = float(os.environ.get("BENCH_QUIET_WAIT", max_wait))
    deadline = time.monotonic() + (0 if os.environ.get("BENCH_NO_WAIT") else max_wait)
    busy = busy_fraction()
    while busy > threshold and time.monotonic() < deadline:
        busy = busy_fraction(2.0)
    return busy


def environment() -> str:
    """One line describing the machine and the code, for the head of every table; waits a
    little for the machine to be quiet first (see ``wait_for_quiet``)."""
    import platform
    busy = wait_for_quiet()
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        rev = "?"
    note = "" if busy <= 0.15 else " (NOT QUIET: other work is running, figures are suspect)"
    return (f"{platform.machine()}, {os.cpu_count()} CPUs, CPUs {busy:.0%} busy before start"
            f"{note}, Python {platform.python_version()}, code {rev or '?'}")
