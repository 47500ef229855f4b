#!/usr/bin/env bash
# Runs the same axon-bench load against axon and against Synapse on this machine, one
# after the other, each on its own PostgreSQL on loopback, and prints the figures side
# by side with ratios, plus each server's peak RSS and database size.
#
#   bench/compare.sh [axon-bench options...]     e.g. --seconds 10 --rate 500
#
# Environment: BENCH_DIR (default /tmp/axon-bench-compare), AXON_PORT (18448),
# SYNAPSE_PORT (18008), SKIP_SYNAPSE=1 to measure axon alone.
set -euo pipefail
cd "$(dirname "$0")/.."

work="${BENCH_DIR:-/tmp/axon-bench-compare}"
axon_port="${AXON_PORT:-18448}"
synapse_port="${SYNAPSE_PORT:-18008}"
target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$work"

echo "== building axon and axon-bench (release)" >&2
cargo build --release --bin axon --bin axon-bench >&2
bench="$target/release/axon-bench"

peak_rss_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# Adds resource figures to a report.
annotate() { # file rss_kib db_bytes
  python3 - "$@" <<'EOF'
import json, sys
path, rss, db = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
report = json.load(open(path))
report["results"]["resources"] = {"peak_rss_mib": rss / 1024, "database_mib": db / 2**20}
json.dump(report, open(path, "w"), indent=2)
EOF
}

pg_bindir() {
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/psql" ]; then
    pg_config --bindir
  else
    dirname "$(ls /usr/lib/postgresql/*/bin/psql | sort -V | tail -1)"
  fi
}

# ---- axon -------------------------------------------------------------------------------
echo "== axon on 127.0.0.1:$axon_port" >&2
rm -rf "$work/axon-data"
AXON_SERVER_NAME=localhost AXON_REGISTRATION__MODE=open AXON_RATE_LIMITS__ENABLED=false \
  AXON_PRESENCE__ENABLED=true AXON_LISTEN__CLIENT="127.0.0.1:$axon_port" \
  AXON_DATA_DIR="$work/axon-data" AXON_LOG=warn \
  "$target/release/axon" serve >"$work/axon.log" 2>&1 &
axon_pid=$!
trap 'kill $axon_pid 2>/dev/null || true' EXIT
"$bench" wait "http://127.0.0.1:$axon_port"
"$bench" run --url "http://127.0.0.1:$axon_port" --out "$work/axon.json" "$@"
axon_rss=$(peak_rss_kib "$axon_pid")
# The embedded cluster listens on a socket under the data directory; as root it runs as
# the postgres user, whose socket anyone local may use.
axon_db=$("$(pg_bindir)/psql" -h "$work/axon-data/pgrun" -U axon -d axon -Atc \
  "SELECT pg_database_size(current_database())")
kill "$axon_pid"
wait "$axon_pid" 2>/dev/null || true
trap - EXIT
annotate "$work/axon.json" "$axon_rss" "$axon_db"

if [ "${SKIP_SYNAPSE:-0}" = 1 ]; then
  "$bench" compare axon="$work/axon.json"
  exit 0
fi

# ---- Synapse ----------------------------------------------------------------------------
echo "== Synapse on 127.0.0.1:$synapse_port" >&2
bench/synapse.sh stop "$work/synapse" >/dev/null 2>&1 || true
# A fresh database each run (the venv stays), so its size is this run's.
rm -rf "$work/synapse/pg" "$work/synapse/media_store"
bench/synapse.sh start "$work/synapse" "$synapse_port"
trap 'bench/synapse.sh stop "$work/synapse" || true' EXIT
"$bench" run --url "http://127.0.0.1:$synapse_port" --out "$work/synapse.json" "$@"
synapse_rss=$(bench/synapse.sh rss "$work/synapse")
synapse_db=$(bench/synapse.sh dbsize "$work/synapse")
annotate "$work/synapse.json" "$synapse_rss" "$synapse_db"

echo >&2
"$bench" compare axon="$work/axon.json" synapse="$work/synapse.json" | tee "$work/comparison.txt"

# The latency-against-load plot, drawn with matplotlib from the Synapse venv.
venv_py="$work/synapse/venv/bin/python"
if "$venv_py" -c 'import matplotlib' 2>/dev/null \
    || "$venv_py" -m pip install -q matplotlib >&2; then
  "$venv_py" bench/plot.py "$work/latency.png" axon="$work/axon.json" synapse="$work/synapse.json" >&2 \
    || echo "plot failed (the figures above stand)" >&2
fi
