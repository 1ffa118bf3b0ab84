"""Load: 200 concurrent clients over hits, cold misses of shared keys and HEADs; RSS over time.

    .venv/bin/python bench/load.py [--clients 200] [--duration 60] [--soak 0] [--procs 2]

Upstream: nginx serving small files from a temp dir (loopback only). Vault: a real process
(log_level INFO, bench/common.Vault, one http backend, every file immutable). The hot set is
fetched once before the clock starts, so those GETs are hits. Each client keeps one
keep-alive connection and loops, choosing per request:

  hit   GET of a hot file                       (--hit, default 70 %)
  cold  GET of this moment's cold file          (--cold, default 15 %): a new file every
        1/--cold-rate s, so the clients that pick "cold" in that window ask for the same key
        at once: one upstream GET (single-flight), the others follow the fill or hit
  head  HEAD of a hot file                      (the rest, 15 %)

Every body is checked byte for byte (the client knows each file's content); a failure is any
status other than 200, a wrong body or length, or a connection error. Printed: requests,
failures, req/s, p50/p99/max latency per kind, upstream GETs vs cold keys asked, Vault RSS
before and after. ``--soak 600`` runs that long instead of ``--duration`` and samples Vault's
RSS every ``--sample`` (30) s; the growth from the first sample to the last is reported.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import http.client
import multiprocessing
import random
import threading
import time
from pathlib import Path

from common import (MiB, Nginx, Vault, environment, guard, print_table, proc_status, temp_dir)

KINDS = ("hit", "cold", "head")
# Latency histogram bucket edges: 50 us .. ~120 s, 2 % apart (enough for p50/p99).
EDGES = [50e-6 * 1.02**i for i in range(750)]


def content(name: str, size: int) -> bytes:
    """The bytes of file ``name``: the client regenerates them to check every body."""
    block = hashlib.sha256(name.encode()).digest() * 64  # 2 KiB
    return (block * (size // len(block) + 1))[:size]


def write_files(root: Path, names: list[str], size: int) -> None:
    for name in names:
        (root / name).write_bytes(content(name, size))


def client_proc(url: str, threads: int, seconds: float, mix: tuple[float, float],
                cold_rate: float, t0: float, hot: list[str], size: int,
                seed: int, out: multiprocessing.Queue) -> None:
    """One load process: ``threads`` clients, each a keep-alive connection; results to ``out``."""
    host, port = url.removeprefix("http://").split(":")
    expected = {name: content(name, size) for name in hot}
    hist = {k: [0] * (len(EDGES) + 1) for k in KINDS}
    counts = {k: 0 for k in KINDS}
    failures: list[str] = []
    cold_keys: set[str] = set()
    lock = threading.Lock()

    def run(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        time.sleep(max(0.0, t0 - time.time()))
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        local = {k: [0] * (len(EDGES) + 1) for k in KINDS}
        done = {k: 0 for k in KINDS}
        errors: list[str] = []
        asked: set[str] = set()
        end = t0 + seconds
        while time.time() < end:
            roll = rng.random()
            if roll < mix[0]:
                kind, method, name = "hit", "GET", rng.choice(hot)
            elif roll < mix[0] + mix[1]:
                kind, method = "cold", "GET"
                name = f"cold-{int((time.time() - t0) * cold_rate)}.bin"
                asked.add(name)
            else:
                kind, method, name = "head", "HEAD", rng.choice(hot)
            started = time.perf_counter()
            try:
                conn.request(method, f"/files/{name}")
                resp = conn.getresponse()
                body = resp.read()
                elapsed = time.perf_counter() - started
                want = b"" if method == "HEAD" else expected.get(name) or content(name, size)
                if resp.status != 200 or body != want or (
                        method == "HEAD" and resp.getheader("Content-Length") != str(size)):
                    errors.append(f"{method} {name}: {resp.status}, {len(body)} bytes")
            except (OSError, http.client.HTTPException) as exc:
                elapsed = time.perf_counter() - started
                errors.append(f"{method} {name}: {type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
            local[kind][bisect.bisect_left(EDGES, elapsed)] += 1
            done[kind] += 1
        conn.close()
        with lock:
            for k in KINDS:
                counts[k] += done[k]
                hist[k] = [a + b for a, b in zip(hist[k], local[k])]
            failures.extend(errors)
            cold_keys.update(asked)

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put((counts, hist, failures, sorted(cold_keys)))


def percentile(hist: list[int], q: float) -> float:
    total = sum(hist)
    if not total:
        return 0.0
    rank, seen = q * total, 0
    for i, n in enumerate(hist):
        seen += n
        if seen >= rank:
            return EDGES[min(i, len(EDGES) - 1)]
    return EDGES[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--soak", type=float, default=0.0,
                        help="run this many seconds instead, sampling RSS (e.g. 600)")
    parser.add_argument("--sample", type=float, default=30.0, help="RSS sample interval, s")
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes")
    parser.add_argument("--size-kb", type=int, default=16, help="size of every file")
    parser.add_argument("--hot", type=int, default=50, help="number of hot (cached) files")
    parser.add_argument("--hit", type=float, default=0.70)
    parser.add_argument("--cold", type=float, default=0.15)
    parser.add_argument("--cold-rate", type=float, default=4.0, help="new cold keys per second")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    seconds = args.soak or args.duration
    guard(int(seconds) + 600)
    size = args.size_kb * 1024
    env = environment()
    hot = [f"hot-{i}.bin" for i in range(args.hot)]
    cold = [f"cold-{i}.bin" for i in range(int(seconds * args.cold_rate) + 10)]
    with temp_dir() as tmp:
        www = tmp / "www"
        www.mkdir()
        write_files(www, hot + cold, size)
        with Nginx(www, tmp) as nginx, Vault(nginx.url, tmp) as vault:
            for name in hot:  # warm: these are hits from now on
                conn = http.client.HTTPConnection(vault.url.removeprefix("http://"), timeout=30)
                conn.request("GET", f"/files/{name}")
                conn.getresponse().read()
                conn.close()
            rss_before = proc_status(vault.pid)["VmRSS"]
            offset = nginx.log_offset()
            t0 = time.time() + 2.0  # every process starts on the same clock
            out: multiprocessing.Queue = multiprocessing.Queue()
            per = [args.clients // args.procs + (i < args.clients % args.procs)
                   for i in range(args.procs)]
            procs = [multiprocessing.Process(target=client_proc, args=(
                vault.url, n, seconds, (args.hit, args.cold), args.cold_rate, t0, hot, size,
                args.seed + i, out)) for i, n in enumerate(per)]
            for p in procs:
                p.start()
            samples = []
            time.sleep(max(0.0, t0 - time.time()))
            while time.time() < t0 + seconds:
                time.sleep(min(args.sample, max(0.1, t0 + seconds - time.time())))
                samples.append((time.time() - t0, proc_status(vault.pid)["VmRSS"]))
            results = [out.get(timeout=300) for _ in procs]
            for p in procs:
                p.join(30)
            rss_after = proc_status(vault.pid)["VmRSS"]
            asked = set().union(*(r[3] for r in results))
            upstream_cold = sum(len(nginx.requests_for(f"/{k}", since=offset)) for k in asked)

    counts = {k: sum(r[0][k] for r in results) for k in KINDS}
    hists = {k: [sum(col) for col in zip(*(r[1][k] for r in results))] for k in KINDS}
    failures = [f for r in results for f in r[2]]
    total = sum(counts.values())
    every = [sum(col) for col in zip(*hists.values())]
    print(f"\nload: {args.clients} clients ({args.procs} processes), {seconds:.0f} s, "
          f"{args.size_kb} KiB files, mix hit {args.hit:.0%} / cold {args.cold:.0%} / head "
          f"{1 - args.hit - args.cold:.0%}, {args.cold_rate:g} new cold keys/s; Vault "
          f"log_level INFO, 32 threads; {env}")
    rows = [[k, counts[k], f"{percentile(hists[k], 0.5) * 1000:.1f}",
             f"{percentile(hists[k], 0.99) * 1000:.1f}"] for k in (*KINDS,)]
    rows.append(["all", total, f"{percentile(every, 0.5) * 1000:.1f}",
                 f"{percentile(every, 0.99) * 1000:.1f}"])
    print_table(["kind", "requests", "p50 ms", "p99 ms"], rows)
    print(f"\nrequests {total} ({total / seconds:.0f}/s), failed {len(failures)}; cold keys asked "
          f"{len(asked)}, upstream GETs for them {upstream_cold}; Vault RSS before "
          f"{rss_before / MiB:.1f} MiB, after {rss_after / MiB:.1f} MiB")
    if args.soak:
        print_table(["t s", "VmRSS MiB"], [[f"{t:.0f}", f"{r / MiB:.1f}"] for t, r in samples],
                    title="RSS samples")
        print(f"RSS growth first -> last sample: {(samples[-1][1] - samples[0][1]) / MiB:+.1f} MiB"
              f" (max {max(r for _, r in samples) / MiB:.1f} MiB)")
    for line in failures[:20]:
        print("FAILED", line)
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
