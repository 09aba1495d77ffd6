"""The reference's pixel_values for the images a test describes: mlx-vlm
0.6.17's image processors, the ones its processors use (transformers'
PIL-backed Gemma 3 processor, which mlx-vlm asks for with use_fast=False;
mlx-vlm's own Qwen-VL one), given RGB images as mlx-vlm hands them over.

Reads a JSON list of cases from argv[1]: {width, height, seed, family
("gemma3" or "qwen"), config (the preprocessor_config.json values)}. Writes,
for each, {"pixel_values": base64 of little-endian float32, "shape": [...],
"grid": [t, h, w] or null} to argv[2].
"""

import base64
import json
import sys

import numpy as np
from mlx_vlm.models.qwen3_vl.processing_qwen3_vl import Qwen3VLImageProcessor
from PIL import Image
from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

from noise import pixels


results = []
for case in json.load(open(sys.argv[1])):
    size = (case["width"], case["height"])
    image = Image.frombytes("RGB", size, pixels(size[0] * size[1] * 3, case["seed"]))
    config = case["config"]
    if case["family"] == "gemma3":
        processor = Gemma3ImageProcessorPil(**config)
        out = processor(images=[image], return_tensors="np")
        grid = None
    else:
        processor = Qwen3VLImageProcessor(**config)
        out = processor([image])
        grid = [int(v) for v in np.asarray(out["image_grid_thw"])[0]]
    values = np.ascontiguousarray(np.asarray(out["pixel_values"], dtype=np.float32))
    results.append(
        {
            "pixel_values": base64.b64encode(values.astype("<f4").tobytes()).decode(),
            "shape": list(values.shape),
            "grid": grid,
        }
    )
json.dump(results, open(sys.argv[2], "w"))
