"""Triton kernels of the lean engine's static KIVI step (kivi_core.static): append and slide.

Torch twins: `StaticKiviLayer._append_torch` / `_slide_torch` (kivi_core.static), which use
`quantize_values_ref` for the one value that leaves the window. Both kernels read the step's positions
from the device (`lens = int32 [L, n_kq, n_vq]` as they are before the step's token), so one launch
serves every step and a CUDA graph can replay it. Replaces ~18 small torch ops a layer and step (index
arithmetic on `lens`, index_copy_, index_select, a quantize launch): on the H200 those cost ~1.2 ms a
step at batch 1 for 32 layers, more than the attention itself (benchmarks/results/h200_engine/).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .host_math import next_power_of_2
from .quant_pack import _bit_or, _quantize_group


@triton.jit
def _append_kernel(k_ptr, v_ptr, kt_ptr, vw_ptr, lens_ptr, H, W,
                   s_kb, s_kh, s_kd, s_vb, s_vh, s_vd,
                   s_tb, s_th, s_tt, s_wb, s_wh, s_wt,
                   D: tl.constexpr, DP: tl.constexpr):
    # One program per (batch, kv head): key -> tail row L - n_kq, value -> ring slot L % W.
    pid = tl.program_id(0).to(tl.int64)
    b = pid // H
    h = pid % H
    L = tl.load(lens_ptr).to(tl.int64)
    n_kq = tl.load(lens_ptr + 1).to(tl.int64)
    d = tl.arange(0, DP)
    m = d < D
    k = tl.load(k_ptr + b * s_kb + h * s_kh + d * s_kd, mask=m)
    v = tl.load(v_ptr + b * s_vb + h * s_vh + d * s_vd, mask=m)
    tl.store(kt_ptr + b * s_tb + h * s_th + (L - n_kq) * s_tt + d, k, mask=m)
    tl.store(vw_ptr + b * s_wb + h * s_wh + (L % W) * s_wt + d, v, mask=m)


@triton.jit
def _slide_kernel(vw_ptr, codes_ptr, scale_ptr, min_ptr, lens_ptr, H, W,
                  s_wb, s_wh, s_wt, s_cb, s_ch, s_ct, s_sb, s_sh, s_st, s_mb, s_mh, s_mt,
                  BITS: tl.constexpr, G: tl.constexpr):
    # One program per (batch, kv head, channel group): the window's oldest value (position n_vq, ring
    # slot n_vq % W) quantized per token into row n_vq: the math of quant_pack's value kernel, one row.
    CPW: tl.constexpr = 32 // BITS
    QMAX: tl.constexpr = (1 << BITS) - 1
    pid = tl.program_id(0).to(tl.int64)
    grp = tl.program_id(1)
    b = pid // H
    h = pid % H
    n_vq = tl.load(lens_ptr + 2).to(tl.int64)
    c = tl.arange(0, G)
    x = tl.load(vw_ptr + b * s_wb + h * s_wh + (n_vq % W) * s_wt + grp * G + c).to(tl.float32)[None, :]
    include = c[None, :] >= 0
    q, scale, mn = _quantize_group(x, include, 1, QMAX, scale_ptr.dtype.element_ty)
    q3 = tl.reshape(q, (1, G // CPW, CPW))
    words = tl.reduce(q3 << (tl.arange(0, CPW) * BITS)[None, None, :], 2, _bit_or)  # [1, G // CPW]
    w = tl.arange(0, G // CPW)
    tl.store(codes_ptr + b * s_cb + h * s_ch + n_vq * s_ct + grp * (G // CPW) + w[None, :], words)
    tl.store(scale_ptr + b * s_sb + h * s_sh + n_vq * s_st + grp + tl.arange(0, 1), scale)
    tl.store(min_ptr + b * s_mb + h * s_mh + n_vq * s_mt + grp + tl.arange(0, 1), mn)


def static_append(k: torch.Tensor, v: torch.Tensor, k_tail: torch.Tensor, v_win: torch.Tensor,
                  lens: torch.Tensor) -> None:
    """k, v [B, H, 1, D] -> k_tail[:, :, L - n_kq], v_win[:, :, L % W] (innermost strides 1 on the buffers)."""
    B, H, _, D = k.shape
    _append_kernel[(B * H,)](
        k, v, k_tail, v_win, lens, H, v_win.shape[2],
        k.stride(0), k.stride(1), k.stride(3), v.stride(0), v.stride(1), v.stride(3),
        *k_tail.stride()[:3], *v_win.stride()[:3],
        D=D, DP=next_power_of_2(D), num_warps=1,
    )


def static_slide(v_win: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor, mn: torch.Tensor,
                 lens: torch.Tensor, bits: int, group_size: int) -> None:
    """Quantize the value at position n_vq (ring slot n_vq % W) into row n_vq of codes / scale / min."""
    B, H, W, D = v_win.shape
    _slide_kernel[(B * H, D // group_size)](
        v_win, codes, scale, mn, lens, H, W,
        *v_win.stride()[:3], *codes.stride()[:3], *scale.stride()[:3], *mn.stride()[:3],
        BITS=bits, G=group_size, num_warps=1,
    )
