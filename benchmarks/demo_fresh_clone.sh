#!/usr/bin/env bash
# Times `make demo` on a fresh clone as a new user would run it: a new venv Python
# without uv on PATH (so the Makefile installs it with pip), an empty HOME (so uv's
# package cache, tether's embedding cache and data folder start empty).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/tether-fresh-XXXXXX)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/py"
git clone -q "$repo" "$work/clone"
cd "$work/clone"
start=$(date +%s.%N)
env HOME="$work/home" PATH="$work/py/bin:/usr/bin:/bin" VIRTUAL_ENV= make demo > "$work/demo.log" 2>&1
end=$(date +%s.%N)
tail -n 5 "$work/demo.log"
python3 -c "print(f'make demo on a fresh clone: {$end - $start:.1f} s (including uv and package installation)')"
