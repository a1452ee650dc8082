#!/usr/bin/python3
"""Test oracle for `fbq eval --samples-out FILE` (lm-evaluation-harness v0.4.x zero-shot scoring).

An independent PyTorch re-implementation: it rebuilds every scored document's requests from the
raw dataset files (data/zeroshot/LM_EVAL_FORMATS.md), tokenizes them like lm-eval's
`_encode_pair`, runs a float32 LLaMA forward and compares loglikelihoods, greedy flags,
pred / pred_norm, gold and truncation with what fbq wrote.

Run with Debian's interpreter (it has torch, numpy, sentencepiece):

  /usr/bin/python3 tests/oracle/zeroshot_oracle.py --model DIR --data DIR --samples FILE \
      [--bos on|off] [--tolerance 1e-3]
  /usr/bin/python3 tests/oracle/zeroshot_oracle.py --model DIR --data DIR --self-test
  /usr/bin/python3 tests/oracle/zeroshot_oracle.py --model DIR --data DIR --emit FILE --limit N \
      [--tasks arc_easy,mmlu,...]

Exit status: 0 all documents agree, 1 a mismatch (or bad input), 2 torch / numpy /
sentencepiece missing (callers skip the test then).
"""

import argparse
import bz2
import csv
import json
import math
import os
import struct
import sys
import time
from dataclasses import dataclass

# Debian's torch does its matmuls in OpenBLAS, which keeps its own thread pool: two BLAS
# threads plus torch's own OpenMP threads on two cores run about 3x slower than either alone.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

try:
    import numpy as np
    import sentencepiece as spm
    import torch
except ImportError as err:
    print(f"zeroshot_oracle: cannot import {err.name} ({err}); run it with /usr/bin/python3 "
          "(Debian python3-torch, python3-numpy, python3-sentencepiece)", file=sys.stderr)
    sys.exit(2)


# --------------------------------------------------------------------------------------------
# Documents: one builder per task, each returning every document of the task in file order.

@dataclass
class Doc:
    requests: list      # [(context, continuation)], in lm-eval request order
    gold: int
    choices: list       # doc_to_choice strings; their character lengths drive acc_norm


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def multiple_choice(context, choices, gold):
    # target_delimiter is " " for every task here.
    return Doc([(context, " " + c) for c in choices], gold, choices)


def arc_docs(path):
    docs = []
    for d in read_jsonl(path):
        texts = [c["text"] for c in d["question"]["choices"]]
        labels = [c["label"] for c in d["question"]["choices"]]
        docs.append(multiple_choice(f"Question: {d['question']['stem']}\nAnswer:", texts,
                                    labels.index(d["answerKey"])))
    return docs


def piqa_docs(data):
    with open(os.path.join(data, "piqa", "valid-labels.lst"), encoding="utf-8") as f:
        labels = [int(line) for line in f if line.strip()]
    rows = read_jsonl(os.path.join(data, "piqa", "valid.jsonl"))
    assert len(rows) == len(labels), "piqa: valid.jsonl and valid-labels.lst differ in length"
    return [multiple_choice(f"Question: {d['goal']}\nAnswer:", [d["sol1"], d["sol2"]], label)
            for d, label in zip(rows, labels)]


def hellaswag_docs(data):
    # llama.cpp format: 6 lines per doc (query, gold, 4 endings), already preprocessed by its
    # extractor. It does not reproduce lm-eval's capitalize/regex steps; it is used as is.
    with bz2.open(os.path.join(data, "hellaswag", "hellaswag_val_full.txt.bz2"), "rt",
                  encoding="utf-8", newline="\n") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    assert len(lines) % 6 == 0, "hellaswag: line count is not a multiple of 6"
    return [multiple_choice(lines[i], lines[i + 2:i + 6], int(lines[i + 1]))
            for i in range(0, len(lines), 6)]


def winogrande_docs(data):
    # "Multiple input": one context per option, one shared continuation (the text after the
    # blank); only that suffix is scored.
    docs = []
    for d in read_jsonl(os.path.join(data, "winogrande", "dev.jsonl")):
        idx = d["sentence"].index("_")
        contexts = [d["sentence"][:idx] + o for o in (d["option1"], d["option2"])]
        target = " " + d["sentence"][idx + 1:].strip()
        docs.append(Doc([(c, target) for c in contexts], {"1": 0, "2": 1}[d["answer"]], contexts))
    return docs


