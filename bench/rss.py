"""Peak memory of the Vault process while N clients download one big file, cold and warm.

    .venv/bin/python bench/rss.py [--size-mb 1024] [--clients 20] [--rate 0]

Upstream: nginx (1 worker, sendfile; ``--rate`` = its limit_rate, default none). Two runs,
each in a fresh Vault process (log_level INFO) on the same cache directory:
  cold  empty cache: all N clients start at once, one fill, every client a reader of it
  warm  the file is cached: all N clients start at once, all HITs
Bodies go to /dev/null (curl). Printed per run: RSS right after start-up, peak RSS (VmHWM from
/proc/PID/status, read at the end, while the process still runs), the highest VmRSS and thread
count seen by a 50 ms poller, wall time, aggregate MiB/s, upstream GETs, X-Cache values.
"""

from __future__ import annotations

import argparse
import collections

from common import (MiB, Nginx, RssSampler, Vault, environment, guard, http_head, make_file,
                    parallel_curl, print_table, proc_status, temp_dir, vm_hwm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rate", default="0", help="nginx limit_rate (e.g. 100m; 0: none)")
    args = parser.parse_args()
    guard(1200)
    size = args.size_mb * MiB
    env = environment()  # first: it waits for a quiet machine
    rows = []
    with temp_dir() as tmp:
        www = tmp / "www"
        www.mkdir()
        make_file(www / "big.bin", size)
        cache = tmp / "vault-cache"
        with Nginx(www, tmp, rate=args.rate) as nginx:
            for phase in ("cold", "warm"):
                run_dir = tmp / phase
                run_dir.mkdir()
                with Vault(nginx.url, run_dir, cache_dir=cache) as vault:
                    url = vault.file_url("big.bin")
                    if phase == "warm":
                        status, headers = http_head(url)
                        if status != 200 or headers.get("x-cache") != "HIT":
                            raise RuntimeError(f"warm run is not a HIT: {status} {headers}")
                    idle = proc_status(vault.pid)["VmRSS"]
                    offset = nginx.log_offset()
                    with RssSampler(vault.pid) as sampler:
                        wall, results, headers_all = parallel_curl(
                            [url] * args.clients, run_dir, max_time=600)
                    hwm = vm_hwm(vault.pid)  # the high-water mark, read before the stop
                upstream = len(nginx.requests_for("/big.bin", since=offset))
                ok = sum(1 for r in results if r.status == 200 and r.size == size
                         and r.exit_code == 0)
                xcache = collections.Counter(h.get("x-cache", "-") for h in headers_all)
                rows.append([phase, f"{idle / MiB:.0f}", f"{hwm / MiB:.0f}",
                             f"{sampler.max_rss / MiB:.0f}", sampler.max_threads,
                             f"{wall:.1f}", f"{ok * size / MiB / wall:.0f}", upstream,
                             f"{ok}/{args.clients}",
                             " ".join(f"{k}={v}" for k, v in sorted(xcache.items()))])

    print(f"\nrss: {args.size_mb} MiB file, {args.clients} concurrent clients (curl -o /dev/null), "
          f"upstream nginx limit_rate {args.rate}; Vault log_level INFO, fresh process per "
          f"run; {env}")
    print_table(["run", "RSS at start MiB", "peak RSS (VmHWM) MiB", "max VmRSS seen MiB",
                 "max threads", "wall s", "aggregate MiB/s", "upstream GETs", "complete",
                 "X-Cache"], rows)


if __name__ == "__main__":
    main()
