"""Cold fill: N concurrent clients GET one uncached file through Vault (single-flight).

    .venv/bin/python bench/cold_fill.py [--size-mb 200] [--clients 20] [--rate 100m]

The upstream is nginx (1 worker, sendfile) with ``limit_rate`` per connection (default 100m =
100 MiB/s, so one download of the 200 MiB file takes ~2 s; ``--rate 0`` for no limit). First
one direct download from nginx, for comparison; then all N clients start at once in each run:
  run "discard"  fresh Vault process (log_level INFO), empty cache; bodies to /dev/null: the
                 wall time of the fill as clients see it
  run "warm"     then the same N clients again on that Vault: all HITs, for comparison with
                 the cold fan-out
  run "sha256"   another fresh Vault, empty cache; each body piped through its own hasher
                 (openssl dgst -sha256, or sha256sum): are all N bodies the file? (the
                 hashing takes CPU on this machine, so its wall time is a little longer)
Printed per run: upstream GETs of the file and how long nginx took to send it (from its
access log: $request_time), wall time from the first client's start to the last client's
last byte, per-client times (curl's time_total), X-Cache values.
"""

from __future__ import annotations

import argparse
import collections
import statistics
from pathlib import Path

from common import (MiB, Nginx, Vault, curl_get, environment, guard, make_file,
                    parallel_curl, print_table, temp_dir)


def one_run(run: str, nginx: Nginx, vault: Vault, run_dir: Path, clients: int, size: int,
            expected: str) -> list:
    run_dir.mkdir()
    offset = nginx.log_offset()
    wall, results, headers = parallel_curl([vault.file_url("big.bin")] * clients, run_dir,
                                           hash_bodies=run == "sha256")
    lines = nginx.requests_for("/big.bin", since=offset)
    upstream_s = ", ".join(line.split()[-1] for line in lines) or "-"  # $request_time
    ok = sum(1 for r in results if r.status == 200 and r.size == size and r.exit_code == 0)
    times = [r.seconds for r in results]
    xcache = collections.Counter(h.get("x-cache", "-") for h in headers)
    if run == "sha256":
        digests = {r.sha256 for r in results}
        same = "yes" if digests == {expected} else (
            f"NO ({len(digests)} distinct, {sum(r.sha256 == expected for r in results)} "
            "match the file)")
    else:
        same = "not checked"
    return [run, len(lines), upstream_s, f"{wall:.2f}", f"{min(times):.2f}",
            f"{statistics.median(times):.2f}", f"{max(times):.2f}", f"{ok}/{clients}",
            " ".join(f"{k}={v}" for k, v in sorted(xcache.items())), same]


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
                    runs = [mode, "warm"] if mode == "discard" else [mode]
                    for run in runs:  # "warm": the same N clients again, now all HITs
                        rows.append(one_run(run, nginx, vault, run_dir / run, args.clients,
                                            size, expected))

    print(f"\ncold_fill: {args.size_mb} MiB file, {args.clients} concurrent clients (curl), "
          f"upstream nginx limit_rate {args.rate}; Vault log_level INFO; {env}")
    print(f"single direct download from nginx: {direct.seconds:.2f} s ({direct.mib_s:.0f} MiB/s)")
    print_table(["run", "upstream GETs", "upstream s", "wall s (all)", "client min s",
                 "median s", "max s", "complete", "X-Cache", "all sha256 equal"], rows)
    discard_wall = float(rows[0][3])
    print(f"wall time of all {args.clients} through Vault / one direct download: "
          f"{discard_wall / direct.seconds:.2f}x (discard run)")


if __name__ == "__main__":
    main()