def boolq_docs(data):
    docs = []
    for d in read_jsonl(os.path.join(data, "boolq", "val.jsonl")):
        # The label must be a JSON bool: the upstream copy had the strings "true"/"false", and
        # bool("false") is True.
        assert isinstance(d["label"], bool), "boolq: label is not a JSON bool"
        docs.append(multiple_choice(f"{d['passage']}\nQuestion: {d['question']}?\nAnswer:",
                                    ["no", "yes"], int(d["label"])))
    return docs


def lambada_docs(data):
    # A single loglikelihood request per doc; gold is that request's index, 0.
    docs = []
    for d in read_jsonl(os.path.join(data, "lambada_openai", "lambada_test.jsonl")):
        words = d["text"].split(" ")
        docs.append(Doc([(" ".join(words[:-1]), " " + words[-1])], 0, [words[-1]]))
    return docs


def openbookqa_docs(data):
    docs = []
    for d in read_jsonl(os.path.join(data, "openbookqa", "test.jsonl")):
        texts = [c["text"] for c in d["question"]["choices"]]
        labels = [c["label"] for c in d["question"]["choices"]]
        docs.append(multiple_choice(d["question"]["stem"], texts,
                                    labels.index(d["answerKey"].lstrip())))
    return docs


def mmlu_docs(path, subject):
    description = ("The following are multiple choice questions (with answers) about "
                   f"{subject.replace('_', ' ')}.\n\n")
    docs = []
    with open(path, encoding="utf-8", newline="") as f:
        for question, a, b, c, d, answer in csv.reader(f):
            context = (f"{description}{question.strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\n"
                       "Answer:")
            docs.append(multiple_choice(context, ["A", "B", "C", "D"], "ABCD".index(answer)))
    return docs


# acc_norm policy per task: "yes" = fbq must report pred_norm, "no" = it must be null,
# "optional" = lm-eval does not report it, compared only when fbq wrote one.
BASE_TASKS = {
    "arc_easy": (lambda data: arc_docs(os.path.join(data, "arc_easy", "ARC-Easy-Test.jsonl")), "yes"),
    "arc_challenge": (lambda data: arc_docs(os.path.join(data, "arc_challenge",
                                                         "ARC-Challenge-Test.jsonl")), "yes"),
    "piqa": (piqa_docs, "yes"),
    "hellaswag": (hellaswag_docs, "yes"),
    "winogrande": (winogrande_docs, "no"),
    "boolq": (boolq_docs, "optional"),
    "openbookqa": (openbookqa_docs, "yes"),
    "lambada_openai": (lambada_docs, "no"),
}


class TaskData:
    """Loads each task's documents on first use."""

    def __init__(self, data_dir):
        self.data = data_dir
        self.cache = {}

    def mmlu_path(self, subject):
        return os.path.join(self.data, "mmlu", "test", f"{subject}_test.csv")

    def mmlu_subjects(self):
        return sorted(f[:-len("_test.csv")] for f in os.listdir(os.path.join(self.data, "mmlu", "test"))
                      if f.endswith("_test.csv"))

    def known(self, task):
        if task in BASE_TASKS:
            return True
        return task.startswith("mmlu_") and os.path.isfile(self.mmlu_path(task[len("mmlu_"):]))

    def norm_policy(self, task):
        return BASE_TASKS[task][1] if task in BASE_TASKS else "optional"

    def docs(self, task):
        if task not in self.cache:
            if task in BASE_TASKS:
                self.cache[task] = BASE_TASKS[task][0](self.data)
            else:
                subject = task[len("mmlu_"):]
                self.cache[task] = mmlu_docs(self.mmlu_path(subject), subject)
        return self.cache[task]


# --------------------------------------------------------------------------------------------
# Model: HF LLaMA in float32.

