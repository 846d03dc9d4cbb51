#!/usr/bin/env bash
# Runs every Fuzz target of the module for a bounded time each (FUZZTIME, default 10s).
# The committed seed corpora live in each package's testdata/fuzz/<FuzzName>/.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-10s}
status=0
while IFS=: read -r file name; do
  pkg="./$(dirname "$file")"
  echo "== $pkg $name ($FUZZTIME)"
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg" || status=1
done < <(grep -rHoE '^func (Fuzz[A-Za-z0-9_]+)' --include='*_test.go' . | sed -E 's/^\.\///; s/:func /:/' | sort -u)
exit $status
