"""How the real llama.cpp scores an exported GGUF against fbquant's own scores of the packed model.

Usage: llama_cpp_agreement.py IDS_JSON NLL_F32 CTX GGUF LORA|- GREEDY_JSON
  IDS_JSON: `fbq tokenize MODEL --text F --paragraphs --bos --json` (the tokens `fbq perplexity` scores)
  NLL_F32: `fbq perplexity --nll-out` of the packed model on the same text and --ctx (its windows)
  GREEDY_JSON: `fbq generate --json` of the packed model (its prompt and greedy tokens)
Prints one JSON object: per-token |Δ log p| (max, mean) with and without the branch adapter, both perplexities,
how many greedy tokens agree, and llama.cpp's decode speed.
"""
import json
import math
import os
import struct
import subprocess
import sys

TOOLS = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "llama-cpp")


def llama_cpp(request):
    out = subprocess.run(["node", os.path.join(TOOLS, "score.mjs")], input=json.dumps(request), text=True,
                         capture_output=True, check=True)
    return json.loads(out.stdout)


def compare(ours_nll, reply):
    theirs = [-x for window in reply["logprobs"] for x in window]
    diffs = [abs(a - b) for a, b in zip(ours_nll, theirs)]
    return {"max_abs_dlogp": max(diffs), "mean_abs_dlogp": sum(diffs) / len(diffs),
            "llama_cpp_ppl": math.exp(sum(theirs) / len(theirs))}


def main(ids_json, nll_file, ctx, gguf, lora, greedy_json):
    ids = json.load(open(ids_json))["ids"]
    data = open(nll_file, "rb").read()
    ours = struct.unpack(f"<{len(data) // 4}f", data)
    ctx = int(ctx)
    windows = len(ours) // (ctx - 1)
    sequences = [ids[w * ctx:(w + 1) * ctx] for w in range(windows)]
    greedy = json.load(open(greedy_json))
    prompt, our_tokens = greedy["prompt_ids"], greedy["generated_ids"]
    request = {"model": gguf, "lora": None if lora == "-" else lora, "context": max(ctx, len(prompt) + len(our_tokens) + 8),
               "sequences": sequences, "greedy": {"prompt": prompt, "tokens": len(our_tokens)}}
    result = {"windows": windows, "ctx": ctx, "fbquant_ppl": math.exp(sum(ours) / len(ours))}
    reply = llama_cpp(request)
    result.update(compare(ours, reply))
    match = 0
    while match < min(len(our_tokens), len(reply["greedy"])) and our_tokens[match] == reply["greedy"][match]:
        match += 1
    result.update({"greedy_tokens": len(our_tokens), "greedy_agree": match, "llama_cpp_timing": reply["timing"]})
    if request["lora"]:
        request.update({"lora": None, "greedy": None})
        without = compare(ours, llama_cpp(request))
        result["without_branch"] = without
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    main(*sys.argv[1:])
