"""Needle (passkey) retrieval: can the model read back a number hidden deep in the (quantized) cache?

The classic passkey test (Mohtashami & Jaggi 2023, "Landmark Attention"): a random 5-digit pass key is
hidden at a chosen depth inside repetitive filler text; at the end the model is asked for it and answers
greedily. The prompt is prefilled into the cache (prefill attention is exact), so the answer tokens are
produced by decode steps that read the cache: with KIVI, the needle sits in the quantized part unless it
is within the last R tokens.

Prompts are built by concatenating token ids (instruction, filler sentences, needle, filler, question),
so the needle's token span is known exactly and every prompt of one length has exactly `length` tokens
(which lets all depths and trials of one length run as one batch without padding). Depth d places the
needle after round(d * n_filler) filler tokens, snapped to the nearest sentence boundary: 0 = right after
the instruction, 1 = right before the question.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .compat import cache_kwarg
from .eval_settings import Setting

INSTRUCTION = (
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
    "I will quiz you about the important information there."
)
FILLER = ("The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again.")
NEEDLE = " The pass key is {key}. Remember it. {key} is the pass key."
QUESTION = " What is the pass key? The pass key is"

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class NeedleCase:
    """One prompt: `input_ids[needle_start:needle_end]` are the needle's tokens."""

    input_ids: list[int]
    key: str
    length: int
    depth: float  # requested depth in [0, 1]
    needle_start: int
    needle_end: int
    filler_start: int  # the filler occupies [filler_start, filler_start + filler_tokens) plus the needle
    filler_tokens: int

    @property
    def actual_depth(self) -> float:
        """Where the needle really is: the fraction of the filler before it (snapped to a sentence boundary)."""
        return (self.needle_start - self.filler_start) / self.filler_tokens


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def make_needle_case(tokenizer, length: int, depth: float, rng: random.Random) -> NeedleCase:
    """A prompt of exactly `length` tokens with a random 5-digit key at `depth` (0..1) of the filler."""
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"needle depth {depth} is outside [0, 1].")
    key = str(rng.randint(10000, 99999))
    head = _ids(tokenizer, INSTRUCTION)
    needle = _ids(tokenizer, NEEDLE.format(key=key))
    question = _ids(tokenizer, QUESTION)
    n_filler = length - len(head) - len(needle) - len(question)
    if n_filler < 1:
        raise ValueError(f"needle length {length} is too short: the instruction, needle and question alone take "
                         f"{length - n_filler} tokens.")
    # Filler: whole sentences, cycled; sentence boundaries (token offsets) are where the needle may go.
    sentences = [_ids(tokenizer, " " + s) for s in FILLER]
    filler: list[int] = []
    bounds = [0]
    i = 0
    while len(filler) < n_filler:
        filler += sentences[i % len(sentences)]
        bounds.append(len(filler))
        i += 1
    filler = filler[:n_filler]  # the last sentence may be cut: it sits right before the question
    bounds = [b for b in bounds if b < n_filler] + [n_filler]  # the end (before the question) is a boundary too
    cut = min(bounds, key=lambda b: abs(b - depth * n_filler))
    ids = head + filler[:cut] + needle + filler[cut:] + question
    start = len(head) + cut
    assert len(ids) == length
    return NeedleCase(ids, key, length, depth, start, start + len(needle), len(head), n_filler)


def extract_answer(text: str) -> str:
    """The first run of digits in the model's answer ("" if none)."""
    m = re.search(r"\d+", text)
    return m.group(0) if m else ""


@dataclass(frozen=True, slots=True)
class NeedleResult:
    setting: dict
    lengths: list[int]
    depths: list[float]
    trials: int
    accuracy: dict[str, float]  # "length@depth" -> exact-match accuracy
    answers: list[dict] = field(default_factory=list)  # per case: length, depth, key, answer, correct
    seconds: float = 0.0

    @property
    def mean_accuracy(self) -> float:
        return sum(self.accuracy.values()) / max(1, len(self.accuracy))

    def cell(self, length: int, depth: float) -> float:
        return self.accuracy[cell_key(length, depth)]

    def as_dict(self) -> dict:
        return {
            "setting": self.setting, "lengths": self.lengths, "depths": self.depths, "trials": self.trials,
            "accuracy": self.accuracy, "mean_accuracy": self.mean_accuracy, "answers": self.answers,
            "seconds": self.seconds,
        }


def cell_key(length: int, depth: float) -> str:
    return f"{length}@{depth:g}"


@torch.inference_mode()
def greedy_answers(model, tokenizer, batch: torch.Tensor, setting: Setting, max_new_tokens: int) -> list[str]:
    """Prefill `batch` [B, L] into a fresh cache of `setting`, decode greedily, return the decoded texts."""
    device = next(model.parameters()).device
    kw = cache_kwarg(model)
    cache = setting.make_cache(model)
    x = batch.to(device)
    out_tokens = []
    logits = model(input_ids=x, use_cache=True, logits_to_keep=1, **{kw: cache}).logits[:, -1]
    for step in range(max_new_tokens):
        nxt = logits.argmax(-1, keepdim=True)  # [B, 1]
        out_tokens.append(nxt)
        if step + 1 < max_new_tokens:
            logits = model(input_ids=nxt, use_cache=True, **{kw: cache}).logits[:, -1]
    toks = torch.cat(out_tokens, dim=1).tolist()
    return [tokenizer.decode(t, skip_special_tokens=True) for t in toks]


def run_needle(
    model,
    tokenizer,
    setting: Setting,
    lengths: list[int],
    depths: list[float],
    trials: int = 4,
    seed: int = 0,
    batch_size: int = 8,
    max_new_tokens: int = 8,
    progress: Progress | None = None,
) -> NeedleResult:
    """Exact-match accuracy per (length, depth) cell over `trials` random keys; the same keys (same seed) for
    every setting, so settings are compared on identical prompts."""
    t0 = time.perf_counter()
    rng = random.Random(seed)
    cases = [make_needle_case(tokenizer, n, d, rng) for n in lengths for d in depths for _ in range(trials)]
    answers: list[dict] = []
    done = 0
    for n in lengths:
        group = [c for c in cases if c.length == n]
        for s in range(0, len(group), batch_size):
            chunk = group[s : s + batch_size]
            batch = torch.tensor([c.input_ids for c in chunk])
            texts = greedy_answers(model, tokenizer, batch, setting, max_new_tokens)
            for c, text in zip(chunk, texts):
                got = extract_answer(text)
                answers.append({"length": c.length, "depth": c.depth, "key": c.key, "answer": text.strip(),
                                "correct": got == c.key})
            done += len(chunk)
            if progress is not None:
                progress(done, len(cases))
    accuracy = {}
    for n in lengths:
        for d in depths:
            hits = [a["correct"] for a in answers if a["length"] == n and a["depth"] == d]
            accuracy[cell_key(n, d)] = sum(hits) / len(hits)
    return NeedleResult(setting.as_dict(), list(lengths), list(depths), trials, accuracy, answers,
                        time.perf_counter() - t0)
