"""vLLM as the generation backend of the iterative loops (Kwon et al. 2023, "Efficient Memory Management for Large
Language Model Serving with PagedAttention"): the policy's weights are handed to a vLLM engine at each iteration
boundary, and its samples come back as the `Generations` of `litforge.generation.generate`.

At each boundary (`serving`): the policy and tokenizer are saved (`save_pretrained`) to a directory the backend owns;
the first boundary builds `vllm.LLM` from it, later ones wake the engine and reload the weights in place
(`collective_rpc("reload_weights", weights_path=...)`, as in vLLM 0.33) and reset its prefix cache. After the boundary
the engine sleeps (level 2: weights and KV cache freed), so training gets its GPU memory back.

The same prompt token ids as the built-in loop (bos + the prompt's tokens) are sent, the sampling options are mapped
one to one (`sampling_options`), and each output is decoded and cut at a stop string by the same rule as the built-in
loop (`finish`), so texts, token ids (eos excluded) and the stop reason mean the same thing.

Departures from the built-in loop:
    1. Same seed, different draws: vLLM seeds each request (sample j of a prompt: seed + j) instead of one generator
       over batches, so samples match the built-in ones in distribution, not token for token; greedy decoding
       (temperature 0) matches up to numerics (vLLM runs in `dtype`, bf16 by default).
    2. `batch_size` and `use_cache` are ignored (vLLM schedules its own batches and always caches).
    3. Refused with a ConfigError naming `generation_backend`: no vllm, no CUDA, more than one process (each DDP
       rank would need its own engine and GPU share), a position plugin other than the backbone's own (vLLM runs
       the standard architecture), a peft/quantized policy (merge the adapters first).
    4. Only the policy is served: a System 2 `teacher` or a judge with its own checkpoint keeps the built-in loop.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from litforge.checkpoint import POSITION_KEY
from litforge.errors import ConfigError
from litforge.generation import GenerationBackend, Generations, _cut_at_stop, routed_to

FIELD = "generation_backend"


def vllm_unavailable() -> str | None:
    """Why vLLM cannot run here (not installed, no CUDA), or None when it can."""
    try:
        import vllm  # noqa: F401
    except ImportError:
        return "vllm is not installed (pip install 'litforge[vllm]')"
    if not torch.cuda.is_available():
        return "vLLM needs a CUDA GPU and none is available"
    return None


def sampling_options(n: int, max_new_tokens: int, temperature: float, top_p: float, stop: list[str] | None,
                     seed: int, eos_token_id: int | None) -> dict[str, Any]:
    """The `vllm.SamplingParams` arguments that sample as `litforge.generation.generate` does."""
    return {"n": n, "max_tokens": max_new_tokens, "temperature": max(temperature, 0.0),
            "top_p": top_p if temperature > 0 else 1.0, "seed": seed, "stop": [s for s in stop or [] if s],
            "stop_token_ids": [] if eos_token_id is None else [eos_token_id], "include_stop_str_in_output": False,
            "skip_special_tokens": False}


def finish(tokenizer, token_ids: list[int], finish_reason: str | None, stop_reason: int | str | None,
           stop: list[str]) -> tuple[str, list[int], str]:
    """One vLLM completion as the built-in loop reports it: text, token ids without eos, and "eos" / "stop" /
    "length" (vLLM says "stop" for both eos and a stop string; `stop_reason` tells them apart)."""
    ids = list(token_ids)
    if ids and ids[-1] == tokenizer.eos_token_id:
        ids = ids[:-1]
    reason = "length" if finish_reason == "length" else "stop" if isinstance(stop_reason, str) else "eos"
    text = tokenizer.decode(ids, skip_special_tokens=False)
    if reason == "stop":
        text, ids = _cut_at_stop(tokenizer, ids, text, stop)
    return text, ids, reason


class VLLMGeneration(GenerationBackend):
    """Samples the iterative loops' candidates with vLLM, from the policy's weights at each iteration boundary.

    Args:
        gpu_memory_utilization: share of the GPU's memory vLLM may take for weights and KV cache while generating
            (the training model and optimizer stay on the GPU beside it).
        dtype: dtype vLLM runs the policy in.
        max_model_len: longest prompt + continuation (None = the model config's).
        enforce_eager: skip CUDA-graph capture (faster start, slower decoding).
        sleep: free vLLM's GPU memory between boundaries (level-2 sleep; off keeps the engine resident).
    """

    def __init__(self, gpu_memory_utilization: float = 0.3, dtype: str = "bfloat16", max_model_len: int | None = None,
                 enforce_eager: bool = True, sleep: bool = True):
        reason = vllm_unavailable()
        if reason is not None:
            raise ConfigError(FIELD, f"VLLMGeneration cannot run: {reason}; use BuiltinGeneration")
        if not 0 < gpu_memory_utilization <= 1:
            raise ConfigError(f"{FIELD}.gpu_memory_utilization", f"must be in (0, 1], got {gpu_memory_utilization}")
        self.gpu_memory_utilization, self.dtype, self.max_model_len = gpu_memory_utilization, dtype, max_model_len
        self.enforce_eager, self.sleep = enforce_eager, sleep
        self.llm = None
        self.weights_dir: Path | None = None

    @contextlib.contextmanager
    def serving(self, model, tokenizer) -> Iterator[None]:
        refuse_unservable(model)
        self.load(model, tokenizer)
        try:
            with routed_to(self, model):
                yield
        finally:
            if self.sleep:
                self.llm.sleep(level=2)

    def load(self, model, tokenizer) -> None:
        """Write the policy's current weights where the engine reads them, then build the engine or reload it."""
        if self.weights_dir is None:
            self.weights_dir = Path(tempfile.mkdtemp(prefix="litforge-vllm-"))
        model.save_pretrained(self.weights_dir, safe_serialization=True)
        tokenizer.save_pretrained(self.weights_dir)
        if self.llm is None:
            from vllm import LLM

            self.llm = LLM(model=str(self.weights_dir), tokenizer=str(self.weights_dir), dtype=self.dtype,
                           gpu_memory_utilization=self.gpu_memory_utilization, max_model_len=self.max_model_len,
                           enforce_eager=self.enforce_eager, enable_sleep_mode=self.sleep)
            return
        if self.sleep:
            self.llm.wake_up(tags=["weights"])
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(self.weights_dir)})
        if self.sleep:
            self.llm.wake_up(tags=["kv_cache"])
        self.llm.reset_prefix_cache()  # cached keys/values were computed by the old weights

    def generate(self, model, tokenizer, prompts, n=1, max_new_tokens=64, temperature=1.0, top_p=1.0, stop=None,
                 seed=0, batch_size=64, use_cache=True, add_bos=True, progress=False) -> Generations:
        from vllm import SamplingParams

        started = time.perf_counter()
        stop = [s for s in stop or [] if s]
        bos = [tokenizer.bos_token_id] if add_bos and tokenizer.bos_token_id is not None else []
        encoded = [bos + tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        params = SamplingParams(**sampling_options(n, max_new_tokens, temperature, top_p, stop, seed,
                                                   tokenizer.eos_token_id))
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in encoded], params, use_tqdm=progress)
        texts, token_ids, stopped = [], [], []
        for output in outputs:
            finished = [finish(tokenizer, c.token_ids, c.finish_reason, c.stop_reason, stop)
                        for c in sorted(output.outputs, key=lambda c: c.index)]
            texts.append([text for text, _, _ in finished])
            token_ids.append([ids for _, ids, _ in finished])
            stopped.append([reason for _, _, reason in finished])
        return Generations(list(prompts), texts, token_ids, stopped, prompt_tokens=sum(map(len, encoded)) * n,
                           new_tokens=sum(len(ids) for row in token_ids for ids in row),
                           seconds=time.perf_counter() - started)

    def close(self) -> None:
        """Shut the engine down and delete the weights directory."""
        self.llm = None
        if self.weights_dir is not None:
            shutil.rmtree(self.weights_dir, ignore_errors=True)
            self.weights_dir = None


def refuse_unservable(model) -> None:
    """ConfigError naming `generation_backend` for a policy vLLM would run differently, or a run it cannot serve."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        raise ConfigError(FIELD, f"VLLMGeneration serves one process; this run has {dist.get_world_size()} "
                                 "(use BuiltinGeneration under DDP)")
    recorded = getattr(model.config, POSITION_KEY, None)  # what a position plugin writes into the model config
    plugin = recorded["class_path"].rsplit(".", 1)[-1] if recorded else None
    if plugin not in (None, "RoPE"):
        raise ConfigError(FIELD, f"the policy carries the {plugin} position plugin, which vLLM's "
                                 f"{type(model).__name__} would not run: use BuiltinGeneration")
    if hasattr(model, "peft_config") or getattr(model, "is_quantized", False):
        raise ConfigError(FIELD, "a peft or quantized policy cannot be handed to vLLM as it is: merge the adapters "
                                 "(or use BuiltinGeneration)")
