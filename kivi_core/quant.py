"""Reference KIVI quantizer and bit packing: the spec, the CPU path and the test oracle for the kernels.

Quantization (asymmetric min-max, round to nearest, per group of G elements):
    scale = (max - min) / (2^b - 1),  q = clamp(round((x - min) / scale), 0, 2^b - 1),  x_hat = q * scale + min
`scale` and `min` are rounded to the model dtype *first* and q is computed from the rounded pair, so the
stored pair is exactly what dequantization uses (error <= scale/2 inside the group's range). A constant
group has scale 0 and every code 0, so x_hat == min exactly: no NaN, no inf. Arithmetic is fp32.

Axes (the paper's): keys per channel (a group is G consecutive *tokens* of one channel), values per token
(a group is G consecutive *channels* of one token).

Packed layout (int32 words, `32 // bits` codes each: 16 at 2 bits, 8 at 4 bits; code j of a word sits in
bits [j*b, (j+1)*b), little end first):
    keys    codes [B, H, T // cpw, D]    word (w, d) holds tokens w*cpw .. w*cpw+cpw-1 of channel d
            scale, min [B, H, T // G, D] in the model dtype
    values  codes [B, H, T, D // cpw]    word (t, w) holds channels w*cpw .. w*cpw+cpw-1 of token t
            scale, min [B, H, T, D // G] in the model dtype
Both layouts keep the head_dim axis innermost and contiguous, so a decode kernel that walks a block of
tokens reads full rows (D/cpw or D words) with coalesced loads, and the token axis can grow by appends.
"""

from __future__ import annotations

import torch

WORD_BITS = 32


def codes_per_word(bits: int) -> int:
    return WORD_BITS // bits