def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        buf = raw[base + start:base + end]
        if info["dtype"] == "BF16":
            # bf16 is the top half of an f32: widening is exact.
            arr = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] == "F16":
            arr = np.frombuffer(buf, dtype="<f2").astype(np.float32)
        elif info["dtype"] == "F32":
            arr = np.frombuffer(buf, dtype="<f4").copy()
        else:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        tensors[name] = torch.from_numpy(arr.reshape(info["shape"]))
    return tensors


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Llama:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        if cfg.get("rope_scaling"):
            raise ValueError("rope_scaling is not supported by this oracle")
        self.n_heads = cfg["num_attention_heads"]
        self.n_kv = cfg.get("num_key_value_heads", self.n_heads)
        self.head_dim = cfg.get("head_dim") or cfg["hidden_size"] // self.n_heads
        self.eps = cfg["rms_norm_eps"]
        self.max_length = cfg["max_position_embeddings"]
        self.bos_id = cfg.get("bos_token_id")
        theta = cfg.get("rope_theta", 10000.0)
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32)
                                         / self.head_dim))

        w = read_safetensors(os.path.join(model_dir, "model.safetensors"))
        self.embed = w["model.embed_tokens.weight"]
        self.norm = w["model.norm.weight"]
        self.lm_head = self.embed if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
        # Linear weights are stored transposed once so the forward is plain x @ W.
        self.layers = []
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            self.layers.append({
                "ln1": w[p + "input_layernorm.weight"],
                "ln2": w[p + "post_attention_layernorm.weight"],
                **{n: w[p + f"self_attn.{n}_proj.weight"].t().contiguous() for n in "qkvo"},
                **{n: w[p + f"mlp.{n}_proj.weight"].t().contiguous() for n in ("gate", "up", "down")},
            })

    def forward(self, ids, cache=None, last=0):
        """Runs ids at the positions after those held in cache.

        cache: per-layer (k, v) of earlier positions from a previous call, or None.
        Returns (float32 logits [last, vocab] of the last `last` positions, the cache extended
        by ids). Because attention is causal, a prefix run once and its cache reused gives the
        same logits as running prefix + ids in one go.
        """
        start = cache[0][0].shape[1] if cache else 0
        t = len(ids)
        x = self.embed[torch.tensor(ids, dtype=torch.long)]
        freqs = torch.outer(torch.arange(start, start + t, dtype=torch.float32), self.inv_freq)
        angles = torch.cat((freqs, freqs), dim=-1)
        cos, sin = angles.cos(), angles.sin()
        mask = torch.full((t, start + t), float("-inf")).triu(start + 1)
        rep = self.n_heads // self.n_kv
        new_cache = []
        for i, L in enumerate(self.layers):
            h = rms_norm(x, L["ln1"], self.eps)
            q = (h @ L["q"]).view(t, self.n_heads, self.head_dim).transpose(0, 1)
            k = (h @ L["k"]).view(t, self.n_kv, self.head_dim).transpose(0, 1)
            v = (h @ L["v"]).view(t, self.n_kv, self.head_dim).transpose(0, 1)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            if cache:
                k = torch.cat((cache[i][0], k), dim=1)
                v = torch.cat((cache[i][1], v), dim=1)
            new_cache.append((k, v))
            # GQA: query head j reads kv head j // rep (HF repeat_kv).
            k = k.repeat_interleave(rep, dim=0)
            v = v.repeat_interleave(rep, dim=0)
            att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(self.head_dim) + mask, dim=-1)
            x = x + (att @ v).transpose(0, 1).reshape(t, -1) @ L["o"]
            h = rms_norm(x, L["ln2"], self.eps)
            x = x + (torch.nn.functional.silu(h @ L["gate"]) * (h @ L["up"])) @ L["down"]
        x = x[t - last:]
        return rms_norm(x, self.norm, self.eps) @ self.lm_head.t(), new_cache


def check_reference(model, model_dir):
    ids_path = os.path.join(model_dir, "reference_ids.npy")
    logits_path = os.path.join(model_dir, "reference_logits.npy")
    if not (os.path.isfile(ids_path) and os.path.isfile(logits_path)):
        print(f"oracle: {model_dir} has no reference_ids.npy/reference_logits.npy; "
              "forward not cross-checked")
        return
    ids = np.load(ids_path).astype(np.int64).tolist()
    want = torch.from_numpy(np.load(logits_path).astype(np.float32))
    diff = (model.forward(ids, last=len(ids))[0] - want).abs().max().item()
    assert diff < 1e-3, f"oracle forward disagrees with reference_logits.npy: max |diff| {diff:.3g}"
    print(f"oracle: forward matches reference logits (max |diff| {diff:.2e})")


