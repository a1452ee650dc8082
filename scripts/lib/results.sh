# Sourced by the results scripts (quality.sh, fbquant_study.sh): environment checks, a quantize-and-score row
# runner that appends one JSON line per row to build/results/NAME.jsonl (per-token NLLs beside it in
# build/results/nll/KEY-TEXT.f32, for paired differences between rows), and the hand-off to render.py, which
# writes the section into docs/RESULTS.md. Rows already in the file are skipped only with --resume (a run
# stopped half-way picks up where it was); a plain run starts the file afresh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# Throughput runs: idle OpenMP threads sleep instead of spinning against whatever else shares the cores.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
FBQ=${FBQ:-build/fbq} MODEL=models/ref-llama-12m SHARED=../shared
NSAMPLES=${NSAMPLES:-64} VAL=${VAL:-0} WINDOWS=${WINDOWS:-0}  # calibration windows, held-out windows, PPL windows (0: whole file)
[ -x "$FBQ" ] || { echo "build first: scripts/setup.sh" >&2; exit 1; }
for f in train.txt sotu-test.txt moby-test.txt; do
  [ -f "$SHARED/data/$f" ] || { echo "missing $SHARED/data/$f (the shared reference data)" >&2; exit 1; }
done
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

results_open() {  # results_open NAME RESUME(0|1)
  mkdir -p build/results
  RESULTS=build/results/$1.jsonl
  [ "$2" = 1 ] || : > "$RESULTS"
  touch "$RESULTS"
}

score() {  # score MODEL_DIR TEXT_NAME NLL_FILE -> perplexity JSON; per-token NLLs into NLL_FILE (paired comparisons)
  "$FBQ" perplexity "$1" --text "$SHARED/data/$2-test.txt" --ctx 256 --max-windows "$WINDOWS" --nll-out "$3" --json 2>/dev/null
}

quantize_to() {  # quantize_to DIR BITS GROUP SEED QUANTIZE_ARGS... -> the quantize JSON summary (calibration: NSAMPLES, VAL)
  local dir=$1 bits=$2 group=$3 seed=$4; shift 4
  "$FBQ" quantize "$MODEL" -o "$dir" --bits "$bits" --group-size "$group" --calib "$SHARED/data/train.txt" \
    --nsamples "$NSAMPLES" --val-samples "$VAL" --seqlen 256 --seed "$seed" --no-eval --quiet --json "$@" 2>/dev/null
}

# row SECTION LABEL BITS GROUP TEXTS QUANTIZE_ARGS...: quantize with the current NSAMPLES/VAL/SEED, score on TEXTS
# ("sotu moby" or "moby"); BITS 16 with no arguments scores the original model.
row() {
  local section=$1 label=$2 bits=$3 group=$4 texts=$5; shift 5
  local key
  local seed=${SEED:-0}  # calibration windows and method seed; rows at seed 0 keep the keys they always had
  key=$(printf '%s|' "$section" "$label" "$bits" "$group" "$texts" "$NSAMPLES" "$VAL" "$WINDOWS" "$@" ${SEED:+seed=$SEED} |
        md5sum | cut -c1-16)
  if grep -q "\"key\":\"$key\"" "$RESULTS"; then echo "== $section: $label W$bits g$group (kept from an earlier run)" >&2; return; fi
  echo "== $section: $label W$bits g$group" >&2
  local dir=$MODEL quant=null report=null scores="" text
  if [ "$bits" != 16 ]; then
    dir=$WORK/q
    rm -rf "$dir"
    quant=$(quantize_to "$dir" "$bits" "$group" "$seed" "$@")
    report=$(python3 scripts/lib/render.py summarize "$dir/quant_report.json")
  fi
  mkdir -p build/results/nll
  for text in $texts; do scores+=",\"$text\":$(score "$dir" "$text" "build/results/nll/$key-$text.f32")"; done
  printf '{"key":"%s","section":"%s","label":"%s","bits":%s,"group":%s,"nsamples":%s,"val":%s,"windows":%s,"seed":%s,"quant":%s,"report":%s%s}\n' \
    "$key" "$section" "$label" "$bits" "$group" "$NSAMPLES" "$VAL" "$WINDOWS" "$seed" "$quant" "$report" "$scores" >> "$RESULTS"
}

render() {  # render SECTION: rewrite that section of $RESULTS_DOC (docs/RESULTS.md) from $RESULTS
  local doc=${RESULTS_DOC:-docs/RESULTS.md}
  python3 scripts/lib/render.py section "$1" "$RESULTS" "$doc"
  echo "wrote section '$1' of $doc" >&2
}
