"""Batched sampling from any Hugging Face causal LM with the KV cache, and the helpers that split prompts over DDP
ranks (`shard`) and gather what each rank made (`gather_objects`).

Used by the iterative objectives (candidates at each iteration boundary), the LLM judge (judge replies) and the
benchmarks (held-out accuracy). One short decoding loop instead of `model.generate`, so that seeds, stop strings,
n samples per prompt and token counts are explicit, and per-step overhead stays small for tiny models.

Conventions: prompts are left-padded (so every row's next token sits in the last column), positions come from the
attention mask (a row's first real token is position 0), and eos or a stop string ends a row. Returned texts and
token ids exclude the eos token and everything from the stop string on.

Backends: the iterative loops open `backend.serving(policy, tokenizer)` around each iteration boundary; while it is
open, `generate` calls for that policy run on the backend (`VLLMGeneration`, litforge/vllm_backend.py) and return the
same `Generations`. `BuiltinGeneration` (the default) routes nothing: the loop below runs as it always has.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from litforge.data import IGNORE_INDEX, Collator
from litforge.losses import sequence_logprobs


@dataclass
class Generations:
    """What `generate` returns: `texts[i][j]` is sample j of prompt i (token ids and lengths alike)."""

    prompts: list[str]
    texts: list[list[str]]
    token_ids: list[list[list[int]]]
    stopped: list[list[str]]  # per sample: "eos", "stop" (a stop string) or "length" (max_new_tokens reached)
    prompt_tokens: int = 0
    new_tokens: int = 0
    seconds: float = 0.0


@torch.no_grad()
def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str], n: int = 1,
             max_new_tokens: int = 64, temperature: float = 1.0, top_p: float = 1.0, stop: list[str] | None = None,
             seed: int = 0, batch_size: int = 64, use_cache: bool = True, add_bos: bool = True,
             progress: bool = False) -> Generations:
    """Sample `n` continuations of each prompt (temperature 0 = greedy), `batch_size` sequences at a time.

    Args:
        model: any causal LM; it is put in eval mode for the call and restored after.
        tokenizer: its tokenizer (pad and eos ids are used).
        prompts: prompt texts; bos is prepended when `add_bos` and the tokenizer has one.
        n: samples per prompt.
        max_new_tokens: longest continuation.
        temperature: softmax temperature; 0 picks the argmax.
        top_p: nucleus sampling mass (1.0 = off).
        stop: strings that end a continuation; the text is cut before the first one.
        seed: seed of the sampling generator (same seed, prompts and batch size: same samples).
        batch_size: sequences per forward pass.
        use_cache: reuse keys/values (False recomputes the whole sequence every step; for tests).
        add_bos: prepend the bos token to each prompt.
        progress: show a tqdm bar over batches.
    """
    served = _SERVED.get()
    if served is not None and served[0] is model:  # inside a backend's `serving(model, ...)`: it samples instead
        return served[1].generate(model, tokenizer, prompts, n=n, max_new_tokens=max_new_tokens,
                                  temperature=temperature, top_p=top_p, stop=stop, seed=seed, batch_size=batch_size,
                                  use_cache=use_cache, add_bos=add_bos, progress=progress)
    started = time.perf_counter()
    stop = [s for s in (stop or []) if s]
    device = next(model.parameters()).device
    bos = [tokenizer.bos_token_id] if add_bos and tokenizer.bos_token_id is not None else []
    encoded = [bos + tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    rows = [(i, j) for i in range(len(prompts)) for j in range(n)]
    # longest prompts first, so a batch holds similar lengths and little padding
    rows.sort(key=lambda row: -len(encoded[row[0]]))
    texts = [[""] * n for _ in prompts]
    token_ids: list[list[list[int]]] = [[[] for _ in range(n)] for _ in prompts]
    stopped = [[""] * n for _ in prompts]
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    batches = range(0, len(rows), batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="generate", unit="batch")
    new_tokens = 0
    try:
        for start in batches:
            chunk = rows[start:start + batch_size]
            outputs, reasons = _generate_batch(model, tokenizer, [encoded[i] for i, _ in chunk], max_new_tokens,
                                               temperature, top_p, stop, generator, use_cache, device)
            for (i, j), ids, reason in zip(chunk, outputs, reasons):
                text = tokenizer.decode(ids, skip_special_tokens=False)
                if reason == "stop":
                    text, ids = _cut_at_stop(tokenizer, ids, text, stop)
                texts[i][j], token_ids[i][j], stopped[i][j] = text, ids, reason
                new_tokens += len(ids)
    finally:
        model.train(was_training)
    return Generations(list(prompts), texts, token_ids, stopped, prompt_tokens=sum(len(e) for e in encoded) * n,
                       new_tokens=new_tokens, seconds=time.perf_counter() - started)


_SERVED: contextvars.ContextVar[tuple[PreTrainedModel, GenerationBackend] | None] = contextvars.ContextVar(
    "litforge_generation_backend", default=None)


class GenerationBackend:
    """Where the iterative loops sample from the policy: `serving` brackets a boundary, `generate` samples."""

    @contextlib.contextmanager
    def serving(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> Iterator[None]:
        """Make the backend ready for `model`'s current weights; `generate(model, ...)` calls inside go to it."""
        yield

    def generate(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
                 **options) -> Generations:
        """What `litforge.generation.generate` returns, for the same arguments."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what `serving` built (an engine, its weight files); called once the loop has finished."""


class BuiltinGeneration(GenerationBackend):
    """The KV-cache loop of this module, on the policy itself (the default: nothing is routed)."""

    def generate(self, model, tokenizer, prompts, **options):
        token = _SERVED.set(None)  # the loop itself, even when called from inside another backend's `serving`
        try:
            return generate(model, tokenizer, prompts, **options)
        finally:
            _SERVED.reset(token)