# --------------------------------------------------------------------------------------------
# Scoring (lm-eval HF backend: _encode_pair, _loglikelihood_tokens).

@dataclass
class Score:
    ll: float
    greedy: bool
    truncated: bool


class Scorer:
    def __init__(self, model, sp, bos):
        self.model = model
        self.sp = sp
        self.prefix = [model.bos_id if model.bos_id is not None else sp.bos_id()] if bos else []

    def encode_pair(self, context, continuation):
        if context == "":
            # lm-eval then uses [prefix_token_id] as the context; no task here has an empty one.
            raise ValueError("empty context is not supported by this oracle")
        # Trailing context whitespace belongs to the continuation, and the continuation tokens
        # are cut from the joint encoding, so tokens that merge across the boundary count
        # as continuation.
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.prefix + self.sp.encode(context + continuation)
        ctx = self.prefix + self.sp.encode(context)
        return ctx, whole[len(ctx):]

    def score_doc(self, requests, share_prefix=True):
        """Scores a document's requests, one forward per distinct model input.

        With share_prefix, the token prefix common to all of the document's inputs (the
        context, mostly) is run once and its KV cache reused: 2-4x less work on MMLU, BoolQ,
        ARC. --self-test checks it against separate full forwards.
        """
        max_len = self.model.max_length
        encoded = []
        rows = {}           # model input -> how many trailing logit rows some request needs
        for context, continuation in requests:
            ctx, cont = self.encode_pair(context, continuation)
            assert 0 < len(cont) <= max_len, f"continuation of {len(cont)} tokens cannot be scored"
            inp = tuple((ctx + cont)[-(max_len + 1):][:-1])
            encoded.append((ctx, cont, inp))
            rows[inp] = max(rows.get(inp, 0), len(cont))

        # The shared part must end before the first logit row any request needs.
        shared = min(len(inp) - n for inp, n in rows.items()) if share_prefix else 0
        first = next(iter(rows))
        for inp in rows:
            shared = next((i for i, (a, b) in enumerate(zip(first[:shared], inp)) if a != b),
                          shared)
        cache = self.model.forward(list(first[:shared]))[1] if shared else None
        logits = {inp: self.model.forward(list(inp[shared:]), cache, last=n)[0]
                  for inp, n in rows.items()}

        scores = []
        for ctx, cont, inp in encoded:
            logprobs = torch.log_softmax(logits[inp][-len(cont):].double(), dim=-1)
            target = torch.tensor(cont, dtype=torch.long)
            scores.append(Score(
                ll=logprobs.gather(1, target[:, None]).sum().item(),
                greedy=bool((logprobs.argmax(dim=-1) == target).all()),
                truncated=len(ctx) + len(cont) > max_len + 1))
        return scores


def first_argmax(values):
    return max(range(len(values)), key=lambda i: (values[i], -i))


def normalized(lls, choices):
    return [ll / len(c) for ll, c in zip(lls, choices)]


# --------------------------------------------------------------------------------------------
# Checking fbq's samples file.

class Report:
    def __init__(self, tolerance):
        self.tol = tolerance
        self.tasks = {}         # task -> {"docs", "max_dll", "mismatches"}
        self.mismatches = []    # (task, doc_id, message)
        self.bad_docs = 0
        self.skipped = {}       # task -> count

    def task(self, name):
        return self.tasks.setdefault(name, {"docs": 0, "max_dll": 0.0, "mismatches": 0})

    def add(self, task, doc_id, problems):
        stats = self.task(task)
        stats["docs"] += 1
        stats["mismatches"] += len(problems)
        self.bad_docs += bool(problems)
        self.mismatches.extend((task, doc_id, p) for p in problems)


def check_pred(name, file_pred, file_scores, oracle_scores, tol):
    """Problems with a (pred | pred_norm) index; None when it agrees."""
    # fbq's own numbers must give its pred exactly (first maximum on ties) ...
    if file_pred != first_argmax(file_scores):
        return f"{name} {file_pred} is not the first argmax of fbq's own scores {file_scores}"
    # ... and the oracle must agree, unless the two candidates are closer than the tolerance
    # on each side allows to tell apart.
    want = first_argmax(oracle_scores)
    if file_pred != want and abs(oracle_scores[file_pred] - oracle_scores[want]) > 2 * tol:
        return f"{name} {file_pred} != oracle {want} (oracle scores {oracle_scores})"
    return None


