#!/usr/bin/env bash
# Presets table (section "presets" of docs/RESULTS.md): runs `fbq quantize models/ref-llama-12m --preset P`
# for every preset exactly as a user would (bundled data/calib.txt, the verdict on the bundled data/eval.txt)
# and scores each result on sotu-test and moby-test (ctx 256, whole files), paired against the FP model.
# Usage: scripts/presets.sh [--resume]   (--resume: keep presets already measured)
resume=0
for arg in "$@"; do
  case "$arg" in
    --resume) resume=1 ;;
    *) echo "usage: $0 [--resume]" >&2; exit 2 ;;
  esac
done
source "$(dirname "$0")/lib/results.sh"
results_open presets "$resume"

preset_row() {  # preset_row NAME (NAME "FP": the original model, scored only)
  local name=$1 key dir=$MODEL verdict=null report=null scores="" text summary="" load=null
  key=$(printf 'presets|%s|%s' "$name" "$WINDOWS" | md5sum | cut -c1-16)
  if grep -q "\"key\":\"$key\"" "$RESULTS"; then echo "== presets: $name (kept from an earlier run)" >&2; return; fi
  echo "== presets: $name" >&2
  if [ "$name" != FP ]; then
    dir=$WORK/q
    rm -rf "$dir"
    verdict=$("$FBQ" quantize "$MODEL" -o "$dir" --preset "$name" --quiet --json 2>/dev/null)
    load=$(cut -d' ' -f1 /proc/loadavg)  # the times are only as good as the machine was quiet
    report=$(python3 scripts/lib/render.py summarize "$dir/quant_report.json")
    summary=$("$FBQ" quantize --list-presets | sed -n "s/^$name  *//p")
  fi
  mkdir -p build/results/nll
  for text in sotu moby; do scores+=",\"$text\":$(score "$dir" "$text" "build/results/nll/$key-$text.f32")"; done
  printf '{"key":"%s","label":"%s","summary":%s,"verdict":%s,"report":%s,"load":%s%s}\n' "$key" "$name" \
    "$(printf '%s' "$summary" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')" \
    "$verdict" "$report" "$load" "$scores" >> "$RESULTS"
}

preset_row FP
for preset in $("$FBQ" quantize --list-presets | awk 'NF > 1 && $1 !~ /:$/ && $1 != "measured" {print $1}'); do
  preset_row "$preset"
done
render presets
