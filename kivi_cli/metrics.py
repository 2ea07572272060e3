"""Measurements as data: result dataclasses, the NVML peak sampler, cache byte counting.

Renderers (tables, JSON, plots) live in `kivi_cli.render`; nothing here prints. Memory is reported by
source, because each answers a different question:
- `analytic_kv_bytes`: what the cache should hold by formula (`kivi_core.analytic_cache_bytes`).
- `cache_bytes`: what the cache's tensors really hold (allocated capacity, all layers).
- `torch_peak_allocated_bytes`: `torch.cuda.max_memory_allocated` over the run (weights included).
- `nvml_peak_used_bytes`: device memory in use as the driver sees it (all processes, CUDA context and
  allocator cache included), sampled in a background thread every `NvmlPeakSampler.interval_s`.
"""

from __future__ import annotations

import platform
import threading
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch

STATUS_OK, STATUS_OOM, STATUS_ERROR = "ok", "oom", "error"


@dataclass
class Memory:
    analytic_kv_bytes: int
    cache_bytes: Optional[int] = None
    cache_bytes_by_component: Optional[dict[str, int]] = None
    torch_peak_allocated_bytes: Optional[int] = None
    nvml_peak_used_bytes: Optional[int] = None


@dataclass
class Timing:
    """One prefill + decode run. Decode runs `decode_steps` forwards after the prefill (the prefill's
    logits give the first new token), so tokens/s = batch * decode_steps / decode_wall_s. For the lean
    loop on CUDA, `profile` counts the steps from the first CUDA-graph replay on (each step kind runs
    once eagerly and is captured at its next occurrence before that); `generate` counts them all, as a
    user waits for them."""

    batch: int
    prefill_s: float
    decode_steps: int
    decode_wall_s: float
    gpu_ms_per_step: Optional[float] = None  # CUDA events around each step's forward + sampling (gaps included)
    gpu_busy_ms_per_step: Optional[float] = None  # kernel time per step from the torch profiler (profile only)

    @property
    def wall_ms_per_step(self) -> Optional[float]:
        return 1000 * self.decode_wall_s / self.decode_steps if self.decode_steps else None

    @property
    def decode_tokens_per_s(self) -> Optional[float]:
        return self.batch * self.decode_steps / self.decode_wall_s if self.decode_steps and self.decode_wall_s > 0 else None

    def as_dict(self) -> dict:
        return {
            "prefill_s": self.prefill_s,
            "decode_steps": self.decode_steps,
            "decode_s": self.decode_wall_s,
            "decode_tokens_per_s": self.decode_tokens_per_s,
            "wall_ms_per_step": self.wall_ms_per_step,
            "gpu_ms_per_step": self.gpu_ms_per_step,
            "gpu_busy_ms_per_step": self.gpu_busy_ms_per_step,
        }


@dataclass
class Side:
    """One side of a profile: the full-precision baseline (`kivi=None`) or one KIVI setting."""

    name: str
    kivi: Optional[dict]
    batch: int
    status: str = STATUS_OK
    error: Optional[str] = None
    memory: Optional[Memory] = None
    timing: Optional[Timing] = None
    max_batch: Optional[int] = None  # --find-max-batch: largest batch that ran at this ctx
    ratios: dict[str, Optional[float]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "kivi": self.kivi,
            "batch": self.batch,
            "status": self.status,
            "error": self.error,
            "memory": asdict(self.memory) if self.memory else None,
            "timing": self.timing.as_dict() if self.timing else None,
            "max_batch": self.max_batch,
            "ratios_vs_baseline": self.ratios,
        }


@dataclass
class ProfileReport:
    model: str
    device: str
    dtype: str
    batch: int
    ctx: int
    prompt_len: int
    gen: int
    sides: list[Side]
    environment: dict = field(default_factory=dict)
    find_max_batch: bool = False
    prefill_chunk: int = 0  # 0 = the whole prompt in one forward
    prefill_batch: Optional[int] = 0  # rows prefilled together: 0 = all, None = automatic (lean loop)
    loop: str = "lean"  # "lean": kivi_core.engine (static caches, CUDA graphs); "generate": the plain loop
    safety_margin: Optional[float] = None  # --find-max-batch: measured at max_batch * (1 - margin)

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "device": self.device,
            "dtype": self.dtype,
            "batch": self.batch,
            "ctx": self.ctx,
            "prompt_len": self.prompt_len,
            "gen": self.gen,
            "find_max_batch": self.find_max_batch,
            "prefill_chunk": self.prefill_chunk,
            "prefill_batch": self.prefill_batch,
            "loop": self.loop,
            "safety_margin": self.safety_margin,
            "environment": self.environment,
            "sides": [s.as_dict() for s in self.sides],
        }


