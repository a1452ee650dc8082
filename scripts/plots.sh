#!/usr/bin/env bash
# Plots of docs/RESULTS.md's quality tables (sections quality, fbquant-budgets-w4/w3/w2) as SVG files in
# docs/plots/, drawn by `fbq plot`, and the RESULTS.md section "plots" that shows them. Reads only the tables
# already in RESULTS.md: rerun it after any of those scripts. Usage: scripts/plots.sh
set -euo pipefail
cd "$(dirname "$0")/.."
FBQ=${FBQ:-build/fbq} DOC=${RESULTS_DOC:-docs/RESULTS.md}
[ -x "$FBQ" ] || { echo "build first: scripts/setup.sh" >&2; exit 1; }
SPECS=$(mktemp -d)
trap 'rm -rf "$SPECS"' EXIT
mkdir -p "$(dirname "$DOC")/plots"
for stem in $(python3 scripts/lib/plots.py specs "$DOC" "$SPECS"); do
  "$FBQ" plot "$SPECS/$stem.json" -o "$(dirname "$DOC")/plots/$stem.svg"
  echo "wrote $(dirname "$DOC")/plots/$stem.svg" >&2
done
python3 scripts/lib/plots.py section "$DOC"
echo "wrote section 'plots' of $DOC" >&2
