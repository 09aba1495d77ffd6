#!/usr/bin/env python3
"""Reference outputs from mlx-vlm for Orchard's vision tests (issue 12).

    .deps/venv/bin/python scripts/vision_reference.py model OUT_DIR [BITS]
        Writes a small random-weight Gemma 3 with images to OUT_DIR, built by
        mlx-vlm's own classes and saved in the mlx-community layout
        (config.json, model.safetensors, preprocessor_config.json), with the
        real Gemma 3 tokenizer from .deps/templates/gemma3. With BITS (4 or
        8), quantized as mlx-vlm's conversion does by default: every linear
        layer and embedding, the vision tower's included (groups of 32).

    .deps/venv/bin/python scripts/vision_reference.py run REQUEST.json OUT_DIR
        Loads the model with mlx-vlm's `load_model` and runs each case:

        {"model": "/abs/model/dir",
         "cases": [{"name": "two_images",
                    "tokens": [...],                  # prompt ids, image tokens included
                    "pixel_values": "/abs/pv.f32",    # raw little-endian float32
                    "shape": [2, 3, 32, 32],          # (images, channels, height, width)
                    "greedy_tokens": 8}]}

        and writes <name>.logits.f32 (the last prompt position's logits, as
        float32) and result.json ({"cases": {name: {"greedy": [...]}}}).
        Greedy decoding is mlx-vlm's `generate` loop reduced to its steps:
        `get_input_embeddings` with the pixels, the language model on those
        embeddings, then one token at a time, argmax each time, no stops.

    .deps/venv/bin/python scripts/vision_reference.py qwen-tower OUT_DIR
        Writes a small random-weight Qwen2.5-VL vision tower (mlx-vlm's
        `VisionModel`, saved under `vision_tower.` with a config.json), random
        `pixel_values` for three inputs (two images and a two-frame video:
        QWEN_GRIDS) and what the tower makes of them: pixels.f32, grids.json,
        features.f32 (tokens, out_hidden_size), all little-endian float32.

The model's widths are both 64 (text hidden size and the config's top-level
`hidden_size`), where mlx-vlm's scaling of the image features is exactly 1,
as in transformers (see docs/vision.md).
"""

import json
import shutil
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER = ROOT / ".deps/templates/gemma3"

CONFIG = {
    "model_type": "gemma3",
    "architectures": ["Gemma3ForConditionalGeneration"],
    "hidden_size": 64,
    "image_token_index": 262144,
    "boi_token_index": 255999,
    "eoi_token_index": 256000,
    "mm_tokens_per_image": 16,
    "eos_token_id": [1, 106],
    "text_config": {
        "model_type": "gemma3_text",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "query_pre_attn_scalar": 16,
        "sliding_window": 16,
        "sliding_window_pattern": 2,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
        "mm_tokens_per_image": 16,
        "vocab_size": 262208,
        "rms_norm_eps": 1e-6,
    },
    "vision_config": {
        "model_type": "siglip_vision_model",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_attention_heads": 2,
        "num_hidden_layers": 2,
        "patch_size": 4,
        "image_size": 32,
        "vision_use_head": False,
    },
}

# What the released checkpoints' processors say, at the test model's size.
PREPROCESSOR = {
    "image_processor_type": "Gemma3ImageProcessor",
    "do_resize": True,
    "size": {"height": 32, "width": 32},
    "resample": 2,
    "do_rescale": True,
    "rescale_factor": 0.00392156862745098,
    "do_normalize": True,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "do_pan_and_scan": False,
    "processor_class": "Gemma3Processor",
}


def make_model(out: Path, bits: int) -> None:
    import mlx.nn as nn
    from mlx_vlm.models import gemma3
    from mlx_vlm.utils import get_class_predicate

    config = gemma3.ModelConfig.from_dict(CONFIG)
    config.text_config = gemma3.TextConfig.from_dict(CONFIG["text_config"])
    config.vision_config = gemma3.VisionConfig.from_dict(CONFIG["vision_config"])
    model = gemma3.Model(config)
    # Every parameter random (mlx-vlm starts norms and the projection at
    # constants, which would hide a misplaced one), small enough to keep
    # the activations finite; LayerNorm scales near 1.
    mx.random.seed(0)
    params = []
    for name, w in tree_flatten(model.parameters()):
        if w.ndim == 1:
            value = 0.1 * mx.random.normal(w.shape)
            if "layer_norm" in name or "layernorm" in name:
                value = value + 1.0
        else:
            fan_in = w.shape[-1] if w.ndim == 2 else int(np.prod(w.shape[1:]))
            value = mx.random.uniform(-1.0, 1.0, w.shape) * (1.5 / fan_in**0.5)
        params.append((name, value.astype(mx.float32)))
    model.update(tree_unflatten(params))
    # Gemma ties its head to the embeddings.
    language = model.language_model
    language.lm_head.weight = language.model.embed_tokens.weight
    config = dict(CONFIG)
    if bits:
        nn.quantize(model, group_size=32, bits=bits, class_predicate=get_class_predicate())
        config["quantization"] = {"group_size": 32, "bits": bits}
    weights = dict(tree_flatten(model.parameters()))
    if not bits:
        # mlx-vlm puts the head back from the embeddings at load. Quantized
        # checkpoints keep it, as mlx-vlm's conversion writes them.
        weights.pop("language_model.lm_head.weight")
    mx.eval(weights)
    out.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR, indent=2))
    (out / "processor_config.json").write_text(
        json.dumps({"image_seq_length": 16, "processor_class": "Gemma3Processor"}, indent=2)
    )
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TOKENIZER / name, out / name)
    print(f"wrote {out}")


