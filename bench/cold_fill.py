"""Cold fill: N concurrent clients GET one uncached file through Vault (single-flight).

    .venv/bin/python bench/cold_fill.py [--size-mb 200] [--clients 20] [--rate 100m]

The upstream is nginx (1 worker, sendfile) with ``limit_rate`` per connection (default 100m =
100 MiB/s, so one download of the 200 MiB file takes ~2 s; ``--rate 0`` for no limit). First
one direct download from nginx, for comparison; then, each against a fresh Vault process with
an empty cache (log_level INFO), all N clients start at once:
  run "discard"  bodies to /dev/null: the wall time of the fill as clients see it
  run "sha256"   each body piped through its own sha256sum: are all N bodies the file?
                 (the hashing takes CPU on this machine, so its wall time is longer)
Printed per run: upstream GETs of the file (from nginx's access log), wall time from the
first client's start to the last client's last byte, per-client times, X-Cache values.
"""

from __future__ import annotations

import argparse
import collections
import statistics

from common import (MiB, Nginx, Vault, curl_get, environment, guard, make_file,
                    parallel_curl, print_table, temp_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rate", default="100m",
                        help="nginx limit_rate per connection (bytes/s; k/m suffix; 0: none)")
    args = parser.parse_args()
    guard(900)
    size = args.size_mb * MiB
    env = environment()  # first: it waits for a quiet machine
    rows = []
    with temp_dir() as tmp:
        www = tmp / "www"
        www.mkdir()
        expected = make_file(www / "big.bin", size)
        with Nginx(www, tmp, rate=args.rate) as nginx:
            direct = curl_get(nginx.url + "/big.bin", max_time=300)
            if direct.status != 200 or direct.size != size:
                raise RuntimeError(f"direct download failed: {direct}")
            for mode in ("discard", "sha256"):
                run_dir = tmp / f"run-{mode}"
                run_dir.mkdir()
                with Vault(nginx.url, run_dir, cache_dir=run_dir / "cache") as vault:
                    offset = nginx.log_offset()
                    urls = [vault.file_url("big.bin")] * args.clients
                    wall, results, headers = parallel_curl(urls, run_dir,
                                                           hash_bodies=mode == "sha256")
                upstream = len(nginx.requests_for("/big.bin", since=offset))
                ok = sum(1 for r in results if r.status == 200 and r.size == size
                         and r.exit_code == 0)
                times = [r.seconds for r in results]
                xcache = collections.Counter(h.get("x-cache", "-") for h in headers)
                if mode == "sha256":
                    digests = {r.sha256 for r in results}
                    same = "yes" if digests == {expected} else (
                        f"NO ({len(digests)} distinct, "
                        f"{sum(r.sha256 == expected for r in results)} match the file)")
                else:
                    same = "not checked"
                rows.append([mode, upstream, f"{wall:.2f}", f"{min(times):.2f}",
                             f"{statistics.median(times):.2f}", f"{max(times):.2f}",
                             f"{ok}/{args.clients}", " ".join(f"{k}={v}" for k, v in
                                                              sorted(xcache.items())), same])

    print(f"\ncold_fill: {args.size_mb} MiB file, {args.clients} concurrent clients (curl), "
          f"upstream nginx limit_rate {args.rate}; Vault log_level INFO; {env}")
    print(f"single direct download from nginx: {direct.seconds:.2f} s ({direct.mib_s:.0f} MiB/s)")
    print_table(["run", "upstream GETs", "wall s (all)", "client min s", "median s", "max s",
                 "complete", "X-Cache", "all sha256 equal"], rows)
    discard_wall = float(rows[0][2])
    print(f"wall time of all {args.clients} through Vault / one direct download: "
          f"{discard_wall / direct.seconds:.2f}x (discard run)")


if __name__ == "__main__":
    main()
