#!/usr/bin/env bash
# Run every benchmark in bench/ in sequence and print all their tables.
# The output is also saved to bench/results/run-DATE.txt (git-ignored).
# Needs nginx (nginx-light is enough), wrk and curl; each script starts and stops its own
# servers on 127.0.0.1, works in its own temp dir (set BENCH_TMPDIR to move it; peak disk use
# ~2.5 GB, in rss.py) and first waits up to 2 minutes for a quiet machine (BENCH_QUIET_WAIT=
# whole seconds to change that, BENCH_NO_WAIT=1 not to wait).
# Takes about 5 minutes on an idle 2-CPU VM.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
missing=()
for tool in wrk curl; do command -v "$tool" >/dev/null || missing+=("$tool"); done
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
    echo "run_all.sh: missing ${missing[*]}; install e.g.: apt-get install nginx-light wrk curl" >&2
    exit 1
fi
mkdir -p bench/results
out="bench/results/run-$(date +%Y%m%d-%H%M%S).txt"
exec > >(tee "$out") 2>&1

echo "Artifact Vault benchmarks, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(git describe --always --dirty 2>/dev/null)"
failed=()
for script in hit_throughput small_rps cold_fill rss; do
    echo
    echo "##### bench/$script.py"
    # SIGTERM first: the script then stops the servers it started before it exits.
    timeout --kill-after=30 $((1500 + ${BENCH_QUIET_WAIT:-120})) "$PY" "bench/$script.py" || failed+=("$script (exit $?)")
done
echo
if [ ${#failed[@]} -gt 0 ]; then
    echo "run_all.sh: FAILED: ${failed[*]}"
    echo "(output saved to $out)"
    exit 1
fi
echo "run_all.sh: all benchmarks ran; output saved to $out"
