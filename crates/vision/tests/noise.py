"""The test images' bytes, shared with the Rust tests (common/mod.rs)."""


def pixels(count, seed):
    """Noise from a linear congruential generator: any mistake shows on it."""
    state = seed
    out = bytearray(count)
    for i in range(count):
        state = (state * 1103515245 + 12345) % 2**31
        out[i] = (state >> 16) & 255
    return bytes(out)
