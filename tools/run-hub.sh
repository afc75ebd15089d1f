#!/usr/bin/env bash
# Installs whatever is missing, builds careloopd and the careloop CLI
# (optimised), and starts the hub on its embedded default: RocksDB under ./var,
# a dev log key generated on first start, listening on 127.0.0.1:7400, with
# the web console on http://127.0.0.1:7480/ (careloop demo seed adds logins).
# Extra arguments go to careloopd (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
cmake --preset release
cmake --build --preset release -j "$(nproc)"
echo "run-hub: the CLI is build/release/tools/careloop/careloop"
exec build/release/services/careloopd/careloopd --data-dir ./var "$@"
