#!/usr/bin/env bash
# The one test command (`npm test`): sets up a fresh machine, then typechecks, lints and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*" >&2; }

bash test/env/setup.sh

say "typecheck"
npx tsc --noEmit -p tsconfig.json

say "lint"
npx eslint .

export NO_COLOR=1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# A run that hangs fails after TEST_RUN_TIMEOUT_S instead of holding CI until its deadline.
uvu() {
  timeout --kill-after=10 "${TEST_RUN_TIMEOUT_S:-600}" node --import tsx node_modules/uvu/bin.js "$@" 2>&1 | tee -a "$log"
}
uvu_in_private_network() {
  timeout --kill-after=10 "${TEST_RUN_TIMEOUT_S:-600}" node --import tsx test/env/run-in-private-network.ts \
    node --import tsx node_modules/uvu/bin.js "$@" 2>&1 | tee -a "$log"
}

say "unit tests"
uvu test/unit '\.test\.ts$' || status=1

# One process per integration file, so no file inherits another's leftover servers or timers.
# Files whose EndpointSlices point at workloads run in a private network namespace (test/env/private-network.ts).
for file in test/integration/*.test.ts; do
  name=$(basename "$file")
  say "integration: $name"
  if grep -q "privateHost()\|LocalClusterSet" "$file"; then
    uvu_in_private_network test/integration "^${name//./\\.}\$" || status=1
  else
    uvu test/integration "^${name//./\\.}\$" || status=1
  fi
done

total=$(awk '/^ *Total: +[0-9]+ *$/ {s += $2} END {print s + 0}' "$log")
passed=$(awk '/^ *Passed: +[0-9]+ *$/ {s += $2} END {print s + 0}' "$log")
skipped=$(awk '/^ *Skipped: +[0-9]+ *$/ {s += $2} END {print s + 0}' "$log")
failed=$((total - passed - skipped))
if [ "$failed" -eq 0 ] && [ "$status" -ne 0 ]; then
  # A test file crashed (say, failed to import) before uvu could count anything in it.
  echo "a test run exited non-zero without reporting a failed test; counting it as one" >&2
  failed=1
fi
[ "$failed" -eq 0 ] || status=1
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit "$status"
