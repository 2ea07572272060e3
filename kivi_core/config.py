"""The one KIVI configuration object. Library functions take it; the CLI maps its flags onto it."""

from __future__ import annotations

from dataclasses import dataclass

BITS = (2, 4)
BACKENDS = ("auto", "torch", "triton")
# Codes are packed 32 // bits to an int32 word; a word must never straddle a key group, so the group
# size is a multiple of the largest word (16 two-bit codes).
PACK_UNIT = 16


@dataclass(frozen=True, slots=True)
class KiviConfig:
    """KIVI cache settings (Liu et al., ICML 2024). Defaults are the paper's: G=32, R=128.

    k_bits / v_bits: 2 or 4, independently.
    group_size (G): keys are quantized per channel in groups of G consecutive tokens, values per token
        in groups of G consecutive channels. A multiple of 16 that divides `residual_length` and the
        model's head_dim (checked when the first layer sees its head_dim).
    residual_length (R): the most recent tokens kept in full precision. Keys wait in a tail that is
        quantized R at a time; values leave a sliding window of R one token per step. R=0 means no
        window: values are quantized at once and keys as soon as a group of G tokens is complete.
    backend: "auto" uses the Triton kernels on CUDA and the pure-torch path elsewhere; "torch" and
        "triton" force one ("triton" on CPU needs TRITON_INTERPRET=1).

    Beyond the paper (opt-in, tuning-free; defaults keep the paper's scheme):
    sink_tokens (S): the first S tokens of each sequence (after its padding) stay in full precision and
        take no part in their key group's range (attention sinks, as in KVQuant / IntactKV). They run on
        the dequantize path: the fused kernel does not read them.
    rotate_keys: keys are rotated by a normalized Hadamard matrix before quantization (RotateKV,
        llama.cpp), spreading outliers across channels; attention rotates the query instead of
        un-rotating keys, so the fused kernel runs unchanged. head_dim must be a power of two.
    Measured on SmolLM2-135M (issue 5's decode-mode PPL protocol, 4,088 tokens): k2v2 +18.1% vs full
    precision -> sinks=4 +8.8% (+1.6% bytes), rotation +12.3% (no bytes), both +5.2%
    (benchmarks/results/eval_smollm2_options.md).
    """

    k_bits: int = 2
    v_bits: int = 2
    group_size: int = 32
    residual_length: int = 128
    backend: str = "auto"
    sink_tokens: int = 0
    rotate_keys: bool = False

    def __post_init__(self) -> None:
        for name in ("k_bits", "v_bits"):
            value = getattr(self, name)
            if value not in BITS:
                raise ValueError(f"{name}={value!r} is not supported: use one of {BITS}.")
        g, r = self.group_size, self.residual_length
        if not isinstance(g, int) or g <= 0 or g % PACK_UNIT:
            raise ValueError(
                f"group_size={g!r} is not supported: use a positive multiple of {PACK_UNIT} (e.g. 32, 64, 128)."
            )
        if not isinstance(r, int) or r < 0:
            raise ValueError(f"residual_length={r!r} is not supported: use 0 (no window) or a multiple of group_size.")
        if r % g:
            raise ValueError(
                f"residual_length={r} is not a multiple of group_size={g}: keys are flushed R tokens at a time in "
                f"whole groups, so use e.g. residual_length={max(g, (r // g) * g)}."
            )
        if not isinstance(self.sink_tokens, int) or self.sink_tokens < 0:
            raise ValueError(f"sink_tokens={self.sink_tokens!r} is not supported: use 0 (off) or a small count like 4.")
        if not isinstance(self.rotate_keys, bool):
            raise ValueError(f"rotate_keys={self.rotate_keys!r} is not supported: use True or False.")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend={self.backend!r} is not one of {BACKENDS}.")

    @property
    def key_flush(self) -> int:
        """Tokens quantized together when the key tail is flushed: R, or one group when R=0."""
        return self.residual_length or self.group_size

    def check_head_dim(self, head_dim: int) -> None:
        if self.rotate_keys and head_dim & (head_dim - 1):
            raise ValueError(
                f"rotate_keys=True needs a power-of-two head_dim for the Hadamard rotation, got {head_dim}; "
                "use rotate_keys=False for this model."
            )
        if head_dim % self.group_size:
            raise ValueError(
                f"group_size={self.group_size} does not divide the model's head_dim={head_dim}: values are "
                f"quantized in groups of G channels, so pick a group_size that divides {head_dim}."
            )

    def bits_per_element(self, dtype_bytes: int = 2) -> tuple[float, float]:
        """Storage bits per quantized key and value element: b + 2 * (8 * dtype_bytes) / G."""
        extra = 2 * 8 * dtype_bytes / self.group_size
        return self.k_bits + extra, self.v_bits + extra

    def label(self) -> str:
        extra = (f" sinks={self.sink_tokens}" if self.sink_tokens else "") + (" rot" if self.rotate_keys else "")
        return f"k{self.k_bits}v{self.v_bits} G={self.group_size} R={self.residual_length}{extra}"
