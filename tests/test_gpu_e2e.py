"""End to end on CUDA: the Triton path inside generate() equals the torch path (ties aside), reads the
packed cache without materializing it, and handles left padding. Skipped without CUDA."""

import pytest
import torch
import transformers as tf

import kivi_kernels.decode_attention as da
import kivi_kernels.decode_attention_gqa as dg

from kivi_core import KiviCache, KiviConfig, cache_kwarg, prepare

pytestmark = pytest.mark.gpu


def _model(head_dim=128, kv_heads=8, heads=32, layers=4, dtype=torch.float16):
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(vocab_size=512, hidden_size=heads * head_dim, intermediate_size=2048,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         head_dim=head_dim, max_position_embeddings=4096)
    return prepare(tf.LlamaForCausalLM(cfg).to("cuda", dtype).eval())


def _greedy_logits(model, ids, cache, steps, forced=None, mask=None):
    """Greedy decode (or teacher-forced on `forced`), returning per-step logits and tokens."""
    kw = cache_kwarg(model)
    logits, tokens = [], []
    with torch.no_grad():
        out = model(ids, attention_mask=mask, **{kw: cache}, use_cache=True)
        for t in range(steps):
            last = out.logits[:, -1].float()
            logits.append(last)
            nxt = last.argmax(-1) if forced is None else forced[:, t]
            tokens.append(nxt)
            if mask is not None:
                mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            out = model(nxt[:, None], attention_mask=mask, **{kw: cache}, use_cache=True)
    return torch.stack(logits, 1), torch.stack(tokens, 1)


@pytest.mark.parametrize("bits,dtype,kv,kernel", [(2, torch.float16, 8, "v3"), (4, torch.bfloat16, 32, "v3"),
                                                 (2, torch.bfloat16, 4, "v3"), (2, torch.float16, 8, "gqa"),
                                                 (2, torch.float16, 8, "auto")])
def test_triton_generate_equals_torch_path(bits, dtype, kv, kernel, monkeypatch):
    # These calls are short: "auto" runs v1 with one tile a program. "v3" turns that rule off, so v3 runs
    # (fp16 k2v2 4:1 would take the GQA kernel on larger calls); "gqa" forces the GQA kernel's pair path.
    if kernel != "auto":
        monkeypatch.setattr(da, "SHORT_TILES", 0)
    if kernel == "gqa":
        monkeypatch.setattr(dg, "MIN_TILES_GQA", 1)
    model = _model(kv_heads=kv, dtype=dtype)
    ids = torch.randint(0, 512, (2, 301), device="cuda")
    cfg = dict(k_bits=bits, v_bits=bits, group_size=32, residual_length=128)
    ref_logits, ref_tokens = _greedy_logits(model, ids, KiviCache(KiviConfig(**cfg, backend="torch")), 300)
    tri_logits, tri_tokens = _greedy_logits(model, ids, KiviCache(KiviConfig(**cfg, backend="triton")), 300,
                                            forced=ref_tokens)
    # Ties aside: the two paths round differently (fp32 online softmax vs SDPA), a 2-bit code can flip on
    # such a difference and the flip propagates, so the argmax may differ only where the reference's
    # top-2 margin is within that noise (measured on the H200: margins <= 0.09 at such steps).
    top2 = ref_logits.topk(2, dim=-1).values
    margin = top2[..., 0] - top2[..., 1]
    differ = tri_logits.argmax(-1) != ref_tokens
    rel = (tri_logits - ref_logits).norm(dim=-1) / ref_logits.norm(dim=-1)
    # the largest margins where the argmax differs: the ones the tie bound below judges
    worst = margin[differ].sort(descending=True).values.tolist()[:8]
    summary = (f"{int(differ.sum())}/{differ.numel()} differing steps, largest margins there {worst}, "
               f"relative logit difference median {rel.median():.3g} max {rel.max():.3g}")
    print(summary)
    # bf16 keeps 8 mantissa bits: its rounding differences are 8x fp16's (H200, 300 steps: median relative
    # logit difference 0.012-0.019 in fp16/bf16 4-bit, 0.037 in bf16 2-bit with 8:1 GQA).
    tie, spread = (0.1, 2.5e-2) if dtype == torch.float16 else (0.25, 5e-2)
    # The outcome varies between runs of the same code in fresh processes (cause not found; no atomics in
    # kivi's kernels). H200, fp16 with 8:1 GQA, v1 (four runs in one session): 19 / 14 / 15 / 20 differing
    # steps, the largest margin there 0.059 / 0.035 / 0.061 / 0.102. v3, a program a query head (its fp16
    # pair sums), two runs: passed, and 21 differing with margins 0.107 and 0.104 over the tie bound,
    # median relative difference 0.0188 (h200_round10b/). So up to 1% of steps may pass the tie bound, none
    # twice it. A wrong head, length or scale is far outside all of these (kernel tests: tight bounds).
    assert int((differ & (margin > tie)).sum()) <= differ.numel() // 100, summary
    assert not (differ & (margin > 2 * tie)).any(), summary
    assert differ.float().mean() < 0.1 and rel.median() < spread, summary


def test_decode_memory_does_not_grow_by_a_dequantized_copy():
    model = _model(layers=2)
    B, L = 8, 4096
    ids = torch.randint(0, 512, (B, L), device="cuda")
    cache = KiviCache(KiviConfig(backend="triton"))
    kw = cache_kwarg(model)
    with torch.no_grad():
        model(ids, **{kw: cache}, use_cache=True)
        nxt = ids[:, -1:]
        model(nxt, **{kw: cache}, use_cache=True)  # warm-up: kernels compiled, workspace allocated
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        for _ in range(8):
            model(nxt, **{kw: cache}, use_cache=True)
        torch.cuda.synchronize()
    grew = torch.cuda.max_memory_allocated() - base
    # A dequantized fp16 copy of one layer's K or V alone would be B*8*L*128*2 bytes = 64 MiB. "auto" runs the
    # GQA kernel here (4 query heads a kv head, 8 x 8 x 8 = 512 key tiles): its workspace is the partial rows
    # of ~1024 programs plus an fp16 p row each; v3's (a program a query head) would be 18.9 MiB.
    one_layer_fp16 = B * 8 * L * 128 * 2 * 2
    assert da.pick_impl(torch.empty(B, 32, 1, 128, dtype=torch.float16, device="cuda"),
                        cache.layers[0].state(), "auto") == "gqa"
    workspace = dg.workspace_bytes(B, 8, 4, L + 9, 128, packed=True)
    assert workspace < one_layer_fp16 / 4
    assert grew <= workspace + one_layer_fp16 / 64, f"decode peak grew by {grew / 2**20:.1f} MiB"


def test_left_padding_triton_matches_torch():
    model = _model(layers=2)
    ids = torch.randint(1, 512, (3, 200), device="cuda")
    mask = torch.ones_like(ids)
    mask[1, :37] = 0
    mask[2, :150] = 0
    out = {}
    for backend in ("torch", "triton"):
        out[backend], _ = _greedy_logits(model, ids, KiviCache(KiviConfig(backend=backend)), 64,
                                         forced=torch.zeros(3, 64, dtype=torch.long, device="cuda") + 7,
                                         mask=mask.clone())
    rel = (out["triton"] - out["torch"]).norm(dim=-1) / out["torch"].norm(dim=-1)
    assert rel.max() < 2e-2, f"max relative logit difference {rel.max():.3g}"