def run(request_path: Path, out: Path) -> None:
    from mlx_vlm.utils import load_model

    request = json.loads(request_path.read_text())
    model = load_model(Path(request["model"]))
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for case in request["cases"]:
        ids = mx.array([case["tokens"]])
        pixels = np.fromfile(case["pixel_values"], dtype="<f4").reshape(case["shape"])
        cache = model.language_model.make_cache()
        # As mlx-vlm's generate does: the embeddings with the image
        # features, then the language model on them (attending causally;
        # the padding mask it returns is not passed on).
        embedded = model.get_input_embeddings(ids, mx.array(pixels), mask=mx.ones(ids.shape))
        output = model.language_model(ids, inputs_embeds=embedded.inputs_embeds, cache=cache)
        logits = output.logits[0, -1].astype(mx.float32)
        mx.eval(logits)
        np.array(logits, dtype="<f4").tofile(out / f"{case['name']}.logits.f32")
        greedy = []
        token = int(mx.argmax(logits).item())
        for _ in range(case.get("greedy_tokens", 0)):
            greedy.append(token)
            step = model.language_model(mx.array([[token]]), cache=cache).logits[0, -1]
            token = int(mx.argmax(step).item())
        results[case["name"]] = {"greedy": greedy}
    (out / "result.json").write_text(json.dumps({"cases": results}))


QWEN_TOWER = {
    "model_type": "qwen2_5_vl",
    "depth": 4,
    "hidden_size": 32,
    "intermediate_size": 64,
    "out_hidden_size": 48,
    "num_heads": 2,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [1, 3],
}
# (frames, rows, columns) in patches: windows cut by the edge, a grid of
# exactly one window, and a video of two frames.
QWEN_GRIDS = [[1, 12, 16], [1, 8, 8], [2, 4, 6]]


def qwen_tower(out: Path) -> None:
    from mlx_vlm.models.qwen2_5_vl.config import VisionConfig
    from mlx_vlm.models.qwen2_5_vl.vision import VisionModel

    mx.random.seed(1)
    tower = VisionModel(VisionConfig.from_dict(QWEN_TOWER))
    params = []
    for name, w in tree_flatten(tower.parameters()):
        if w.ndim == 1:
            value = 0.1 * mx.random.normal(w.shape) + (1.0 if "norm" in name or "ln_q" in name else 0.0)
        else:
            fan_in = int(np.prod(w.shape[1:]))
            value = mx.random.uniform(-1.0, 1.0, w.shape) * (1.5 / fan_in**0.5)
        params.append((name, value.astype(mx.float32)))
    tower.update(tree_unflatten(params))
    patches = sum(t * h * w for t, h, w in QWEN_GRIDS)
    width = 3 * QWEN_TOWER["temporal_patch_size"] * QWEN_TOWER["patch_size"] ** 2
    pixels = mx.random.normal((patches, width))
    features = tower(pixels, mx.array(QWEN_GRIDS)).astype(mx.float32)
    weights = {f"vision_tower.{k}": v for k, v in tree_flatten(tower.parameters())}
    mx.eval(weights, features)
    out.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    (out / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl", "vision_config": QWEN_TOWER}))
    np.array(pixels, dtype="<f4").tofile(out / "pixels.f32")
    np.array(features, dtype="<f4").tofile(out / "features.f32")
    (out / "grids.json").write_text(json.dumps(QWEN_GRIDS))


def main() -> int:
    if len(sys.argv) in (3, 4) and sys.argv[1] == "model":
        make_model(Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) == 4 else 0)
    elif len(sys.argv) == 3 and sys.argv[1] == "qwen-tower":
        qwen_tower(Path(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "run":
        run(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
