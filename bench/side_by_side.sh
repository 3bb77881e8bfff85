#!/usr/bin/env bash
# The side-by-side webhook benchmark (wrk; the raw SQLite and PostgreSQL floors, bare Flask, Node-RED 5.0.7
# and the hub) run against this checkout: ../shared/peers (or $PEERS_DIR) with its hub targets pointed here.
#
#   bash bench/side_by_side.sh                 # the table bench/README.md reports: ≈ 15 min
#   ROUNDS=1 DURATION=5 WARMUP=1 bash bench/side_by_side.sh      # a quick look, ≈ 3 min
#   TARGETS="floor-sqlite-sync hub-serve" bash bench/side_by_side.sh
#
# Once, as root: bash "$PEERS_DIR/install.sh" (wrk, a venv with gunicorn/Flask/psycopg, Node-RED and node 22),
# and this checkout's venv with gunicorn: .venv/bin/pip install -e '.[production]'.
# Every knob of the harness passes through (its README). What this adds: the hub targets run this checkout,
# the drain check (stored ≥ acknowledged, every event a lead) runs after every round rather than the last,
# and the default targets are the table's. PostgreSQL targets are skipped when nothing answers on
# 127.0.0.1:5432. Results and logs: the STATE folder the harness prints (table.md, results.jsonl, drain.jsonl).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS_DIR=${PEERS_DIR:-$ROOT/../shared/peers}
[ -x "$PEERS_DIR/run.sh" ] || [ -f "$PEERS_DIR/run.sh" ] || {
  echo "no side-by-side harness at $PEERS_DIR (set PEERS_DIR)" >&2; exit 1; }
export PEERS_HUB_SRC=$ROOT
export TARGETS=${TARGETS:-"floor-sqlite-sync nodered hub-run hub-serve floor-pg-sync hub-pg-serve"}
ROUNDS=${ROUNDS:-3}
export ROUNDS
export DRAIN_ROUNDS=${DRAIN_ROUNDS:-$(seq -s ' ' 1 "$ROUNDS")}
cd "$ROOT"
exec bash "$PEERS_DIR/run.sh"
