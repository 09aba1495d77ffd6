"""Image files made with Pillow, and how the reference reads them.

Writes the test images into the folder argv[1] (PNG in RGB, RGBA, L, LA and
palette modes, lossless WebP, an animated GIF, JPEG, and JPEG and PNG
files with an EXIF orientation), then reads each back with mlx-vlm's
`load_image` (open, turn by EXIF, convert to RGB) and writes
{name: {"file", "width", "height", "rgb" (hex)}} as JSON to argv[2].
"""

import json
import pathlib
import sys

from mlx_vlm.utils import load_image
from PIL import Image

from noise import pixels

folder = pathlib.Path(sys.argv[1])


def noise(width, height, bands, seed):
    return pixels(width * height * bands, seed)


def smooth(width, height):
    """A photo-like gradient: JPEG's losses stay small on it."""
    image = Image.new("RGB", (width, height))
    image.putdata(
        [((x * 255) // width, (y * 255) // height, ((x + y) * 127) // (width + height)) for y in range(height) for x in range(width)]
    )
    return image


def with_orientation(value):
    exif = Image.Exif()
    exif[0x0112] = value
    return exif


files = {}
Image.frombytes("RGB", (37, 23), noise(37, 23, 3, 1)).save(folder / "rgb.png")
files["rgb"] = "rgb.png"
Image.frombytes("RGBA", (64, 48), noise(64, 48, 4, 2)).save(folder / "rgba.png")
files["rgba"] = "rgba.png"
Image.frombytes("L", (20, 10), noise(20, 10, 1, 3)).save(folder / "gray.png")
files["gray"] = "gray.png"
Image.frombytes("LA", (20, 10), noise(20, 10, 2, 4)).save(folder / "gray_alpha.png")
files["gray_alpha"] = "gray_alpha.png"
Image.frombytes("RGB", (16, 16), noise(16, 16, 3, 5)).quantize(colors=12).save(folder / "palette.png")
files["palette"] = "palette.png"
Image.frombytes("RGB", (30, 20), noise(30, 20, 3, 6)).save(folder / "lossless.webp", lossless=True)
files["webp"] = "lossless.webp"
frames = [Image.frombytes("RGB", (24, 18), noise(24, 18, 3, 7 + i)).quantize(colors=16) for i in range(2)]
frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
files["gif"] = "animated.gif"
smooth(50, 30).save(folder / "photo.jpg", quality=90)
files["jpeg"] = "photo.jpg"
smooth(30, 50).save(folder / "rotated.jpg", quality=90, exif=with_orientation(6))
files["jpeg_exif6"] = "rotated.jpg"
Image.frombytes("RGB", (12, 7), noise(12, 7, 3, 9)).save(folder / "rotated.png", exif=with_orientation(3))
files["png_exif3"] = "rotated.png"

out = {}
for name, file in files.items():
    image = load_image(str(folder / file))
    out[name] = {"file": file, "width": image.width, "height": image.height, "rgb": image.tobytes().hex()}
json.dump(out, open(sys.argv[2], "w"))
