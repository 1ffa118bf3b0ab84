"""Cache-hit throughput for one client: Vault vs nginx (sendfile) serving the same file.

    .venv/bin/python bench/hit_throughput.py [--size-mb 256] [--runs 3]

A file of pseudo-random bytes is served by nginx (sendfile on, 1 worker); Vault's upstream is
that nginx. One GET through Vault primes its cache (a MISS); then one client (curl, body to
/dev/null) downloads the file, best of N, from nginx directly and from Vault (HIT, served
through waitress's wsgi.file_wrapper path). Vault runs at log_level INFO (one access-log line
per request, as in production). Prints MiB/s and the ratio Vault / nginx; the priming GET's
speed is shown too (one client reading a fill as it is written, upstream not rate-limited).
"""

from __future__ import annotations

import argparse

from common import (MiB, Nginx, Vault, curl_get, environment, guard, http_head, make_file,
                    print_table, temp_dir)


def best_of(url: str, runs: int, size: int) -> tuple[float, list[float]]:
    speeds = []
    for _ in range(runs):
        d = curl_get(url, max_time=120)
        if d.status != 200 or d.size != size or d.exit_code != 0:
            raise RuntimeError(f"GET {url}: status {d.status}, {d.size} bytes, curl exit "
                               f"{d.exit_code}")
        speeds.append(d.mib_s)
    return max(speeds), speeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    guard(600)
    size = args.size_mb * MiB
    env = environment()  # first: it waits for a quiet machine
    with temp_dir() as tmp:
        www = tmp / "www"
        www.mkdir()
        make_file(www / "big.bin", size)
        with Nginx(www, tmp) as nginx, Vault(nginx.url, tmp) as vault:
            url = vault.file_url("big.bin")
            prime = curl_get(url, max_time=120)  # the MISS: fills the cache
            status, headers = http_head(url)
            if prime.status != 200 or status != 200 or headers.get("x-cache") != "HIT":
                raise RuntimeError(f"priming failed: {prime}, HEAD {status} {headers}")
            nginx_best, nginx_all = best_of(nginx.url + "/big.bin", args.runs, size)
            vault_best, vault_all = best_of(url, args.runs, size)
            miss = prime.mib_s

    print(f"\nhit_throughput: {args.size_mb} MiB file, 1 client (curl -o /dev/null), "
          f"best of {args.runs}; {env}")
    print("nginx: 1 worker, sendfile on; Vault: log_level INFO, upstream = that nginx")
    fmt = ", ".join
    print_table(["server", "best MiB/s", "all runs MiB/s"], [
        ["nginx (sendfile)", f"{nginx_best:.0f}", fmt(f"{s:.0f}" for s in nginx_all)],
        ["Vault HIT", f"{vault_best:.0f}", fmt(f"{s:.0f}" for s in vault_all)],
        ["Vault MISS (priming GET)", f"{miss:.0f}", "1 run"],
    ])
    print(f"ratio Vault HIT / nginx: {vault_best / nginx_best:.2f}")


if __name__ == "__main__":
    main()