SAMPLE_FIELDS = ("requests", "loglikelihoods", "greedy", "gold", "pred", "pred_norm", "truncated")


def check_doc(sample, doc, norm_policy, scorer, report):
    missing = [k for k in SAMPLE_FIELDS if k not in sample]
    if missing:
        return [f"fields missing: {', '.join(missing)}"]
    problems = []
    requests = [(r["context"], r["continuation"]) for r in sample["requests"]]
    if requests != doc.requests:
        if len(requests) != len(doc.requests):
            problems.append(f"{len(requests)} requests, oracle builds {len(doc.requests)}")
        for i, (got, want) in enumerate(zip(requests, doc.requests)):
            if got != want:
                problems.append(f"request {i} differs:\n      fbq    {got!r}\n      oracle {want!r}")
                break
        # Scores of different strings say nothing; stop here.
        return problems
    if sample["gold"] != doc.gold:
        problems.append(f"gold {sample['gold']} != oracle {doc.gold}")

    lls, greedy = sample["loglikelihoods"], sample["greedy"]
    if len(lls) != len(requests) or len(greedy) != len(requests):
        return problems + [f"{len(lls)} loglikelihoods / {len(greedy)} greedy for "
                           f"{len(requests)} requests"]
    scores = scorer.score_doc(doc.requests)
    stats = report.task(sample["task"])
    lls_agree = True
    for i, (ll, g, s) in enumerate(zip(lls, greedy, scores)):
        dll = abs(ll - s.ll) if isinstance(ll, (int, float)) and math.isfinite(ll) else math.inf
        stats["max_dll"] = max(stats["max_dll"], dll)
        if not dll <= report.tol:
            lls_agree = False
            problems.append(f"request {i}: ll {ll!r} vs oracle {s.ll:.6f} (|d| {dll:.3g})")
        if g is not s.greedy:
            problems.append(f"request {i}: greedy {g!r} vs oracle {s.greedy}")
    truncated = any(s.truncated for s in scores)
    if sample["truncated"] is not truncated:
        problems.append(f"truncated {sample['truncated']!r} vs oracle {truncated}")
    if not lls_agree:
        # pred / pred_norm would only repeat the disagreement.
        return problems

    oracle_lls = [s.ll for s in scores]
    p = check_pred("pred", sample["pred"], lls, oracle_lls, report.tol)
    problems += [p] if p else []
    pred_norm = sample["pred_norm"]
    if pred_norm is None:
        if norm_policy == "yes":
            problems.append("pred_norm is null; lm-eval reports acc_norm for this task")
    elif norm_policy == "no":
        problems.append(f"pred_norm {pred_norm} given; lm-eval has no acc_norm for this task")
    else:
        p = check_pred("pred_norm", pred_norm, normalized(lls, doc.choices),
                       normalized(oracle_lls, doc.choices), report.tol)
        problems += [p] if p else []
    return problems


