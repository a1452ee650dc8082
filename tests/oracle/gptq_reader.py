"""Independent reader of an exported GPTQ checkpoint (+ PEFT adapter), for tests/test_gptq_export.cpp.

Written from the shared EXPORT_FORMATS §1/§2/§4 and AutoGPTQ's own code, sharing nothing with the C++
exporter: safetensors parsed by hand, qweight/qzeros unpacked with the §1 formulas (AutoGPTQ
qlinear_cuda_old's unpack, 3-bit straddling included; v1 z = field + 1, v2 z = field), and re-packed with a
re-implementation of AutoGPTQ's pack() loop, whose words must equal the file's.

usage: gptq_reader.py DIR OUT   (Debian's /usr/bin/python3 with numpy)
Writes per linear OUT/NAME.codes.npy (uint8 [N, K], row-major out × in), NAME.zeros.npy (uint8 [N, K/g]),
NAME.scales.npy (uint16 f16 bits [N, K/g]); per adapter module NAME.lora_A.npy / NAME.lora_B.npy (uint16);
OUT/summary.json. Any failed check: a message on stderr and exit status 1.
"""
import json
import struct
import sys
from pathlib import Path

import numpy as np

DTYPES = {"I32": np.int32, "F16": np.float16, "F32": np.float32, "BF16": np.uint16}
PROJECTIONS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def check(condition, message):
    if not condition:
        sys.stderr.write("gptq_reader: " + message + "\n")
        sys.exit(1)


def read_safetensors(path):
    raw = Path(path).read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    header.pop("__metadata__", None)
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        array = np.frombuffer(raw[8 + header_len + begin:8 + header_len + end], dtype=DTYPES[entry["dtype"]])
        tensors[name] = (entry["dtype"], array.reshape(entry["shape"]))
    return tensors