def compute_ratios(base: Side, side: Side) -> dict[str, Optional[float]]:
    """Memory: baseline / side ("x smaller"). Speed: side / baseline ("x faster"). Measured ratios only when
    both sides finished (a side that ran out of memory has peaks up to the failure, not a comparable
    number); the analytic ratio always."""

    def div(a, b):
        return a / b if a is not None and b else None

    both = base.status == STATUS_OK and side.status == STATUS_OK
    bm, sm = base.memory, side.memory
    bt, st = base.timing, side.timing
    measured = lambda attr: div(getattr(bm, attr), getattr(sm, attr)) if both and bm and sm else None  # noqa: E731
    return {
        "analytic_kv_x_smaller": div(bm and bm.analytic_kv_bytes, sm and sm.analytic_kv_bytes),
        "cache_bytes_x_smaller": measured("cache_bytes"),
        "torch_peak_x_smaller": measured("torch_peak_allocated_bytes"),
        "nvml_peak_x_smaller": measured("nvml_peak_used_bytes"),
        "decode_tokens_per_s_x": div(st and st.decode_tokens_per_s, bt and bt.decode_tokens_per_s) if both else None,
    }


# --- cache bytes -----------------------------------------------------------------------------------------
def cache_bytes(cache) -> tuple[int, Optional[dict[str, int]]]:
    """(total bytes held, by-component dict or None) for a KiviCache or any transformers cache."""
    if hasattr(cache, "memory"):
        mem = cache.memory()
        return mem.total, mem.as_dict()
    total = 0
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total, None


# --- environment -----------------------------------------------------------------------------------------
def environment(device: torch.device) -> dict:
    import transformers

    import kivi_core

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "kivi": getattr(kivi_core, "__version__", "?"),
        "device_name": platform.processor() or platform.machine(),
    }
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
        try:
            import triton

            env["triton"] = triton.__version__
        except ImportError:
            pass
    return env


# --- NVML ------------------------------------------------------------------------------------------------
class NvmlPeakSampler:
    """Peak device memory in use, sampled by NVML in a background thread (a context manager).

    `peak` is None on CPU or when NVML is unavailable. The NVML device is matched to the torch device by
    UUID, so CUDA_VISIBLE_DEVICES reordering cannot mix devices up.
    """

    interval_s = 0.005

    def __init__(self, device: torch.device):
        self.device = device
        self.peak: Optional[int] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._handle = None

    def _open(self):
        if self.device.type != "cuda":
            return None
        try:
            import pynvml

            pynvml.nvmlInit()
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            uuid = str(torch.cuda.get_device_properties(index).uuid)
            uuid = uuid if uuid.startswith("GPU-") else "GPU-" + uuid
            try:
                return pynvml.nvmlDeviceGetHandleByUUID(uuid)
            except pynvml.NVMLError:
                return pynvml.nvmlDeviceGetHandleByIndex(index)
        except Exception:  # noqa: BLE001 — no NVML means the row says n/a, never a failure
            return None

    def _sample(self) -> None:
        import pynvml

        while True:
            try:
                used = pynvml.nvmlDeviceGetMemoryInfo(self._handle).used
                self.peak = used if self.peak is None else max(self.peak, used)
            except pynvml.NVMLError:
                return
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> "NvmlPeakSampler":
        self._handle = self._open()
        if self._handle is not None:
            self._thread = threading.Thread(target=self._sample, name="kivi-nvml", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> bool:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._sample_once()
        return False

    def _sample_once(self) -> None:
        import pynvml

        try:
            used = pynvml.nvmlDeviceGetMemoryInfo(self._handle).used
            self.peak = used if self.peak is None else max(self.peak, used)
        except pynvml.NVMLError:
            pass
