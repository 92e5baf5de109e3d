#!/usr/bin/env bash
# Fresh-machine set-up shared by `npm test` and `npm start`: npm ci when the lockfile changed
# since the last install (so warm runs skip it), then the real servers, built once per machine.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '\n==> %s\n' "$*" >&2; }

lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f node_modules/.fedgate-lock-hash ] || [ "$(cat node_modules/.fedgate-lock-hash)" != "$lock_hash" ]; then
  say "npm ci"
  npm ci --no-audit --no-fund
  echo "$lock_hash" > node_modules/.fedgate-lock-hash
fi

say "server binaries (built once per machine, cached under ${FEDGATE_CACHE_DIR:-~/.cache/fedgate})"
node --import tsx test/env/build-binaries.ts
