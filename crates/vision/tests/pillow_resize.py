"""Resizes the images a test describes with Pillow, the reference's resizer.

Reads a JSON list of cases from argv[1]: {width, height, channels,
new_width, new_height, filter (Pillow's number), seed}. Each image is made
from its seed by the same generator as the Rust test's. Writes the resized
bytes of each case, hex-encoded, as a JSON list to argv[2].
"""

import json
import sys

from PIL import Image

from noise import pixels


MODES = {1: "L", 3: "RGB"}

cases = json.load(open(sys.argv[1]))
results = []
for case in cases:
    data = pixels(case["width"] * case["height"] * case["channels"], case["seed"])
    image = Image.frombytes(MODES[case["channels"]], (case["width"], case["height"]), data)
    resized = image.resize((case["new_width"], case["new_height"]), resample=case["filter"])
    results.append(resized.tobytes().hex())
json.dump(results, open(sys.argv[2], "w"))
