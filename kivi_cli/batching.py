"""Running many prompts: tokenize with left padding, batch, decode, and turn each row into a result record.

A result is a plain dict with the documented `generate --json` keys (docs/cli.md); a failure of a line or
of a whole batch becomes an error record for the prompts concerned, and the next batch still runs. Each
batch decodes through the loop `kivi_cli.loops.batch_loop` picks (the plain loop of `kivi_cli.decode`,
or the lean loop of `kivi_core.engine`); the records are the same either way, and `loop` says which ran.
"""

from __future__ import annotations

import gc
from typing import Callable, Optional

import torch

from kivi_cli import loops
from kivi_cli.decode import Sampler, Session, new_cache, run
from kivi_cli.errors import describe
from kivi_cli.metrics import cache_bytes
from kivi_cli.models import Loaded, eos_ids
from kivi_cli.options import Loop
from kivi_cli.prompts import Item, Prompt, PromptError


def encode(loaded: Loaded, texts: list[str], chat: bool) -> dict[str, torch.Tensor]:
    tok = loaded.tokenizer
    if chat:
        texts = [tok.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True, tokenize=False)
                 for t in texts]
    tok.padding_side = "left"
    return tok(texts, padding=True, return_tensors="pt", add_special_tokens=not chat)


def run_prompts(loaded: Loaded, kivi, items: list[Item], *, batch_size: int, max_new_tokens: int,
                temperature: float, top_p: float, seed: int, chat: bool, out,
                on_result: Optional[Callable[[dict], None]] = None, loop: Loop = Loop.generate) -> list[dict]:
    from kivi_core import analytic_cache_bytes

    results: list[dict] = []

    def emit(record: dict) -> None:
        results.append(record)
        if on_result is not None:
            on_result(record)

    good = [i for i in items if isinstance(i, Prompt)]
    bad = {i.index: i for i in items if isinstance(i, PromptError)}
    eos = eos_ids(loaded)
    pad = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else (eos[0] if eos else 0)
    dims = loaded.dims
    sampler = Sampler(temperature, top_p, seed)
    label = kivi.label() if kivi is not None else f"{_short(loaded.dtype)} (no KIVI)"
    batches = [good[i: i + batch_size] for i in range(0, len(good), batch_size)]
    encoded: list[Optional[dict]] = [None] * len(batches)
    if loop is Loop.lean:  # every batch must take it: one usage error before any runs, not a failed batch
        encoded = [encode(loaded, [p.text for p in batch], chat) for batch in batches]
        loops.check_batches(loaded, kivi, [(_batch_label(n, len(batches), batch), enc["attention_mask"])
                                           for n, (batch, enc) in enumerate(zip(batches, encoded), start=1)],
                            max_new_tokens)

    next_bad = sorted(bad)
    for n, batch in enumerate(batches, start=1):
        # error records keep input order: report bad lines that come before this batch
        while next_bad and next_bad[0] < batch[0].index:
            emit(_error_record(bad[next_bad.pop(0)]))
        if len(batches) > 1:
            out.hint(f"batch {n}/{len(batches)}: {len(batch)} prompt(s)")
        try:
            records = _run_batch(loaded, kivi, batch, max_new_tokens, sampler, chat, eos, pad, dims, label,
                                 analytic_cache_bytes, out if not out.json and len(batch) == 1 else None, loop,
                                 encoded[n - 1])
        except Exception as exc:  # noqa: BLE001 — one failed batch must not lose the others
            message, _ = describe(exc)
            del exc
            _free(loaded.device)
            records = [{"index": p.index, "line": p.line, "prompt": p.text, "error": message} for p in batch]
        for record in records:
            emit(record)
    for index in next_bad:
        emit(_error_record(bad[index]))
    return results


def _run_batch(loaded, kivi, batch: list[Prompt], max_new_tokens, sampler, chat, eos, pad, dims, label,
               analytic_cache_bytes, stream_out, loop: Loop = Loop.generate, enc=None) -> list[dict]:
    enc = enc if enc is not None else encode(loaded, [p.text for p in batch], chat)
    which = loops.batch_loop(loop, loaded, kivi, sampler.temperature, enc["attention_mask"], max_new_tokens)
    on_token = None
    if which == "lean":  # no streaming: the tokens reach the host when the batch is done
        gen, cache = loops.run_lean(loaded, kivi, enc["input_ids"], max_new_tokens, eos)
        seq_len = enc["input_ids"].shape[1] + gen.tokens.shape[1] - 1  # the last token is never fed back
        stream_out = None
    else:
        session = Session(loaded.model, new_cache(loaded.model, kivi), loaded.device)
        if stream_out is not None:  # one prompt per batch, people watching: print tokens as they come
            stream_out.text(batch[0].text, style="bold")
            on_token = _Streamer(loaded.tokenizer, stream_out, eos)
        gen = run(session, enc["input_ids"], enc["attention_mask"], max_new_tokens, sampler, eos_ids=eos,
                  pad_id=pad, on_token=on_token)
        if on_token is not None:
            on_token.finish()
        cache, seq_len = session.cache, session.tokens
        del session
    held, by_component = cache_bytes(cache)
    base = analytic_cache_bytes(None, len(batch), dims["kv_heads"], dims["head_dim"], dims["layers"], seq_len,
                                loaded.dtype)
    prompt_lens = enc["attention_mask"].sum(-1).tolist()
    t = gen.timing
    records = []
    for row, p in enumerate(batch):
        n = gen.lengths[row]
        new = gen.tokens[row, :n].tolist()
        finish = "eos" if new and new[-1] in eos else "length"
        records.append({
            "index": p.index,
            "line": p.line,
            "prompt": p.text,
            "text": loaded.tokenizer.decode(new, skip_special_tokens=True),
            "prompt_tokens": int(prompt_lens[row]),
            "generated_tokens": n,
            "finish_reason": finish,
            "kivi": label,
            "batch_size": len(batch),
            "prefill_s": t.prefill_s,
            "decode_s": t.decode_wall_s,
            "decode_tokens_per_s": t.decode_tokens_per_s,
            "cache_bytes": held,
            "cache_bytes_full_precision": base,
            "loop": which,
        })
        if stream_out is not None:
            records[-1]["_streamed"] = True  # human mode only: the text is already on screen
    del cache, gen
    return records


class _Streamer:
    """Incremental detokenization for one row: decode everything so far, print the new suffix (holding
    back a trailing partial UTF-8 character)."""

    def __init__(self, tokenizer, out, eos: list[int]):
        self.tokenizer, self.out, self.eos = tokenizer, out, set(eos)
        self.ids: list[int] = []
        self.printed = 0

    def __call__(self, tok: torch.Tensor) -> bool:
        t = int(tok[0])
        if t in self.eos:
            return True
        self.ids.append(t)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return False
        self.out.stream(text[self.printed:])
        self.printed = len(text)
        return False

    def finish(self) -> None:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        self.out.stream(text[self.printed:] + "\n")
        self.printed = len(text)

    @property
    def text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True)


def _batch_label(n: int, total: int, batch: list[Prompt]) -> str:
    where = [f"line {p.line}" if p.line else f"prompt #{p.index}" for p in (batch[0], batch[-1])]
    return f"batch {n}/{total} ({where[0]}" + (f" to {where[1]})" if len(batch) > 1 else ")")


def _error_record(e: PromptError) -> dict:
    return {"index": e.index, "line": e.line, "error": f"line {e.line}: {e.error}"}


def _short(dtype: torch.dtype) -> str:
    return {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}.get(dtype, str(dtype))


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