def check_samples(path, tasks, scorer, tolerance):
    with open(path, encoding="utf-8") as f:
        samples = [json.loads(line) for line in f if line.strip()]
    if not samples:
        print(f"oracle: FAILED {path} holds no documents")
        return 1
    report = Report(tolerance)
    seen = {}
    for sample in samples:
        task, doc_id = sample["task"], sample["doc_id"]
        if not tasks.known(task):
            report.skipped[task] = report.skipped.get(task, 0) + 1
            continue
        seen.setdefault(task, []).append(doc_id)
        docs = tasks.docs(task)
        if not (isinstance(doc_id, int) and 0 <= doc_id < len(docs)):
            report.add(task, doc_id, [f"doc_id outside 0..{len(docs) - 1}"])
            continue
        report.add(task, doc_id, check_doc(sample, docs[doc_id], tasks.norm_policy(task),
                                           scorer, report))
    # --limit N semantics: each task contributes its first N documents, once each.
    for task, ids in seen.items():
        if len(set(ids)) != len(ids) or set(ids) != set(range(len(ids))):
            report.mismatches.append((task, "-", f"doc_ids are not 0..{len(ids) - 1} once each"))
            report.task(task)["mismatches"] += 1

    print(f"{'task':44s} {'docs':>5s} {'max|dll|':>10s} {'mismatches':>10s}")
    for task, s in report.tasks.items():
        print(f"{task:44s} {s['docs']:5d} {s['max_dll']:10.2e} {s['mismatches']:10d}")
    for task, n in report.skipped.items():
        print(f"oracle: skipped {n} documents of task {task!r} (not an lm-eval task it knows)")
    for task, doc_id, message in report.mismatches[:10]:
        print(f"  MISMATCH {task} doc {doc_id}: {message}")
    if len(report.mismatches) > 10:
        print(f"  ... {len(report.mismatches) - 10} more")
    checked = sum(s["docs"] for s in report.tasks.values())
    if report.mismatches:
        print(f"oracle: FAILED {len(report.mismatches)} mismatches in {report.bad_docs} "
              f"of {checked} documents")
        return 1
    print(f"oracle: OK {checked} documents")
    return 0


# --------------------------------------------------------------------------------------------
# --emit: a samples file from the oracle itself (to test the checker, or as a reference).

def emit_samples(path, task_names, limit, tasks, scorer):
    with open(path, "w", encoding="utf-8") as out:
        for task in task_names:
            for doc_id, doc in enumerate(tasks.docs(task)[:limit]):
                scores = scorer.score_doc(doc.requests)
                lls = [s.ll for s in scores]
                out.write(json.dumps({
                    "task": task, "doc_id": doc_id,
                    "requests": [{"context": c, "continuation": t} for c, t in doc.requests],
                    "loglikelihoods": lls,
                    "greedy": [s.greedy for s in scores],
                    "gold": doc.gold,
                    "pred": first_argmax(lls),
                    "pred_norm": (first_argmax(normalized(lls, doc.choices))
                                  if tasks.norm_policy(task) == "yes" else None),
                    "truncated": any(s.truncated for s in scores),
                }, ensure_ascii=False) + "\n")
    print(f"oracle: wrote {path}")


# --------------------------------------------------------------------------------------------
# --self-test: request builders against LM_EVAL_FORMATS.md.

# (task, doc_id) -> what LM_EVAL_FORMATS.md shows. Continuations the doc elides ("…") are
# compared as a prefix of the list.
WORKED_EXAMPLES = {
    ("arc_easy", 0): Doc(
        [("Question: Which statement best explains why photosynthesis is the foundation of most "
          "food webs?\nAnswer:", " Sunlight is the source of energy for nearly all ecosystems."),
         ("Question: Which statement best explains why photosynthesis is the foundation of most "
          "food webs?\nAnswer:", " Most ecosystems are found on land instead of in water.")],
        0, None),
    ("mmlu_abstract_algebra", 0): Doc(
        [("The following are multiple choice questions (with answers) about abstract algebra.\n\n"
          "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\n"
          "A. 0\nB. 4\nC. 2\nD. 6\nAnswer:", " " + letter) for letter in "ABCD"],
        1, None),
    ("winogrande", 0): Doc(
        [("Sarah was a much better surgeon than Maria so Sarah", " always got the easier cases."),
         ("Sarah was a much better surgeon than Maria so Maria", " always got the easier cases.")],
        1, None),
    # The llama.cpp-format file's version of lm-eval's example (ind 24): lower-case "he".
    ("hellaswag", 0): Doc(
        [("Roof shingle removal: A man is sitting on a roof. he",
          " is using wrap to wrap a pair of skis.")],
        3, None),
}

# Split sizes from SOURCES.md; mmlu is the total over its 57 subjects.
SPLIT_SIZES = {"arc_easy": 2376, "arc_challenge": 1172, "piqa": 1838, "hellaswag": 10042,
               "winogrande": 1267, "boolq": 3270, "lambada_openai": 5153, "openbookqa": 500}
MMLU_TOTAL = 14042


