"""Small-file cache hits per second: Vault vs nginx vs a bare waitress app.

    .venv/bin/python bench/small_rps.py [--pin both|on|off] [--size 1024] [--duration 10]
                                        [--connections 16] [--wrk-threads 2] [--no-quiet-row]
                                        [--processes 3]

A 1 KiB file, fetched with ``wrk -c16 -t2 -d10s`` (keep-alive) from:
  nginx            1 worker, sendfile on, access log on (the same file on disk)
  bare waitress    bench/bare_waitress.py: same waitress settings and 32 threads as Vault,
                   an app that only reads and returns the file, no logging
  Vault (INFO)     cache HIT (primed once), log_level INFO: one access-log line per request,
                   the production setting; the ratios use this row
  Vault (WARNING)  the same with access logging off, to show what the logging costs
Besides requests/s it prints the server's CPU time per request (from /proc/PID/stat).

On the 2-vCPU development VM a waitress process settles into one of two speeds for its whole
life (CPU per request 110 or 160-190 us, the bare app as much as Vault), so one process per
server made the ratio anything from 0.64 to 0.97 from run to run. Each of bare waitress and
Vault is therefore started --processes times (default 3, interleaved) and its best run counts.

--pin on: each server is pinned to one CPU and wrk to the others (see common.split_cpus);
--pin off: no pinning (what a production box does, but on a small VM the figures then vary
a lot from run to run); --pin both (default): both tables. wrk always runs on the same
machine and takes CPU from the server under test when not pinned.
"""

from __future__ import annotations

import argparse

from common import (BareWaitress, Nginx, Vault, WrkResult, cpu_seconds, curl_get, environment,
                    guard, http_head, make_file, print_table, split_cpus, temp_dir, wrk)

NGINX = "nginx (sendfile, 1 worker)"
BARE = "bare waitress (32 threads)"
VAULT = "Vault HIT (log_level INFO)"
QUIET = "Vault HIT (log_level WARNING)"


def run_set(args: argparse.Namespace, pinned: bool) -> dict[str, tuple[WrkResult, float]]:
    server_cpus, client_cpus = split_cpus() if pinned else (None, None)
    results: dict[str, tuple[WrkResult, float]] = {}

    def bench(name: str, url: str, pid: int) -> None:
        curl_get(url, max_time=10)  # warm up (and, for Vault, fill the cache)
        cpu0 = cpu_seconds(pid)
        r = wrk(url, args.connections, args.wrk_threads, args.duration, cpus=client_cpus)
        if name not in results or r.rps > results[name][0].rps:  # the best process counts
            results[name] = (r, (cpu_seconds(pid) - cpu0) / max(r.requests, 1))

    with temp_dir() as tmp:
        www = tmp / "www"
        www.mkdir()
        make_file(www / "small.bin", args.size)
        with Nginx(www, tmp, cpus=server_cpus) as nginx:
            assert nginx.proc is not None
            bench(NGINX, nginx.url + "/small.bin", nginx.proc.pid)
            for _ in range(args.processes):  # fresh processes, bare and Vault interleaved
                with BareWaitress(www / "small.bin", cpus=server_cpus) as bare:
                    assert bare.proc is not None
                    bench(BARE, bare.url + "small.bin", bare.proc.pid)
                for level in ["INFO"] if args.no_quiet_row else ["INFO", "WARNING"]:
                    with Vault(nginx.url, tmp, cache_dir=tmp / "vault-cache", log_level=level,
                               cpus=server_cpus) as vault:
                        url = vault.file_url("small.bin")
                        curl_get(url, max_time=10)
                        status, headers = http_head(url)
                        if status != 200 or headers.get("x-cache") != "HIT":
                            raise RuntimeError(f"Vault is not serving a HIT: {status} {headers}")
                        bench(VAULT if level == "INFO" else QUIET, url, vault.pid)
    return results


def report(args: argparse.Namespace, results: dict[str, tuple[WrkResult, float]],
           pinned: bool) -> None:
    server_cpus, client_cpus = split_cpus() if pinned else (None, None)
    how = (f"pinned: server on CPU {sorted(server_cpus or [])}, wrk on CPUs "
           f"{sorted(client_cpus or [])}" if pinned else "not pinned")
    rows = [[name, f"{r.rps:.0f}", f"{cpu * 1e6:.0f}", r.latency_avg, r.requests, r.errors]
            for name, (r, cpu) in results.items()]
    print_table(["server", "requests/s", "server CPU us/req", "avg latency", "requests",
                 "errors"], rows, title=f"small_rps, {how}")
    vault = results[VAULT][0].rps
    print(f"ratio Vault/nginx: {vault / results[NGINX][0].rps:.3f}   "
          f"ratio Vault/bare: {vault / results[BARE][0].rps:.3f}")
    if QUIET in results:
        print(f"Vault at WARNING / at INFO (what access logging costs): "
              f"{results[QUIET][0].rps / vault:.2f}x requests/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pin", choices=["both", "on", "off"], default="both")
    parser.add_argument("--size", type=int, default=1024, help="file size in bytes")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--processes", type=int, default=3,
                        help="start bare waitress and Vault this many times; the best run counts")
    parser.add_argument("--no-quiet-row", action="store_true",
                        help="skip the extra Vault run at log_level WARNING")
    args = parser.parse_args()
    modes = {"both": [True, False], "on": [True], "off": [False]}[args.pin]
    guard(120 + len(modes) * (1 + 3 * args.processes) * (args.duration + 15))
    print(f"\nsmall_rps: {args.size} B file, wrk -c{args.connections} -t{args.wrk_threads} "
          f"-d{args.duration}s; {environment()}")
    for pinned in modes:
        if pinned and split_cpus()[0] is None:
            print("(fewer than 2 CPUs: no pinned run)")
            continue
        report(args, run_set(args, pinned), pinned)


if __name__ == "__main__":
    main()
