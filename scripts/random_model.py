#!/usr/bin/env python3
"""A random-weight model built with mlx-lm's own model classes, for benchmarks.

    .deps/venv/bin/python scripts/random_model.py OUT_DIR
        [--type qwen3_moe|gpt_oss|qwen3_next|qwen3_5|qwen3_5_moe]
        [--hidden 512] [--layers 8] [--experts 128] [--experts-per-token 8]
        [--expert-hidden 256] [--bits 4] [--dtype float16]

Writes OUT_DIR in the mlx-community layout (config.json, model.safetensors,
and a tokenizer, by default the SmolLM2 fixture's, whose vocabulary sets the
model's), so
that Orchard and mlx-lm load the same folder. The defaults are a
Qwen3-30B-A3B-shaped mixture of experts scaled to this machine: its real
expert count (128, 8 per token) at hidden size 512, about 0.4 billion
parameters. `--type gpt_oss` makes gpt-oss-20b's layout at the same scale
(sinks, YaRN, alternating sliding layers, 32 experts with 4 per token when
asked with --experts 32 --experts-per-token 4), its experts in MXFP4 and the
other layers in 8-bit affine, as mlx-community packs the real one.
`--type qwen3_next` makes Qwen3-Next's hybrid layout (gated DeltaNet and gated
attention layers, routed and shared experts); `qwen3_5` and `qwen3_5_moe` the
language model of Qwen3.5 (dense and MoE), its config nested under
`text_config` as released. The
weights are random (seeded): fine for speed, meaningless as text.
"""

import argparse
import importlib
import json
import shutil
import sys
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten, tree_map
from mlx_lm.utils import quantize_model, save_config, save_model

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER = ROOT / ".deps/models/SmolLM2-135M-Instruct-4bit"


