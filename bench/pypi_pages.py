#!/usr/bin/env python3
"""The page phase of a cold uv install, alone: the 29 project pages of
bench/pypi_requirements.txt asked of a fresh Vault all at once, as uv asks for them.

uv's resolution waits for the last page to arrive (pydantic-core's, 6.4 MB), so this is the
part of a cold uv install that Vault's page parsing and rendering decide. Each round starts
Vault anew on an empty cache (the pypi_compare.py set-up: upstream https://pypi.org/simple/,
public_url set) and prints when the first and the last page arrived and the CPU seconds
Vault spent; the summary is the median over the rounds.

    .venv/bin/python bench/pypi_pages.py --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import cpu_seconds, guard, print_table  # noqa: E402
from bench.pypi_compare import JSON_ACCEPT, REQS, Vault, local_get  # noqa: E402


def projects() -> list[str]:
    return [line.split("==")[0].strip().lower().replace("_", "-")
            for line in REQS.read_text().splitlines() if line.strip() and line[0] != "#"]


def one_round(work: Path, names: list[str]) -> tuple[float, float, str, float]:
    """(first page s, last page s, the last page's project, Vault CPU s) of one cold round."""
    vault = Vault(work, None)
    vault.start()
    try:
        for _ in range(100):  # answering: the port is open and the app is built
            if local_get(vault.port, "/health", timeout=5)[0] == 200:
                break
            time.sleep(0.1)
        cpu0, t0 = cpu_seconds(vault.pid), time.monotonic()

        def page(name: str) -> tuple[float, str]:
            status, _, body = local_get(vault.port, f"/pypi/simple/{name}/",
                                        {"Accept": JSON_ACCEPT}, timeout=120)
            if status != 200 or not body:
                raise RuntimeError(f"{name}: HTTP {status}")
            return time.monotonic() - t0, name

        with ThreadPoolExecutor(len(names)) as pool:
            done = sorted(pool.map(page, names))
        return done[0][0], done[-1][0], done[-1][1], cpu_seconds(vault.pid) - cpu0
    finally:
        vault.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--time-limit", type=int, default=600, help="seconds, whole script")
    args = parser.parse_args()
    guard(args.time_limit)
    names = projects()
    rows = []
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="vault-pages-") as tmp:
            first, last, which, cpu = one_round(Path(tmp), names)
        rows.append((i + 1, f"{first:.2f}", f"{last:.2f}", which, f"{cpu:.2f}"))
        print(f"round {i + 1}: first page {first:.2f}s, last {last:.2f}s ({which}), "
              f"Vault CPU {cpu:.2f}s", file=sys.stderr, flush=True)
    print_table(["round", "first s", "last s", "last page", "vault cpu s"], rows,
                title=f"{len(names)} cold pages asked at once")
    print(f"median: last page {statistics.median(float(r[2]) for r in rows):.2f} s, "
          f"Vault CPU {statistics.median(float(r[4]) for r in rows):.2f} s")


if __name__ == "__main__":
    main()
