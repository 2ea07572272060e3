"""Getting a model and tokenizer: a hub id or local folder, an `--arch` preset with random weights, or
(with neither) the offline demo model.

Presets carry the published architecture numbers (each model's `config.json` on the Hub). Speed and
memory do not depend on the weights, so `kivi profile --arch llama-2-7b` needs nothing downloaded. The
model is built directly on the target device in the target dtype (no CPU fp32 copy first); `tiny`
builds in well under a second on CPU. Preset models get a byte-level tokenizer (256 byte tokens + ChatML
specials) built in memory: the text they produce is noise, which is all random weights can give.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kivi_cli.errors import UsageError
from kivi_cli.options import ModelChoice

DEMO_NAME = "SmolLM2-135M-Instruct (demo)"


@dataclass(frozen=True)
class Preset:
    name: str
    source: str  # where the numbers come from
    model_type: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    max_position_embeddings: int
    rope_theta: float = 10000.0
    extra: dict[str, Any] = field(default_factory=dict)

    def config(self):
        from transformers import AutoConfig

        kwargs = dict(
            hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers, num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads, vocab_size=self.vocab_size,
            max_position_embeddings=self.max_position_embeddings, rms_norm_eps=1e-5,
            bos_token_id=BYTE_BOS, eos_token_id=BYTE_EOS, pad_token_id=BYTE_PAD, tie_word_embeddings=False,
        )
        kwargs.update({k: v for k, v in self.extra.items() if k != "rope_parameters"})
        # transformers 5.x keeps RoPE settings (theta, scaling) in one `rope_parameters` dict.
        kwargs["rope_parameters"] = {"rope_type": "default", **self.extra.get("rope_parameters", {}),
                                     "rope_theta": self.rope_theta}
        return AutoConfig.for_model(self.model_type, **kwargs)


PRESETS: dict[str, Preset] = {p.name: p for p in (
    # A CPU-sized Llama with GQA (4 query heads, 2 kv heads) and head_dim 64 so G=32 divides it.
    Preset("tiny", "kivi test preset", "llama", 256, 512, 2, 4, 2, 512, 4096),
    Preset("llama-2-7b", "meta-llama/Llama-2-7b-hf", "llama", 4096, 11008, 32, 32, 32, 32000, 4096),
    Preset("llama-2-13b", "meta-llama/Llama-2-13b-hf", "llama", 5120, 13824, 40, 40, 40, 32000, 4096),
    Preset("llama-2-70b", "meta-llama/Llama-2-70b-hf", "llama", 8192, 28672, 80, 64, 8, 32000, 4096),
    Preset("llama-3.1-8b", "meta-llama/Llama-3.1-8B", "llama", 4096, 14336, 32, 32, 8, 128256, 131072,
           rope_theta=500000.0,
           extra={"rope_parameters": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}),
    # v0.2 (the paper's Mistral-7B-Instruct): no sliding window, theta 1e6.
    Preset("mistral-7b", "mistralai/Mistral-7B-Instruct-v0.2", "mistral", 4096, 14336, 32, 32, 8, 32000, 32768,
           rope_theta=1e6, extra={"sliding_window": None}),
)}

# --- byte-level tokenizer for presets ---------------------------------------------------------------------
BYTE_BOS, BYTE_EOS, BYTE_PAD = 256, 257, 258  # <|im_start|>, <|im_end|>, <|pad|>
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def byte_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_chars = bytes_to_unicode()
    backend = Tokenizer(models.BPE(vocab={byte_chars[i]: i for i in range(256)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                  pad_token="<|pad|>")
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (BYTE_BOS, BYTE_EOS, BYTE_PAD)
    tok.chat_template = CHATML
    return tok


# --- loading ---------------------------------------------------------------------------------------------
@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    name: str
    device: torch.device
    dtype: torch.dtype
    random_weights: bool = False

    @property
    def dims(self) -> dict[str, int]:
        """KV-cache shape numbers: layers, kv heads, head_dim."""
        c = self.model.config
        c = getattr(c, "get_text_config", lambda: c)()
        heads = c.num_attention_heads
        return {
            "layers": c.num_hidden_layers,
            "kv_heads": getattr(c, "num_key_value_heads", None) or heads,
            "head_dim": getattr(c, "head_dim", None) or c.hidden_size // heads,
        }


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r} is not a device: use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available here; use --device cpu.")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        # fp16 as in the paper on GPU; CPU kernels for half types are slow or missing, so fp32 there.
        return torch.float16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def load(choice: ModelChoice, out=None) -> Loaded:
    device = resolve_device(choice.device)
    dtype = resolve_dtype(choice.dtype, device)
    if choice.arch is not None:
        return _from_preset(choice.arch, device, dtype, choice.seed)
    if choice.model is None:
        from kivi_core.assets import demo_model_dir

        path = demo_model_dir()
        if out is not None:
            out.hint(f"No model given: using the demo model {DEMO_NAME} from {path}.")
        return _from_pretrained(str(path), DEMO_NAME, device, dtype, trust_remote_code=False)
    return _from_pretrained(choice.model, choice.model, device, dtype, choice.trust_remote_code)


def _from_preset(arch: str, device: torch.device, dtype: torch.dtype, seed: int) -> Loaded:
    from transformers import AutoModelForCausalLM

    preset = PRESETS[arch]
    torch.manual_seed(seed)
    with torch.device(device):  # build in place: no CPU copy of a 13 GB model first
        model = AutoModelForCausalLM.from_config(preset.config(), dtype=dtype)
    model.eval().requires_grad_(False)
    return Loaded(model, byte_tokenizer(), f"{arch} (random weights)", device, dtype, random_weights=True)


def _from_pretrained(ref: str, name: str, device: torch.device, dtype: torch.dtype,
                     trust_remote_code: bool) -> Loaded:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = Path(ref).expanduser()
    if ref.startswith((".", "/", "~")) and not local.is_dir():
        raise UsageError(f"model folder {ref!r} does not exist; pass an existing folder or a hub id.")
    try:
        tokenizer = AutoTokenizer.from_pretrained(ref, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(ref, dtype=dtype, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise UsageError(
            f"cannot load model {ref!r}: not a local folder with config.json and not reachable on the Hub "
            f"({' '.join(str(e).split())[:160]}). Pass a local folder, or --arch NAME for random weights."
        ) from None
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise UsageError(f"model {ref!r} needs its own code to run; pass --trust-remote-code if you trust it.") from None
        raise
    model.to(device).eval().requires_grad_(False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return Loaded(model, tokenizer, name, device, dtype)


def eos_ids(loaded: Loaded) -> list[int]:
    """Token ids that end a reply: the tokenizer's eos plus the generation config's."""
    ids: set[int] = set()
    gen = getattr(loaded.model, "generation_config", None)
    for source in (getattr(gen, "eos_token_id", None), loaded.tokenizer.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif source:
            ids.update(int(i) for i in source)
    return sorted(ids)
