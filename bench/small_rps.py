"""Small-file cache hits per second: Vault vs nginx vs a bare waitress app.

    .venv/bin/python bench/small_rps.py [--size 1024] [--duration 10] [--connections 16]
                                        [--wrk-threads 2] [--no-quiet-row]

A 1 KiB file, fetched with ``wrk -c16 -t2 -d10s`` (keep-alive) from:
  nginx            1 worker, sendfile on, access log on (the same file on disk)
  bare waitress    bench/bare_waitress.py: same waitress settings and 32 threads as Vault,
                   an app that only reads and returns the file, no logging
  Vault (INFO)     cache HIT (primed once), log_level INFO: one access-log line per request,
                   the production setting
  Vault (WARNING)  the same with access logging off, to show what the logging costs
Prints requests/s and the ratios Vault/nginx and Vault/bare (Vault at INFO).
Note: wrk runs on the same machine and takes CPU from the server under test.
"""

from __future__ import annotations

import argparse

from common import (BareWaitress, Nginx, Vault, WrkResult, curl_get, environment, guard,
                    http_head, make_file, print_table, temp_dir, wrk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="file size in bytes")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--no-quiet-row", action="store_true",
                        help="skip the extra Vault run at log_level WARNING")
    args = parser.parse_args()
    guard(300 + 6 * args.duration)

    def bench(url: str) -> WrkResult:
        curl_get(url, max_time=10)  # warm up (and, for Vault, fill the cache)
        return wrk(url, args.connections, args.wrk_threads, args.duration)

    results: dict[str, WrkResult] = {}
    with temp_dir() as tmp:
        www = tmp / "www"
        www.mkdir()
        make_file(www / "small.bin", args.size)
        with Nginx(www, tmp) as nginx:
            results["nginx (sendfile, 1 worker)"] = bench(nginx.url + "/small.bin")
            with BareWaitress(www / "small.bin") as bare:
                results["bare waitress (32 threads)"] = bench(bare.url + "small.bin")
            levels = ["INFO"] if args.no_quiet_row else ["INFO", "WARNING"]
            for level in levels:
                with Vault(nginx.url, tmp, cache_dir=tmp / "vault-cache", log_level=level) as vault:
                    url = vault.file_url("small.bin")
                    curl_get(url, max_time=10)
                    status, headers = http_head(url)
                    if status != 200 or headers.get("x-cache") != "HIT":
                        raise RuntimeError(f"Vault is not serving a HIT: {status} {headers}")
                    results[f"Vault HIT (log_level {level})"] = bench(url)
                    if level == "INFO":
                        logged = vault.access_lines()

    print(f"\nsmall_rps: {args.size} B file, wrk -c{args.connections} -t{args.wrk_threads} "
          f"-d{args.duration}s; {environment()}")
    rows = [[name, f"{r.rps:.0f}", r.latency_avg, r.requests, r.errors]
            for name, r in results.items()]
    print_table(["server", "requests/s", "avg latency", "requests", "errors"], rows)
    vault = results["Vault HIT (log_level INFO)"].rps
    print(f"ratio Vault/nginx: {vault / results['nginx (sendfile, 1 worker)'].rps:.3f}   "
          f"ratio Vault/bare: {vault / results['bare waitress (32 threads)'].rps:.3f}")
    if "Vault HIT (log_level WARNING)" in results:
        print(f"Vault WARNING / INFO (cost of access logging): "
              f"{results['Vault HIT (log_level WARNING)'].rps / vault:.2f}x")
    print(f"(Vault at INFO wrote {logged} access-log lines)")


if __name__ == "__main__":
    main()
