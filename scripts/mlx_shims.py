"""Fixes to the pinned reference stack, applied on import.

mlx-lm 0.32.2's quantized experts (`QuantizedSwitchLinear`) pass
`global_scale=None` to `mx.gather_qmm`, which MLX 0.32.2 does not accept, so
mlx-lm cannot run a quantized mixture-of-experts model as shipped. On such an
MLX, `mx.gather_qmm` is wrapped to drop the empty argument (a real global
scale is refused: this MLX has none). The scripts that run mlx-lm import this
module first.
"""

import mlx.core as mx


def _drop_empty_global_scale() -> None:
    original = mx.gather_qmm
    signature = (original.__doc__ or "").split("\n", 1)[0]
    if "global_scale" in signature:
        return

    def gather_qmm(*args, global_scale=None, **kwargs):
        if global_scale is not None:
            raise ValueError("this MLX's gather_qmm takes no global_scale")
        return original(*args, **kwargs)

    mx.gather_qmm = gather_qmm


_drop_empty_global_scale()