@contextlib.contextmanager
def routed_to(backend: GenerationBackend, model: PreTrainedModel) -> Iterator[None]:
    """Send `generate(model, ...)` calls to `backend` while the block runs (other models keep the built-in loop)."""
    token = _SERVED.set((model, backend))
    try:
        yield
    finally:
        _SERVED.reset(token)


def _generate_batch(model, tokenizer, prompts: list[list[int]], max_new_tokens, temperature, top_p, stop, generator,
                    use_cache, device) -> tuple[list[list[int]], list[str]]:
    """Decode one left-padded batch; returns each row's new tokens (eos excluded) and why it ended."""
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    width = max(len(p) for p in prompts)
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    batch = len(prompts)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    hit_eos = torch.zeros(batch, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch, dtype=torch.long, device=device)  # new tokens kept per row
    stopped_by_string = [False] * batch
    parameters = inspect.signature(model.forward).parameters
    keep = {"logits_to_keep": 1} if "logits_to_keep" in parameters else {}
    cache_name = "cache" if "cache" in parameters else "past_key_values"  # transformers renamed it in 5.x
    cache = DynamicCache() if use_cache else None
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # a row's first real token is position 0
    step_ids, step_positions, sequence = input_ids, positions, input_ids
    tail = max((len(s) for s in stop), default=0) + 4  # tokens decoded to look for a stop string (>= 1 char each)
    steps: list[torch.Tensor] = []
    for _ in range(max_new_tokens):
        if use_cache:
            out = model(input_ids=step_ids, attention_mask=mask, position_ids=step_positions, use_cache=True,
                        **{cache_name: cache}, **keep)
        else:
            out = model(input_ids=sequence, attention_mask=mask, position_ids=positions, use_cache=False, **keep)
        token = _sample(out.logits[:, -1, :].float(), temperature, top_p, generator)  # (batch,)
        active = ~done
        is_eos = active & (token == eos)
        hit_eos |= is_eos
        lengths += active & ~is_eos
        done |= is_eos
        token = torch.where(active & ~is_eos, token, torch.full_like(token, pad))
        steps.append(token)
        if stop:  # stop strings need the text: check only the rows still running
            for row in (~done).nonzero().flatten().tolist():
                recent = [int(t[row]) for t in steps[-tail:]]
                if any(s in tokenizer.decode(recent) for s in stop):
                    stopped_by_string[row] = True
                    done[row] = True
        step_ids = token.unsqueeze(-1)
        step_positions = step_positions[:, -1:] + 1
        mask = torch.cat([mask, torch.ones_like(step_ids)], dim=1)  # rows already done are never read again
        if not use_cache:
            sequence = torch.cat([sequence, step_ids], dim=1)
            positions = torch.cat([positions, step_positions], dim=1)
        if bool(done.all()):
            break
    generated = torch.stack(steps, dim=1).tolist() if steps else [[] for _ in range(batch)]
    counts, eos_rows = lengths.tolist(), hit_eos.tolist()
    new = [row[:count] for row, count in zip(generated, counts)]
    reasons = ["stop" if by_string else "eos" if ended else "length"
               for by_string, ended in zip(stopped_by_string, eos_rows)]
    return new, reasons


def _sample(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> torch.Tensor:
    """One token per row: argmax at temperature 0, else a draw from the (nucleus-truncated) tempered softmax."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        drop = sorted_probs.cumsum(-1) - sorted_probs >= top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _cut_at_stop(tokenizer, ids: list[int], text: str, stop: list[str]) -> tuple[str, list[int]]:
    """The text before the first stop string, and the longest token prefix whose text is a prefix of it."""
    cut = min(text.find(s) for s in stop if s in text) if any(s in text for s in stop) else len(text)
    text = text[:cut]
    length = len(ids)
    while length and not text.startswith(tokenizer.decode(ids[:length])):
        length -= 1
    return text, ids[:length]


@torch.no_grad()
def continuation_logprobs(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
                          continuations: list[str], batch_size: int = 64, add_bos: bool = True) -> list[float]:
    """log p(continuation | prompt) of each (prompt, continuation) pair, summed over the continuation's tokens.

    Prompt and continuation are tokenized apart (as `encode_prompt_response` builds training rows) and scored with
    `litforge.losses.sequence_logprobs`, `batch_size` pairs per forward pass, right-padded; an empty continuation
    scores 0. bos is prepended when `add_bos` and the tokenizer has one. The model is put in eval mode for the call.
    """
    if len(prompts) != len(continuations):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
    device = next(model.parameters()).device
    bos = [tokenizer.bos_token_id] if add_bos and tokenizer.bos_token_id is not None else []
    rows = []
    for prompt, continuation in zip(prompts, continuations):
        context = bos + tokenizer(prompt, add_special_tokens=False)["input_ids"]
        target = tokenizer(continuation, add_special_tokens=False)["input_ids"] if continuation else []
        rows.append((context + target, [IGNORE_INDEX] * len(context) + target))
    collate = Collator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    scores: list[float] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(rows), batch_size):
            batch = collate([{"input_ids": ids, "labels": labels} for ids, labels in rows[start:start + batch_size]])
            batch = {key: value.to(device) for key, value in batch.items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
            summed, _ = sequence_logprobs(logits, batch["labels"])  # (batch,)
            scores += summed.tolist()
    finally:
        model.train(was_training)
    return scores


def shard(items: list, rank: int, world_size: int) -> list[int]:
    """Indices of `items` that rank `rank` of `world_size` handles (strided, so shards differ by at most one)."""
    return list(range(rank, len(items), world_size))


def gather_objects(value: object) -> list[object]:
    """Every rank's `value`, in rank order (a one-element list outside torch.distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [value]
    gathered: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered
