#!/usr/bin/python3
"""Writes the small seed inputs of the file-format fuzz harnesses into tests/corpus/ (Debian's /usr/bin/python3:
python3-sentencepiece trains the SentencePiece seed).

  fuzz/make_seeds.py [FBQ]   FBQ: the fbq binary (default build/fbq), used to quantize the tiny model

Seeds: a tiny Hugging Face LLaMA (one file and two shards), the same model packed by `fbq quantize` (with its
quant_report.json and verdict.json) and a tokenizer_config.json with a chat template, each as a bundle of
files (fuzz/fuzz_files.h); a tiny llama2.c checkpoint and tokenizer.bin; calibration/evaluation text, a
JSONL task and CSV. The random weights come from a fixed seed: the seeds are reproducible but for the
timings in the packed model's reports.
"""
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "tests", "corpus")
FBQ = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "fbq")
rng = random.Random(0)

# dim 32 (one group of 32), GQA 2:1, two layers; vocab 4096 so the bundled tokenizer.model fits.
CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
          "num_attention_heads": 2, "num_key_value_heads": 1, "num_hidden_layers": 2, "vocab_size": 4096,
          "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
          "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16"}


def bf16(values):
    return b"".join(struct.pack("<f", v)[2:] for v in values)


def tensors():
    c = CONFIG
    d, h, kv = c["hidden_size"], c["intermediate_size"], c["hidden_size"] // c["num_attention_heads"]
    shapes = {"model.embed_tokens.weight": [c["vocab_size"], d], "model.norm.weight": [d]}
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        shapes.update({p + "input_layernorm.weight": [d], p + "post_attention_layernorm.weight": [d],
                       p + "self_attn.q_proj.weight": [d, d], p + "self_attn.k_proj.weight": [kv, d],
                       p + "self_attn.v_proj.weight": [kv, d], p + "self_attn.o_proj.weight": [d, d],
                       p + "mlp.gate_proj.weight": [h, d], p + "mlp.up_proj.weight": [h, d],
                       p + "mlp.down_proj.weight": [d, h]})
    out = {}
    for name, shape in shapes.items():
        n = shape[0] * (shape[1] if len(shape) > 1 else 1)
        values = [1.0] * n if len(shape) == 1 else [rng.gauss(0, 0.2) for _ in range(n)]
        out[name] = ("BF16", shape, bf16(values))
    return out


def safetensors(named, metadata=None):
    header, offset, blobs = ({"__metadata__": metadata} if metadata else {}), 0, []
    for name, (dtype, shape, data) in named.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def read_safetensors(data):
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    metadata = header.pop("__metadata__", None)
    return {name: (e["dtype"], e["shape"], data[8 + n + e["data_offsets"][0]:8 + n + e["data_offsets"][1]])
            for name, e in header.items()}, metadata