def pack(codes: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """Pack integer codes in [0, 2^bits) along `dim` (size a multiple of 32 // bits) into int32 words."""
    cpw = codes_per_word(bits)
    dim = dim % codes.dim()
    n = codes.shape[dim]
    if n % cpw:
        raise ValueError(f"cannot pack {n} codes along dim {dim}: need a multiple of {cpw} at {bits} bits")
    c = codes.to(torch.int64).unflatten(dim, (n // cpw, cpw))  # [..., n/cpw, cpw, ...]
    shifts = (torch.arange(cpw, device=codes.device, dtype=torch.int64) * bits).view(
        [cpw if i == dim + 1 else 1 for i in range(c.dim())]
    )
    words = (c << shifts).sum(dim=dim + 1)  # disjoint bit fields: sum == bitwise or
    # Reinterpret as signed 32-bit (bit 31 may be set): wrap into [-2^31, 2^31).
    words = torch.where(words >= 2**31, words - 2**32, words)
    return words.to(torch.int32)


def _unpack_int32(words: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    # int32 shifts (arithmetic for negative words; the mask drops the sign bits): 3x faster on CPU than int64.
    cpw = codes_per_word(bits)
    dim = dim % words.dim()
    shifts = (torch.arange(cpw, device=words.device, dtype=torch.int32) * bits).view(
        [cpw if i == dim + 1 else 1 for i in range(words.dim() + 1)]
    )
    codes = (words.unsqueeze(dim + 1) >> shifts) & ((1 << bits) - 1)
    return codes.flatten(dim, dim + 1)


def unpack(words: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """Inverse of `pack`: int32 words -> uint8 codes, `32 // bits` per word along `dim`."""
    return _unpack_int32(words, bits, dim).to(torch.uint8)


def _minmax_quantize(x: torch.Tensor, bits: int, reduce_dim: int, dtype: torch.dtype, valid: torch.Tensor | None):
    """Quantize x (fp32) over groups laid out along `reduce_dim`; returns uint8 codes, scale, min (dtype)."""
    qmax = (1 << bits) - 1
    if valid is None:
        mn = x.amin(dim=reduce_dim, keepdim=True)
        mx = x.amax(dim=reduce_dim, keepdim=True)
    else:
        # Padding must not widen a group's range: masked elements take no part in min/max.
        mn = torch.where(valid, x, torch.inf).amin(dim=reduce_dim, keepdim=True)
        mx = torch.where(valid, x, -torch.inf).amax(dim=reduce_dim, keepdim=True)
        empty = torch.isinf(mn)  # a group made only of padding: store scale 0, min 0
        mn = torch.where(empty, 0.0, mn)
        mx = torch.where(empty, 0.0, mx)
    # A tensor divisor: CUDA turns division by a Python scalar into a reciprocal multiply (1 ulp off IEEE).
    scale = ((mx - mn) / torch.full_like(mx, qmax)).to(dtype)
    mn = mn.to(dtype)
    s32, m32 = scale.float(), mn.float()
    safe = torch.where(s32 > 0, s32, 1.0)
    q = torch.round((x - m32) / safe).clamp_(0, qmax)
    q = torch.where(s32 > 0, q, 0.0)
    return q.to(torch.uint8), scale, mn


def quantize_keys_ref(
    k: torch.Tensor, bits: int, group_size: int, valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keys per channel. k [B, H, T, D] with T a multiple of G; valid [B, T] bool (False = padding).

    Returns packed codes [B, H, T // cpw, D] int32, scale and min [B, H, T // G, D] in k's dtype.
    """
    B, H, T, D = k.shape
    G = group_size
    if T % G:
        raise ValueError(f"key quantization needs whole groups: T={T} is not a multiple of group_size={G}")
    x = k.float().view(B, H, T // G, G, D)  # [B, H, n_groups, G tokens, D]
    v = None if valid is None else valid.view(B, 1, T // G, G, 1).to(torch.bool)
    q, scale, mn = _minmax_quantize(x, bits, 3, k.dtype, v)
    codes = pack(q.view(B, H, T, D), bits, dim=2)
    return codes, scale.squeeze(3), mn.squeeze(3)


def hadamard(n: int, device=None) -> torch.Tensor:
    """The normalized Sylvester Hadamard matrix [n, n] in fp32 (n a power of two): symmetric and
    orthonormal, so it is its own inverse and q . k == (q H) . (k H)."""
    if n <= 0 or n & (n - 1):
        raise ValueError(f"a Hadamard rotation needs a power-of-two size, got {n}")
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return (h / n**0.5).to(device)


def rotate(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """x [..., D] @ h in fp32, back in x's dtype."""
    return (x.float() @ h).to(x.dtype)


def fake_quantize_partial_keys(k: torch.Tensor, bits: int, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Quantize-then-dequantize k [B, H, T, D] as ONE per-channel group of T tokens (T < G allowed).

    For R = 0 only: the incomplete key group is shown to attention quantized with its current range,
    while its full-precision states wait for the group to complete.
    """
    B, H, T, D = k.shape
    x = k.float().view(B, H, 1, T, D)
    v = None if valid is None else valid.view(B, 1, 1, T, 1).to(torch.bool)
    q, scale, mn = _minmax_quantize(x, bits, 3, k.dtype, v)
    return (q.float() * scale.float() + mn.float()).view(B, H, T, D).to(k.dtype)


def dequantize_keys_ref(
    codes: torch.Tensor, scale: torch.Tensor, mn: torch.Tensor, bits: int, group_size: int
) -> torch.Tensor:
    """Inverse of `quantize_keys_ref`: returns [B, H, T, D] in scale's dtype."""
    q = _unpack_int32(codes, bits, dim=2).float()  # [B, H, T, D]
    B, H, T, D = q.shape
    G = group_size
    q = q.view(B, H, T // G, G, D)
    x = q * scale.float().unsqueeze(3) + mn.float().unsqueeze(3)
    return x.view(B, H, T, D).to(scale.dtype)


def quantize_values_ref(v: torch.Tensor, bits: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Values per token. v [B, H, T, D] with G dividing D.

    Returns packed codes [B, H, T, D // cpw] int32, scale and min [B, H, T, D // G] in v's dtype.
    """
    B, H, T, D = v.shape
    G = group_size
    if D % G:
        raise ValueError(f"value quantization needs whole groups: head_dim={D} is not a multiple of group_size={G}")
    x = v.float().view(B, H, T, D // G, G)  # [B, H, T, n_groups, G channels]
    q, scale, mn = _minmax_quantize(x, bits, 4, v.dtype, None)
    codes = pack(q.view(B, H, T, D), bits, dim=3)
    return codes, scale.squeeze(4), mn.squeeze(4)


def dequantize_values_ref(
    codes: torch.Tensor, scale: torch.Tensor, mn: torch.Tensor, bits: int, group_size: int
) -> torch.Tensor:
    """Inverse of `quantize_values_ref`: returns [B, H, T, D] in scale's dtype."""
    q = _unpack_int32(codes, bits, dim=3).float()  # [B, H, T, D]
    B, H, T, D = q.shape
    G = group_size
    q = q.view(B, H, T, D // G, G)
    x = q * scale.float().unsqueeze(4) + mn.float().unsqueeze(4)
    return x.view(B, H, T, D).to(scale.dtype)
