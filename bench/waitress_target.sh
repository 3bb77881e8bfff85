#!/usr/bin/env bash
# A side-by-side target: `hub serve` on waitress ([server] engine = "waitress"), to measure the two web
# engines in one run. The harness's own hub start script, given this checkout's example config with the engine
# set, so that the store, the count and the drain are the other hub targets' own:
#
#   PEERS_HUB_CMD_hub_serve_waitress="bash $PWD/bench/waitress_target.sh" \
#     TARGETS="floor-sqlite-sync hub-serve hub-serve-waitress" bash bench/side_by_side.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS_DIR=${PEERS_DIR:-$ROOT/../shared/peers}
SRC=$(mktemp -d)
sed 's/^\[server\]$/[server]\nengine = "waitress"/' "$ROOT/config.example.toml" >"$SRC/config.example.toml"
grep -q '^engine = "waitress"' "$SRC/config.example.toml" || { echo "no [server] table in config.example.toml" >&2; exit 1; }
export PEERS_HUB_SRC=$SRC PEERS_HUB_VENV=${PEERS_HUB_VENV:-$ROOT/.venv}
exec bash "$PEERS_DIR/hub/start.sh" serve