def small_vocab(files, vocab=32):
    """The model files with the embedding cut to VOCAB rows: fuzzing mutates every byte of a seed, and the
    4096-row table the tokenizer needed for quantizing is 256 KB of nothing interesting."""
    config = json.loads(files["config.json"])
    config["vocab_size"] = vocab
    tensors, metadata = read_safetensors(files["model.safetensors"])
    dtype, shape, data = tensors["model.embed_tokens.weight"]
    tensors["model.embed_tokens.weight"] = (dtype, [vocab, shape[1]], data[:len(data) // shape[0] * vocab])
    return {**files, "config.json": json.dumps(config, indent=1).encode(),
            "model.safetensors": safetensors(tensors, metadata)}


def bundle(files):
    """The bundle format of fuzz/fuzz_files.h: each file as a line "@@ NAME" followed by its bytes."""
    return b"".join(b"@@ " + name.encode() + b"\n" + data for name, data in files.items())


def write(subdir, name, data):
    os.makedirs(os.path.join(CORPUS, subdir), exist_ok=True)
    with open(os.path.join(CORPUS, subdir, name), "wb") as f:
        f.write(data)


def model_dir_seeds():
    named = tensors()
    config = json.dumps(CONFIG, indent=1).encode()
    small = small_vocab({"config.json": config, "model.safetensors": safetensors(named)})
    write("model_dir", "hf_one_file.bundle", bundle(small))
    small_named, _ = read_safetensors(small["model.safetensors"])
    names = sorted(small_named)
    halves = [{n: small_named[n] for n in names[:len(names) // 2]}, {n: small_named[n] for n in names[len(names) // 2:]}]
    shard_names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    index = {"metadata": {}, "weight_map": {n: shard_names[i] for i, half in enumerate(halves) for n in half}}
    write("model_dir", "hf_sharded.bundle", bundle({"config.json": small["config.json"],
                                                   "model.safetensors.index.json": json.dumps(index).encode(),
                                                   **{s: safetensors(h) for s, h in zip(shard_names, halves)}}))
    tokenizer_config = {"bos_token": "<s>", "eos_token": "</s>",
                        "chat_template": open(os.path.join(CORPUS, "chat_templates", "llama2.jinja")).read()}
    write("model_dir", "chat_config.bundle", bundle({**small, "tokenizer_config.json": json.dumps(tokenizer_config).encode()}))
    work = tempfile.mkdtemp()
    try:
        src = os.path.join(work, "tiny")
        os.makedirs(src)
        open(os.path.join(src, "config.json"), "wb").write(config)
        open(os.path.join(src, "model.safetensors"), "wb").write(safetensors(named))
        out = os.path.join(work, "packed")
        subprocess.run([FBQ, "quantize", src, "-o", out, "--tokenizer",
                        os.path.join(ROOT, "models", "ref-llama-12m", "tokenizer.model"), "--method", "fbquant",
                        "--bits", "3", "--group-size", "32", "--rank", "4", "--nsamples", "2", "--val-samples", "1",
                        "--seqlen", "32", "-O", "steps=10", "--eval-ctx", "32", "--quiet"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        files = {n: open(os.path.join(out, n), "rb").read()
                 for n in ("config.json", "model.safetensors", "quant_report.json", "verdict.json")}
        write("model_dir", "packed_w3_rank4.bundle", bundle(small_vocab(files)))
    finally:
        shutil.rmtree(work)


def sentencepiece_seed():
    """A 300-piece BPE model with byte fallback trained on the bundled calibration text (the bundled 4096-piece
    tokenizer.model is 300 KB, mostly its NFKC table: too large a seed to mutate)."""
    import sentencepiece as spm
    work = tempfile.mkdtemp()
    try:
        spm.SentencePieceTrainer.train(input=os.path.join(ROOT, "data", "calib.txt"), model_prefix=os.path.join(work, "m"),
                                       vocab_size=300, model_type="bpe", byte_fallback=True, character_coverage=0.98,
                                       input_sentence_size=2000, shuffle_input_sentence=False, num_threads=1, normalization_rule_name="identity",
                                       minloglevel=2)
        write("sentencepiece", "bpe_300.model", open(os.path.join(work, "m.model"), "rb").read())
    finally:
        shutil.rmtree(work)


def llama2c_seeds():
    # run.c's header: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (negative: untied), seq_len.
    dim, hidden, layers, heads, kv_heads, vocab, seq = 16, 32, 1, 2, 1, 32, 16
    head = dim // heads
    counts = [vocab * dim, layers * dim, layers * dim * dim, layers * dim * kv_heads * head,
              layers * dim * kv_heads * head, layers * dim * dim, layers * dim, layers * hidden * dim,
              layers * dim * hidden, layers * hidden * dim, dim, seq * head // 2, seq * head // 2]
    floats = [rng.gauss(0, 0.2) for _ in range(sum(counts))]
    write("llama2c", "tiny.bin", struct.pack("<7i", dim, hidden, layers, heads, kv_heads, vocab, seq) +
          struct.pack(f"<{len(floats)}f", *floats))
    # tokenizer.bin: max_token_length, then per token: score (f32), length (i32), bytes. The harness reads
    # the vocabulary size from the input's first byte (+1).
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(16)] + ["▁the", "▁a", "he", "ll", "o", "▁",
                                                                               "e", "t", "a", "n", "s", "r", "d"]
    body = b"".join(struct.pack("<fi", -float(i), len(p.encode())) + p.encode() for i, p in enumerate(pieces))
    write("llama2c_tokenizer", "tiny.bin", bytes([len(pieces) - 1]) + struct.pack("<i", 8) + body)


def text_seeds():
    write("text", "paragraphs.txt", "A first paragraph, with café and 日本語.\n\nA second one\nover two lines.\n".encode())
    write("text", "task.jsonl", b'{"context": "The sky is", "choices": [" blue", " green"], "gold": 0}\n'
          b'{"context": "Two and two make", "choices": [" four", " five", " six"], "gold": 0}\n')
    write("text", "table.csv", b'question,answer\n"a, quoted ""field""",yes\nplain,no\n')


def zeroshot_seeds():
    """One hand-written record per lm-eval format (fuzz_zeroshot writes its input as every task's file)."""
    import bz2
    write("zeroshot", "arc.jsonl", b'{"id": "q1", "question": {"stem": "Which is a gas?", "choices": [{"text": "air", '
          b'"label": "A"}, {"text": "rock", "label": "B"}]}, "answerKey": "A"}\n')
    write("zeroshot", "piqa.jsonl", b'{"goal": "Open a jar.", "sol1": "Twist the lid.", "sol2": "Freeze it."}\n')
    write("zeroshot", "piqa-labels.lst", b"0\n")
    write("zeroshot", "hellaswag.txt.bz2", bz2.compress(b"A man sits down. He\n2\nflies.\nsings.\nreads a book.\nswims.\n"))
    write("zeroshot", "winogrande.jsonl", b'{"sentence": "The cup fell off the table because _ was slippery.", '
          b'"option1": "the cup", "option2": "the table", "answer": "2"}\n')
    write("zeroshot", "boolq.jsonl", b'{"question": "is the sky blue", "passage": "The sky is blue.", "label": true}\n')
    write("zeroshot", "openbookqa.jsonl", b'{"id": "7", "question": {"stem": "The sun is a", "choices": [{"text": "star", '
          b'"label": "A"}, {"text": "moon", "label": "B"}]}, "answerKey": "A"}\n')
    write("zeroshot", "lambada.jsonl", b'{"text": "She opened the door and saw her old friend"}\n')
    write("zeroshot", "mmlu.csv", b'"What is 2+2?",3,4,5,6,B\n')


if __name__ == "__main__":
    model_dir_seeds()
    llama2c_seeds()
    text_seeds()
    zeroshot_seeds()
    sentencepiece_seed()
    print(f"wrote seeds under {CORPUS}")
