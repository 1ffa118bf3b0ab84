"""The hostile-input properties of tests/hostile.py at high example counts; prints a summary.

    .venv/bin/python bench/fuzz.py [--examples 20000] [--only NAME ...] [--seed N]

CI runs the same properties at Hypothesis' default count (tests/test_hostile_input.py); this
is the long run. Each property is run in-process (the WSGI app is called directly, upstream
calls are recorded and answered locally), so nothing listens and nothing leaves the machine.
A failing property prints Hypothesis' shrunk example; the exit status is the number of
properties that failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import traceback
from pathlib import Path

from hypothesis import HealthCheck, seed, settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import print_table  # noqa: E402

from tests.hostile import FuzzTarget, properties  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20000, help="examples per property")
    parser.add_argument("--only", nargs="*", default=None, help="property names to run")
    parser.add_argument("--seed", type=int, default=None, help="make the run repeatable")
    args = parser.parse_args()
    # Refused tokens and upstream 404s are logged by design; a 500 fails its property anyway.
    logging.getLogger("artifact_vault").setLevel(logging.CRITICAL)
    rows, failed = [], 0
    with tempfile.TemporaryDirectory(prefix="vault-fuzz-") as tmp:
        target = FuzzTarget(Path(tmp, "plain"))
        guarded = FuzzTarget(Path(tmp, "auth"), auth=True)
        run = settings(max_examples=args.examples, deadline=None, database=None,
                       suppress_health_check=list(HealthCheck))
        try:
            for name, prop in properties(target, guarded, run).items():
                if args.only and name not in args.only:
                    continue
                if args.seed is not None:
                    prop = seed(args.seed)(prop)
                started = time.monotonic()
                try:
                    prop()
                    outcome = "ok"
                except Exception:  # noqa: BLE001 - report every property, then fail
                    failed += 1
                    outcome = "FAILED"
                    traceback.print_exc()
                rows.append((name, args.examples, f"{time.monotonic() - started:.1f}", outcome))
                print(f"{name}: {outcome}", flush=True)
            target.check_upstream_urls()
            target.check_files_inside()
            rows.append(("(upstream URLs built by the app)", len(target.calls), "-", "on host"))
        finally:
            target.close()
            guarded.close()
    print_table(("property", "examples", "seconds", "result"), rows,
                title=f"Hostile-input fuzz, {args.examples} examples per property")
    return failed


if __name__ == "__main__":
    raise SystemExit(main())