def self_test(tasks, scorer):
    failures = []
    max_cache_diff = 0.0
    for task in [*BASE_TASKS, "mmlu_abstract_algebra"]:
        for doc_id, doc in enumerate(tasks.docs(task)[:3]):
            shared = scorer.score_doc(doc.requests)
            full = scorer.score_doc(doc.requests, share_prefix=False)
            max_cache_diff = max([max_cache_diff] + [abs(a.ll - b.ll) for a, b in zip(shared, full)])
            if [a.greedy for a in shared] != [b.greedy for b in full]:
                failures.append(f"{task} #{doc_id}: greedy differs with the shared-prefix cache")
            print(f"== {task} #{doc_id}  gold {doc.gold}")
            previous = None
            for context, continuation in doc.requests:
                if context != previous:
                    print(f"   {context!r}")
                    previous = context
                print(f"     -> {continuation!r}")
            want = WORKED_EXAMPLES.get((task, doc_id))
            if want is None:
                continue
            ok = doc.requests[:len(want.requests)] == want.requests and doc.gold == want.gold
            if task == "hellaswag":
                ok = ok and doc.requests[-1][1] == " starts pulling up roofing on a roof."
            print(f"   LM_EVAL_FORMATS.md example: {'equal' if ok else 'DIFFERENT'}")
            if not ok:
                failures.append(f"{task} #{doc_id} differs from LM_EVAL_FORMATS.md")
    for task, size in SPLIT_SIZES.items():
        if len(tasks.docs(task)) != size:
            failures.append(f"{task}: {len(tasks.docs(task))} documents, expected {size}")
    mmlu = sum(len(tasks.docs("mmlu_" + s)) for s in tasks.mmlu_subjects())
    if mmlu != MMLU_TOTAL or len(tasks.mmlu_subjects()) != 57:
        failures.append(f"mmlu: {mmlu} documents in {len(tasks.mmlu_subjects())} subjects")
    print(f"oracle: shared-prefix cache vs full forwards: max |dll| {max_cache_diff:.2e}")
    if max_cache_diff > 1e-4:
        failures.append("the shared-prefix cache changes loglikelihoods")
    for f in failures:
        print(f"  FAILED {f}")
    print("oracle: self-test " + ("FAILED" if failures else "OK"))
    return 1 if failures else 0


# --------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="HF LLaMA dir (config.json, model.safetensors, "
                    "tokenizer.model)")
    ap.add_argument("--data", required=True, help="data/zeroshot directory")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--samples", help="JSONL written by fbq eval --samples-out")
    mode.add_argument("--self-test", action="store_true", help="check the request builders")
    mode.add_argument("--emit", metavar="FILE", help="write the oracle's own samples file")
    ap.add_argument("--bos", choices=("on", "off"), default="on",
                    help="prepend BOS to every encoding (lm-eval >= 0.4.9.2 default: on)")
    ap.add_argument("--tolerance", type=float, default=1e-3, help="max |ll difference| per request")
    ap.add_argument("--limit", type=int, default=50, help="--emit: documents per task")
    ap.add_argument("--tasks", help="--emit: comma-separated tasks; 'mmlu' means all 57 subjects "
                    "(default: all)")
    args = ap.parse_args()

    # Two cores: with an OpenBLAS-backed torch those are the BLAS threads set above, and torch's
    # own pool (elementwise ops) must stay at one thread or the two pools fight over the cores.
    torch.set_num_threads(2 if "BLAS_INFO=mkl" in torch.__config__.show() else 1)
    torch.set_grad_enabled(False)
    tasks = TaskData(args.data)
    model = Llama(args.model)
    check_reference(model, args.model)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.model, "tokenizer.model"))
    scorer = Scorer(model, sp, bos=args.bos == "on")
    if args.self_test:
        return self_test(tasks, scorer)

    start = time.time()
    if args.emit:
        names = []
        for name in (args.tasks.split(",") if args.tasks else [*BASE_TASKS, "mmlu"]):
            names += ["mmlu_" + s for s in tasks.mmlu_subjects()] if name == "mmlu" else [name]
        unknown = [n for n in names if not tasks.known(n)]
        if unknown:
            ap.error(f"unknown tasks: {', '.join(unknown)}")
        emit_samples(args.emit, names, args.limit, tasks, scorer)
        status = 0
    else:
        status = check_samples(args.samples, tasks, scorer, args.tolerance)
    print(f"oracle: {time.time() - start:.1f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
