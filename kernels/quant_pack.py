"""Triton quantize-and-pack for the KIVI cache: keys per channel, values per token.

Torch twins (the spec): `kivi_core.quant.quantize_keys_ref` / `quantize_values_ref`. These kernels are
bit-exact with them: scale = (max - min) / (2^b - 1) in fp32, rounded to the storage dtype; min rounded
to the storage dtype; q = clamp(round_half_even((x - min_r) / scale_r), 0, 2^b - 1) from the *rounded*
pair in fp32 with IEEE division (`div_rn`), and q = 0 where scale_r == 0. The codes, scales and mins are
written straight into the cache's preallocated storage (the `out` views), never into temporaries.

Used at prefill (the whole prompt's keys and values at once) and at flushes (R keys; one value a step),
so the work is tiny next to the model's matmuls: one program owns one group and reads it exactly once.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .host_math import cdiv, next_power_of_2

_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_BITS = (2, 4)
_PACK_UNIT = 16  # a group must hold whole 32-bit words at 2 bits (16 codes): G % 16 == 0


@triton.jit
def _round_half_even(y):
    """torch.round semantics (ties to even) from floor, exact in fp32 (y - floor(y) has no rounding)."""
    f = tl.floor(y)
    d = y - f
    odd = (f - 2.0 * tl.floor(f * 0.5)) != 0.0
    up = (d > 0.5) | ((d == 0.5) & odd)
    return tl.where(up, f + 1.0, f)


@triton.jit
def _round_to(x, dtype: tl.constexpr):
    """fp32 -> `dtype` with round-to-nearest-even. For bf16 the rounding is done on the bits, because
    Triton's CPU interpreter truncates fp32 -> bf16 (the GPU's cvt.rn agrees with this; NaN not handled)."""
    if dtype == tl.bfloat16:
        bits = x.to(tl.uint32, bitcast=True)
        bits = (bits + (0x7FFF + ((bits >> 16) & 1))) & 0xFFFF0000
        return bits.to(tl.float32, bitcast=True).to(tl.bfloat16)
    else:
        return x.to(dtype)


@triton.jit
def _bit_or(a, b):
    return a | b


@triton.jit
def _quantize_group(x, include, red_axis: tl.constexpr, QMAX: tl.constexpr, out_dtype: tl.constexpr):
    """Min-max quantize fp32 `x` over `red_axis` (elements where `include` is False take no part in the
    range). Returns int32 codes (same shape as x) and the rounded scale and min (reduced shape)."""
    mn = tl.min(tl.where(include, x, float("inf")), axis=red_axis)
    mx = tl.max(tl.where(include, x, float("-inf")), axis=red_axis)
    empty = mn == float("inf")  # only padding in the group: scale 0, min 0 (as the reference)
    mn = tl.where(empty, 0.0, mn)
    mx = tl.where(empty, 0.0, mx)
    scale = _round_to(tl.math.div_rn(mx - mn, tl.full(mn.shape, QMAX, tl.float32)), out_dtype)
    mn_r = _round_to(mn, out_dtype)
    s32 = tl.expand_dims(scale.to(tl.float32), red_axis)
    m32 = tl.expand_dims(mn_r.to(tl.float32), red_axis)
    safe = tl.where(s32 > 0.0, s32, 1.0)
    q = _round_half_even(tl.math.div_rn(x - m32, tl.broadcast_to(safe, x.shape)))
    q = tl.minimum(tl.maximum(q, 0.0), QMAX * 1.0)
    q = tl.where(s32 > 0.0, q, 0.0)
    return q.to(tl.int32), scale, mn_r


@triton.jit
def _quantize_keys_kernel(
    k_ptr, valid_ptr, codes_ptr, scale_ptr, min_ptr,
    H, D,
    s_kb, s_kh, s_kt, s_kd,
    s_vb, s_vt,
    s_cb, s_ch, s_cw, s_cd,
    s_sb, s_sh, s_sg, s_sd,
    s_mb, s_mh, s_mg, s_md,
    BITS: tl.constexpr, G: tl.constexpr, GP: tl.constexpr, BLOCK_D: tl.constexpr, HAS_VALID: tl.constexpr,
):
    # One program: one group of G tokens x BLOCK_D channels of one (batch, head). Reads the tile once,
    # reduces over tokens (axis 0), writes G // cpw words per channel plus one scale/min row.
    CPW: tl.constexpr = 32 // BITS
    QMAX: tl.constexpr = (1 << BITS) - 1
    pid_bh = tl.program_id(0).to(tl.int64)
    grp = tl.program_id(1).to(tl.int64)
    pid_d = tl.program_id(2)
    b = pid_bh // H
    h = pid_bh % H

    # -- load [GP tokens, BLOCK_D channels] --
    offs_t = tl.arange(0, GP)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    t_ok = offs_t < G
    d_ok = offs_d < D
    tok = grp * G + offs_t
    ptrs = k_ptr + b * s_kb + h * s_kh + tok[:, None] * s_kt + offs_d[None, :] * s_kd
    x = tl.load(ptrs, mask=t_ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
    include = t_ok
    if HAS_VALID:
        include = include & (tl.load(valid_ptr + b * s_vb + tok * s_vt, mask=t_ok, other=0) != 0)
    include2 = include[:, None] & (offs_d[None, :] >= 0)  # [GP, BLOCK_D]

    # -- quantize over the token axis --
    q, scale, mn = _quantize_group(x, include2, 0, QMAX, scale_ptr.dtype.element_ty)

    # -- pack: token w*CPW + j of the group goes to bits [j*BITS, (j+1)*BITS) of word w --
    q3 = tl.reshape(q, (GP // CPW, CPW, BLOCK_D))
    shifts = tl.arange(0, CPW) * BITS
    words = tl.reduce(q3 << shifts[None, :, None], 1, _bit_or)  # [GP // CPW, BLOCK_D]
    offs_w = tl.arange(0, GP // CPW)
    w_ok = offs_w < G // CPW
    crow = grp * (G // CPW) + offs_w
    tl.store(codes_ptr + b * s_cb + h * s_ch + crow[:, None] * s_cw + offs_d[None, :] * s_cd, words,
             mask=w_ok[:, None] & d_ok[None, :])
    tl.store(scale_ptr + b * s_sb + h * s_sh + grp * s_sg + offs_d * s_sd, scale, mask=d_ok)
    tl.store(min_ptr + b * s_mb + h * s_mh + grp * s_mg + offs_d * s_md, mn, mask=d_ok)


@triton.jit
def _quantize_values_kernel(
    v_ptr, codes_ptr, scale_ptr, min_ptr,
    H, T,
    s_vb, s_vh, s_vt, s_vd,
    s_cb, s_ch, s_ct, s_cw,
    s_sb, s_sh, s_st, s_sg,
    s_mb, s_mh, s_mt, s_mg,
    BITS: tl.constexpr, G: tl.constexpr, GP: tl.constexpr, BLOCK_T: tl.constexpr,
):
    # One program: BLOCK_T tokens x one group of G channels of one (batch, head). Reduces over channels
    # (axis 1), writes G // cpw words per token plus one scale/min per token.
    CPW: tl.constexpr = 32 // BITS
    QMAX: tl.constexpr = (1 << BITS) - 1
    pid_bh = tl.program_id(0).to(tl.int64)
    pid_t = tl.program_id(1)
    grp = tl.program_id(2)
    b = pid_bh // H
    h = pid_bh % H

    offs_t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_c = tl.arange(0, GP)
    t_ok = offs_t < T
    c_ok = offs_c < G
    ch = grp * G + offs_c
    ptrs = v_ptr + b * s_vb + h * s_vh + offs_t[:, None].to(tl.int64) * s_vt + ch[None, :] * s_vd
    x = tl.load(ptrs, mask=t_ok[:, None] & c_ok[None, :], other=0.0).to(tl.float32)
    include = (offs_t[:, None] >= 0) & c_ok[None, :]  # [BLOCK_T, GP]

    q, scale, mn = _quantize_group(x, include, 1, QMAX, scale_ptr.dtype.element_ty)

    # -- pack: channel w*CPW + j of the group goes to bits [j*BITS, (j+1)*BITS) of word w --
    q3 = tl.reshape(q, (BLOCK_T, GP // CPW, CPW))
    shifts = tl.arange(0, CPW) * BITS
    words = tl.reduce(q3 << shifts[None, None, :], 2, _bit_or)  # [BLOCK_T, GP // CPW]
    offs_w = tl.arange(0, GP // CPW)
    w_ok = offs_w < G // CPW
    ccol = grp * (G // CPW) + offs_w
    row = offs_t.to(tl.int64)
    tl.store(codes_ptr + b * s_cb + h * s_ch + row[:, None] * s_ct + ccol[None, :] * s_cw, words,
             mask=t_ok[:, None] & w_ok[None, :])
    tl.store(scale_ptr + b * s_sb + h * s_sh + row * s_st + grp * s_sg, scale, mask=t_ok)
    tl.store(min_ptr + b * s_mb + h * s_mh + row * s_mt + grp * s_mg, mn, mask=t_ok)


# ---------------------------------------------------------------------------------------------------
# Launchers: validate the layout contract, then launch.
# ---------------------------------------------------------------------------------------------------


def _check_common(x: torch.Tensor, name: str, bits: int, group_size: int) -> None:
    if x.dim() != 4:
        raise ValueError(f"{name} must be [B, H, T, D]; got shape {tuple(x.shape)}")
    if x.dtype not in _DTYPES:
        raise ValueError(f"{name}.dtype={x.dtype} is not supported: use one of {_DTYPES}")
    if bits not in _BITS:
        raise ValueError(f"bits={bits!r} is not supported: use one of {_BITS}")
    if not isinstance(group_size, int) or group_size <= 0 or group_size % _PACK_UNIT:
        raise ValueError(f"group_size={group_size!r} is not supported: use a positive multiple of {_PACK_UNIT}")


def _check_out(out, shapes, dtypes, device) -> None:
    if len(out) != 3:
        raise ValueError(f"out must be (codes, scale, min); got {len(out)} tensors")
    for t, name, shape, dtype in zip(out, ("codes", "scale", "min"), shapes, dtypes):
        if tuple(t.shape) != tuple(shape):
            raise ValueError(f"out {name} has shape {tuple(t.shape)}; expected {tuple(shape)}")
        if t.dtype != dtype:
            raise ValueError(f"out {name} has dtype {t.dtype}; expected {dtype}")
        if t.device != device:
            raise ValueError(f"out {name} is on {t.device}; expected {device}")


def quantize_keys_triton(
    k: torch.Tensor, bits: int, group_size: int, valid: torch.Tensor | None, out
) -> None:
    """Quantize keys per channel (groups of G tokens) into `out = (codes, scale, min)` in place.

    k [B, H, T, D] any strides, T a multiple of G; valid [B, T] bool or None (False = padding, excluded
    from min/max); out views of shapes [B, H, T // cpw, D] int32 and [B, H, T // G, D] in k's dtype.
    """
    _check_common(k, "k", bits, group_size)
    B, H, T, D = k.shape
    G = group_size
    if T % G:
        raise ValueError(f"key quantization needs whole groups: T={T} is not a multiple of group_size={G}")
    cpw = 32 // bits
    _check_out(out, ((B, H, T // cpw, D), (B, H, T // G, D), (B, H, T // G, D)),
               (torch.int32, k.dtype, k.dtype), k.device)
    if valid is not None:
        if tuple(valid.shape) != (B, T):
            raise ValueError(f"valid has shape {tuple(valid.shape)}; expected (B, T) = {(B, T)}")
        if valid.dtype != torch.bool:
            raise ValueError(f"valid.dtype={valid.dtype}; expected torch.bool")
    if T == 0 or B * H * D == 0:
        return
    codes, scale, mn = out
    vt = valid.view(torch.uint8) if valid is not None else k  # dummy pointer when absent (never read)
    s_vb, s_vt = (vt.stride(0), vt.stride(1)) if valid is not None else (0, 0)
    GP = next_power_of_2(G)
    # BLOCK_D=64 keeps the [GP, BLOCK_D] tile at <= 64 fp32 registers a thread at G=128, 4 warps.
    BLOCK_D = min(64, next_power_of_2(D))
    grid = (B * H, T // G, cdiv(D, BLOCK_D))
    _quantize_keys_kernel[grid](
        k, vt, codes, scale, mn,
        H, D,
        *k.stride(), s_vb, s_vt, *codes.stride(), *scale.stride(), *mn.stride(),
        BITS=bits, G=G, GP=GP, BLOCK_D=BLOCK_D, HAS_VALID=valid is not None, num_warps=4,
    )


def quantize_values_triton(v: torch.Tensor, bits: int, group_size: int, out) -> None:
    """Quantize values per token (groups of G channels) into `out = (codes, scale, min)` in place.

    v [B, H, T, D] any strides, D a multiple of G; out views of shapes [B, H, T, D // cpw] int32 and
    [B, H, T, D // G] in v's dtype.
    """
    _check_common(v, "v", bits, group_size)
    B, H, T, D = v.shape
    G = group_size
    if D % G:
        raise ValueError(f"value quantization needs whole groups: head_dim={D} is not a multiple of group_size={G}")
    cpw = 32 // bits
    _check_out(out, ((B, H, T, D // cpw), (B, H, T, D // G), (B, H, T, D // G)),
               (torch.int32, v.dtype, v.dtype), v.device)
    if T == 0 or B * H * D == 0:
        return
    codes, scale, mn = out
    GP = next_power_of_2(G)
    # BLOCK_T * GP = 2048 elements a program: 16 fp32 a thread at 4 warps; one token per decode step
    # runs with a single row (BLOCK_T >= T rounded up to 16 rows of masking, which costs nothing).
    BLOCK_T = max(1, min(2048 // GP, next_power_of_2(T)))
    grid = (B * H, cdiv(T, BLOCK_T), D // G)
    _quantize_values_kernel[grid](
        v, codes, scale, mn,
        H, T,
        *v.stride(), *codes.stride(), *scale.stride(), *mn.stride(),
        BITS=bits, G=G, GP=GP, BLOCK_T=BLOCK_T, num_warps=4,
    )
