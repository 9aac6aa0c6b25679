"""Blockwise symmetric weight quantization in `com.microsoft.MatMulNBits`'s layout (numpy).

A weight W [N, K] (PyTorch's [out, in] layout, which is also MatMulNBits' B layout) is cut
into blocks of `block_size` along K. Each block gets one fp32 scale; the value of largest
magnitude maps to the most negative code (-8 for 4 bits, -128 for 8 bits) so the whole
signed range is used. Codes are stored unsigned (code + 2^(bits-1)), which is the kernel's
default zero point when no `zero_points` input is given.
"""

from __future__ import annotations

import numpy as np


def quantize_blockwise(weight: np.ndarray, bits: int, block_size: int):
    """Quantize W [N, K] for MatMulNBits.

    Args:
        weight: float32 [N, K].
        bits: 4 or 8.
        block_size: power of two >= 16; K is zero-padded to a multiple of it.

    Returns:
        (packed uint8 [N, blocks, block_size * bits // 8], scales float32 [N * blocks]).
    """
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, got {bits}")
    n, k = weight.shape
    blocks = -(-k // block_size)
    padded = np.zeros((n, blocks * block_size), dtype=np.float32)
    padded[:, :k] = weight
    grouped = padded.reshape(n, blocks, block_size)
    # The signed extreme of each block: scale = extreme / -2^(bits-1) maps it to the lowest code.
    idx = np.abs(grouped).argmax(axis=-1)[..., None]
    extreme = np.take_along_axis(grouped, idx, axis=-1)[..., 0]
    half = 1 << (bits - 1)
    scales = (extreme / -half).astype(np.float32)
    safe = np.where(scales == 0, 1.0, scales)[..., None]
    codes = np.clip(np.rint(grouped / safe), -half, half - 1).astype(np.int16) + half
    codes = codes.astype(np.uint8)
    if bits == 4:  # two codes a byte, the even element in the low nibble
        codes = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return np.ascontiguousarray(codes), scales.reshape(-1)
