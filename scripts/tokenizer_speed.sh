#!/usr/bin/env bash
# Tokenizer speed section of docs/RESULTS.md: one thread encoding the whole of train.txt (25 MB) with each
# tokenizer form, SentencePiece (libsentencepiece) beside fbquant's BPE engine. Best of REPEATS runs.
# Usage: scripts/tokenizer_speed.sh   (~2 min on an idle machine; run nothing else meanwhile)
set -euo pipefail
source "$(dirname "$0")/lib/results.sh"
REPEATS=${REPEATS:-3}
T=$SHARED/tokenizers
results_open tokenizer-speed 0
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
echo "== tokenizer speed on $cpu, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}" >&2
measure() {  # measure KIND FILE [TOKENIZE ARGS...]
  local kind=$1 file=$2 best="" line; shift 2
  [ -f "$file" ] || { echo "skipped (missing): $file" >&2; return; }
  for _ in $(seq "$REPEATS"); do
    line=$("$FBQ" -t 1 tokenize --tokenizer "$file" --text "$SHARED/data/train.txt" --stats --json "$@")
    best=$(printf '%s\n%s\n' "$best" "$line" | python3 -c 'import json,sys
rows=[json.loads(l) for l in sys.stdin if l.strip()]
print(json.dumps(max(rows, key=lambda r: r["mb_per_s"])))')
  done
  echo "$best" | python3 -c "import json,sys; r=json.load(sys.stdin); r['kind']='$kind'; r['repeats']=$REPEATS; print(json.dumps(r))" >> "$RESULTS"
  echo "   $kind $(basename "$file"): $(echo "$best" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["mb_per_s"], 2))') MB/s" >&2
}
measure "SentencePiece (.model)" "$T/llama2-tokenizer.model"
measure "byte-level BPE, vocab.json + merges.txt (gpt2)" "$T/gpt2-vocab.json"
measure "byte-level BPE, tiktoken (Llama 3)" "$T/llama3-tokenizer.model"
measure "byte-level BPE + NFC, vocab.json + merges.txt (qwen2)" "$T/qwen2-vocab.json" --pre qwen2
measure "byte-level BPE, tokenizer.json (Falcon)" "$T/falcon-tokenizer.json"
measure "byte-level BPE, GGUF (deepseek-llm)" "$T/ggml-vocab-deepseek-llm.gguf"
measure "SentencePiece-style BPE, tokenizer.json (LLaMA-2)" "$T/llama2-tokenizer.json"
measure "SentencePiece-style BPE, GGUF scores (LLaMA-2)" "$T/ggml-vocab-llama-spm.gguf"
render tokenizer-speed