def qwen3_moe_config(args) -> dict:
    heads = max(args.hidden // 64, 1)
    return {
        "model_type": "qwen3_moe",
        "hidden_size": args.hidden,
        "num_hidden_layers": args.layers,
        "intermediate_size": args.hidden * 3,
        "num_attention_heads": heads,
        "num_key_value_heads": max(heads // 2, 1),
        "head_dim": 64,
        "num_experts": args.experts,
        "num_experts_per_tok": args.experts_per_token,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "moe_intermediate_size": args.expert_hidden,
        "norm_topk_prob": True,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": False,
        "max_position_embeddings": 32768,
    }


def gpt_oss_config(args) -> dict:
    return {
        "model_type": "gpt_oss",
        "hidden_size": args.hidden,
        "num_hidden_layers": args.layers,
        "intermediate_size": args.expert_hidden,
        "num_attention_heads": max(args.hidden // 64, 1),
        "num_key_value_heads": max(args.hidden // 256, 1),
        "head_dim": 64,
        "num_local_experts": args.experts,
        "num_experts_per_tok": args.experts_per_token,
        "sliding_window": 128,
        "layer_types": ["sliding_attention", "full_attention"] * (args.layers // 2),
        "rms_norm_eps": 1e-5,
        "rope_theta": 150000,
        "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0,
                         "beta_slow": 1.0, "truncate": False,
                         "original_max_position_embeddings": 4096},
        "tie_word_embeddings": False,
        "max_position_embeddings": 131072,
    }


def qwen3_next_config(args) -> dict:
    """Qwen3-Next-80B-A3B's layout scaled down: three gated DeltaNet layers in
    four, gated attention rotating a quarter of each head, routed experts with
    a gated shared expert."""
    heads = max(args.hidden // 64, 1)
    return {
        "model_type": "qwen3_next",
        "hidden_size": args.hidden,
        "num_hidden_layers": args.layers,
        "intermediate_size": args.hidden * 3,
        "num_attention_heads": heads,
        "num_key_value_heads": max(heads // 2, 1),
        "head_dim": 64,
        "linear_num_key_heads": heads,
        "linear_num_value_heads": heads * 2,
        "linear_key_head_dim": 64,
        "linear_value_head_dim": 64,
        "linear_conv_kernel_dim": 4,
        "full_attention_interval": 4,
        "num_experts": args.experts,
        "num_experts_per_tok": args.experts_per_token,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "moe_intermediate_size": args.expert_hidden,
        "shared_expert_intermediate_size": args.expert_hidden,
        "norm_topk_prob": True,
        "partial_rotary_factor": 0.25,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000000.0,
        "tie_word_embeddings": False,
        "max_position_embeddings": 262144,
    }


def qwen3_5_config(args, moe: bool) -> dict:
    """Qwen3.5's language model, nested under `text_config` as released (the
    vision tower is left out: Orchard and mlx-lm read only the text part)."""
    text = qwen3_next_config(args)
    for key in ("model_type", "rope_theta", "partial_rotary_factor", "decoder_sparse_step",
                "mlp_only_layers"):
        text.pop(key)
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000000.0,
                               "partial_rotary_factor": 0.25, "mrope_section": [11, 11, 10]}
    if not moe:
        for key in ("num_experts", "num_experts_per_tok", "moe_intermediate_size",
                    "shared_expert_intermediate_size", "norm_topk_prob"):
            text.pop(key)
        text["tie_word_embeddings"] = True
    kind = "qwen3_5_moe" if moe else "qwen3_5"
    return {"model_type": kind, "text_config": text, "tie_word_embeddings": text["tie_word_embeddings"]}


CONFIGS = {
    "qwen3_moe": qwen3_moe_config,
    "gpt_oss": gpt_oss_config,
    "qwen3_next": qwen3_next_config,
    "qwen3_5": lambda args: qwen3_5_config(args, moe=False),
    "qwen3_5_moe": lambda args: qwen3_5_config(args, moe=True),
}


def mxfp4_experts(path, module):
    """gpt-oss's packing: experts in MXFP4, the other layers 8-bit affine."""
    if ".experts." in f"{path}.":
        return {"group_size": 32, "bits": 4, "mode": "mxfp4"}
    return {"group_size": 64, "bits": 8, "mode": "affine"}


def vocab_size(tokenizer: Path) -> int:
    """The model's vocabulary: its config's when the folder has one, else one
    past the largest id the tokenizer knows."""
    config = tokenizer / "config.json"
    if config.is_file():
        return json.loads(config.read_text())["vocab_size"]
    spec = json.loads((tokenizer / "tokenizer.json").read_text())
    ids = list(spec["model"]["vocab"].values()) + [t["id"] for t in spec.get("added_tokens", [])]
    return max(ids) + 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--type", default="qwen3_moe", choices=sorted(CONFIGS))
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--experts", type=int, default=128)
    parser.add_argument("--experts-per-token", type=int, default=8)
    parser.add_argument("--expert-hidden", type=int, default=256)
    parser.add_argument("--bits", type=int, default=4, choices=[0, 4, 8],
                        help="affine quantization (group size 64); 0 keeps the weights unquantized; "
                             "gpt_oss is packed as released instead (MXFP4 experts, 8-bit elsewhere)")
    parser.add_argument("--tokenizer", type=Path, default=TOKENIZER,
                        help="a folder with tokenizer.json and tokenizer_config.json (default: the "
                             "SmolLM2 fixture's); its vocabulary sets the model's")
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"],
                        help="of the weights, and so of the quantization scales and biases")
    args = parser.parse_args()
    if not (args.tokenizer / "tokenizer.json").is_file():
        sys.exit(f"random_model: no tokenizer at {args.tokenizer}: run `make setup`")

    config = CONFIGS[args.type](args)
    config["vocab_size"] = vocab_size(args.tokenizer)
    if "text_config" in config:
        config["text_config"]["vocab_size"] = config["vocab_size"]
    module = importlib.import_module(f"mlx_lm.models.{args.type}")
    mx.random.seed(0)
    model = module.Model(module.ModelArgs.from_dict(config))
    # Small weights keep the activations finite through the layers.
    model.update(tree_map(lambda w: w * 0.5, model.parameters()))
    model.set_dtype(getattr(mx, args.dtype))
    params = sum(w.size for _, w in tree_flatten(model.parameters()))
    if args.type == "gpt_oss" and args.bits:
        model, config = quantize_model(model, config, group_size=64, bits=8,
                                       quant_predicate=mxfp4_experts)
    elif args.bits:
        model, config = quantize_model(model, config, group_size=64, bits=args.bits)
    mx.eval(model.parameters())

    args.out.mkdir(parents=True, exist_ok=True)
    save_model(args.out, model)
    save_config(config, args.out / "config.json")
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        if (args.tokenizer / name).is_file():
            shutil.copy(args.tokenizer / name, args.out / name)
    experts = config.get("text_config", config).get("num_experts") or config.get("num_local_experts")
    shape = f", {experts} experts, {args.experts_per_token} per token" if experts else ", dense"
    print(f"wrote {args.out}: {config['model_type']}, {params / 1e6:.0f}M parameters, "
          f"{args.layers} layers{shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