def unpack_fields(words, bits):
    """[W, X] int32 packed along axis 0 → [W·32/b, X] field values (EXPORT_FORMATS §1 formulas)."""
    w = words.view(np.uint32).astype(np.uint64)
    mask = (1 << bits) - 1
    if bits in (2, 4, 8):
        per = 32 // bits
        k = np.arange(w.shape[0] * per)
        return ((w[k // per] >> (bits * (k % per))[:, None].astype(np.uint64)) & mask).astype(np.int64)
    assert bits == 3
    blocks = w.reshape(-1, 3, w.shape[1])
    w0, w1, w2 = blocks[:, 0], blocks[:, 1], blocks[:, 2]
    out = np.zeros((blocks.shape[0], 32, w.shape[1]), dtype=np.uint64)
    for j in range(32):
        if j < 10:
            q = (w0 >> np.uint64(3 * j)) & 7
        elif j == 10:
            q = ((w0 >> np.uint64(30)) & 3) | ((w1 & 1) << np.uint64(2))
        elif j < 21:
            q = (w1 >> np.uint64(3 * (j - 11) + 1)) & 7
        elif j == 21:
            q = ((w1 >> np.uint64(31)) & 1) | ((w2 & 3) << np.uint64(1))
        else:
            q = (w2 >> np.uint64(3 * (j - 22) + 2)) & 7
        out[:, j] = q
    return out.reshape(-1, w.shape[1]).astype(np.int64)


def autogptq_pack(intweight, bits):
    """AutoGPTQ qlinear_cuda_old.pack()'s loop over rows of intweight [K, X] → [K·b/32, X] uint32."""
    intweight = intweight.astype(np.uint64)
    qweight = np.zeros((intweight.shape[0] // 32 * bits, intweight.shape[1]), dtype=np.uint64)
    i = 0
    row = 0
    while row < qweight.shape[0]:
        if bits in (2, 4, 8):
            for j in range(i, i + (32 // bits)):
                qweight[row] |= intweight[j] << np.uint64(bits * (j - i))
            i += 32 // bits
            row += 1
        else:
            for j in range(i, i + 10):
                qweight[row] |= intweight[j] << np.uint64(3 * (j - i))
            i += 10
            qweight[row] |= intweight[i] << np.uint64(30)
            row += 1
            qweight[row] |= (intweight[i] >> np.uint64(2)) & 1
            i += 1
            for j in range(i, i + 10):
                qweight[row] |= intweight[j] << np.uint64(3 * (j - i) + 1)
            i += 10
            qweight[row] |= intweight[i] << np.uint64(31)
            row += 1
            qweight[row] |= (intweight[i] >> np.uint64(1)) & 0x3
            i += 1
            for j in range(i, i + 10):
                qweight[row] |= intweight[j] << np.uint64(3 * (j - i) + 2)
            i += 10
            row += 1
    return (qweight & 0xFFFFFFFF).astype(np.uint32)


def v1_to_v2_word_add(qzeros, bits, zeros):
    """GPTQModel's v1→v2 conversion for 2/4/8 bits adds 0b0..01 to every field of every word; it must not carry
    out of any word or field, i.e. the converted words read back (as v2) the same z."""
    constant = sum(1 << (bits * f) for f in range(32 // bits))
    added = qzeros.view(np.uint32).astype(np.uint64) + np.uint64(constant)
    check(bool((added < (1 << 32)).all()), "v1→v2 word add carries out of a 32-bit word")
    converted = added.astype(np.uint32).view(np.int32)
    check(np.array_equal(unpack_fields(converted.T, bits), zeros), "v1→v2 word add changes a zero point")


def read_linear(tensors, name, bits, group, v1, out_dir, summary):
    qweight = tensors[name + ".qweight"][1]
    qzeros = tensors[name + ".qzeros"][1]
    scales = tensors[name + ".scales"][1]
    g_idx = tensors[name + ".g_idx"][1]
    for suffix, dtype in (("qweight", "I32"), ("qzeros", "I32"), ("scales", "F16"), ("g_idx", "I32")):
        check(tensors[name + "." + suffix][0] == dtype, f"{name}.{suffix} is not {dtype}")
    k = g_idx.shape[0]
    n = qweight.shape[1]
    groups = k // group
    check(k % group == 0, f"{name}: group {group} does not divide K={k}")
    check(qweight.shape == (k * bits // 32, n), f"{name}.qweight shape {qweight.shape}")
    check(qzeros.shape == (groups, n * bits // 32), f"{name}.qzeros shape {qzeros.shape}")
    check(scales.shape == (groups, n), f"{name}.scales shape {scales.shape}")
    check(np.array_equal(g_idx, np.arange(k) // group), f"{name}.g_idx is not k // g")

    codes = unpack_fields(qweight, bits)  # [K, N]
    fields = unpack_fields(qzeros.T, bits)  # [N, G]
    if v1:
        check(bool((fields <= (1 << bits) - 2).all()), f"{name}: a v1 zero field is 2^b-1 (z = 2^b)")
    zeros = fields + (1 if v1 else 0)
    check(bool(((zeros >= (1 if v1 else 0)) & (zeros <= (1 << bits) - 1)).all()), f"{name}: zero point out of range")

    check(np.array_equal(autogptq_pack(codes, bits), qweight.view(np.uint32)), f"{name}: re-packed qweight differs")
    check(np.array_equal(autogptq_pack(fields, bits).T, qzeros.view(np.uint32)), f"{name}: re-packed qzeros differs")
    if v1 and bits != 3:
        v1_to_v2_word_add(qzeros, bits, fields + 1)
    # 3-bit v1→v2: GPTQModel shifts the decoded fields (its word constants would carry across the straddling
    # fields); that is representable exactly when every z ≤ 7, checked above.

    np.save(out_dir / f"{name}.codes.npy", np.ascontiguousarray(codes.T, dtype=np.uint8))
    np.save(out_dir / f"{name}.zeros.npy", np.ascontiguousarray(zeros, dtype=np.uint8))
    np.save(out_dir / f"{name}.scales.npy", np.ascontiguousarray(scales.T).view(np.uint16))
    summary["linears"] += 1
    summary["symmetric"] = summary["symmetric"] and bool((zeros == (1 << (bits - 1))).all())


def read_adapter(adapter_dir, layers, out_dir, summary):
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    tensors = read_safetensors(adapter_dir / "adapter_model.safetensors")
    r = config["r"]
    check(config["peft_type"] == "LORA" and config["task_type"] == "CAUSAL_LM", "adapter peft_type/task_type")
    check(config["lora_alpha"] == r and not config["use_rslora"] and not config["use_dora"], "adapter scaling is not 1")
    check(config["rank_pattern"] == {} and config["alpha_pattern"] == {}, "adapter has rank/alpha patterns")
    check(config["bias"] == "none" and config["modules_to_save"] is None, "adapter bias/modules_to_save")
    targets = config["target_modules"]
    expected = set()
    for layer in range(layers):
        for projection in PROJECTIONS:
            if projection.split(".")[1] in targets:
                name = f"model.layers.{layer}.{projection}"
                expected |= {f"base_model.model.{name}.lora_A.weight", f"base_model.model.{name}.lora_B.weight"}
    check(set(tensors) == expected, f"adapter keys differ: {sorted(set(tensors) ^ expected)[:4]}")
    for key, (dtype, values) in tensors.items():
        check(dtype == "F16", f"{key} is {dtype}")
        check(values.shape[0 if ".lora_A." in key else 1] == r, f"{key} shape {values.shape} is not rank {r}")
        name = key[len("base_model.model."):-len(".weight")]
        np.save(out_dir / f"{name}.npy", np.ascontiguousarray(values.view(np.uint16)))
    summary["adapter_rank"] = r
    summary["adapter_targets"] = targets


def main():
    model_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    config = json.loads((model_dir / "config.json").read_text())
    quant = config["quantization_config"]
    check(json.loads((model_dir / "quantize_config.json").read_text()) == quant, "quantize_config.json differs")
    check(config["torch_dtype"] == "float16", "torch_dtype is not float16")
    check(quant["quant_method"] == "gptq" and quant["pack_dtype"] == "int32", "quant_method/pack_dtype")
    for key in ("bits", "group_size", "desc_act", "sym", "checkpoint_format"):
        check(key in quant, f"quantization_config lacks {key}")
    check(0 < quant["damp_percent"] < 1, "damp_percent outside (0, 1)")
    bits, group, v1 = quant["bits"], quant["group_size"], quant["checkpoint_format"] == "gptq"
    tensors = read_safetensors(model_dir / "model.safetensors")
    layers = config["num_hidden_layers"]
    summary = {"linears": 0, "symmetric": True, "format": quant["checkpoint_format"]}
    for layer in range(layers):
        for projection in PROJECTIONS:
            read_linear(tensors, f"model.layers.{layer}.{projection}", bits, group, v1, out_dir, summary)
    for name in ("model.embed_tokens.weight", "model.norm.weight"):
        check(tensors[name][0] == "F16", f"{name} is not F16")
    check(quant["sym"] == summary["symmetric"], f"sym is {quant['sym']} but the zero points say {summary['symmetric']}")
    if (model_dir / "branch").exists():
        read_adapter(model_dir / "branch", layers, out_dir, summary)
    (out_dir / "summary.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
