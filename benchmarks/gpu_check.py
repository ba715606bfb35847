"""The GPU run that is ready (issue 18, item 4): every training path litforge ships, a few timed steps each on one
GPU, and generation speed, printed as one table with the machine and versions.

    python benchmarks/gpu_check.py                 # one GPU; about 6-7 minutes on an H200 (estimate below)
    python benchmarks/gpu_check.py --dry           # CPU, tiny sizes, 2 timed steps a row: every code path, ~35 s
    python benchmarks/gpu_check.py --rows sft_bf16,dpo_sdpa --json out.json

Rows (each a `litforge fit` config written here and run through `LitforgeCLI`, the class behind `litforge fit`, plus
the shipped overlays it names; the run's steps after the warm-up are timed):
    sft_bf16        CausalLM SFT on packed synthetic text, bf16-mixed                                     tokens/s
    dpo_sdpa        DPO (DPONLL, alpha 0, frozen reference), the shared-prompt forward with SDPA          pairs/s
                    (each DPO row's note says which layout the pairs took: padding-free shared-prompt rows, or
                    padded rows and why, e.g. flash kernels take no custom layout: the concatenated forward)
    dpo_flash       the same with flash attention (`flash_attn`, else a `kernels` hub kernel), where present
    qlora_dpo       the same DPO with configs/optim/qlora.yaml (4-bit NF4 base + LoRA) and the reference
                    AdaptersDisabled (the base with adapters off), where the overlay exists
    fsdp_sft        sft_bf16 under configs/strategy/fsdp_gpu.yaml on one GPU (--dry: configs/strategy/fsdp.yaml, 1 CPU)
    rope_step       CoPELM with RoPE on counting (T = 256)                                                tokens/s
    cope_step       the same with CoPE (npos_max 64); its note gives the step-time ratio to rope_step
    dpo_layouts     issue 19 item 1 on a GPU: one epoch of DPO's forward + backward on long-tailed pairs as
                    padding-free rows against per-length groups of padded rows (`benchmarks/pair_layouts.py`,
                    256 pairs, 32k vocabulary, the training rows' Llama, bf16 autocast): padding-free pairs/s,
                    the note gives each layout's seconds and the ratio
    moe_finetune    MoECausalLM on a Mixtral-format model (8 experts, top 2: the layout a BTX merge exports)
    generate        litforge.generation.generate: 64 prompts x 4 samples x 128 new tokens, KV cache      tokens/s
    generate_vllm   the same through generation_backend VLLMGeneration, where vllm and CUDA are present

Each row runs in its own forked process (the parent imports the libraries once, touches no GPU, and forks), so a
crash, an out-of-memory or a hang (killed at the row's timeout) fails that row only: status ok / failed (one-line
reason) / n/a (what is missing). Should every GPU row fail with a CUDA initialisation error (a library that creates a
CUDA context on import, in the parent), rerun with `--start-method spawn` (each row then imports on its own: slower).
Peak memory is `torch.cuda.max_memory_allocated` in the row's process (vLLM's engine runs in a process of its own:
not counted); with --dry the process's peak resident set (the parent's imports included).

Sizes and the 8-minute estimate (not yet measured: this script has not run on a GPU): the training rows use a
12-layer, 1024-wide Llama (~150M parameters; MoE and CoPE rows: 8 layers x 512), batches of 64 x 256 tokens (DPO: 32
arithmetic pairs), 5 warm-up + 30 timed steps. At a pessimistic 20% of an H200's bf16 peak (~200 TFLOP/s of 1 PF), a
150M-parameter step of 16k tokens is 6 x 1.5e8 x 1.6e4 = 1.5e13 FLOP = 0.08 s, so 35 steps take ~3 s; each row's
fixed costs (CUDA context, building the model and data, the first steps' kernel selection) are ~15-25 s. The
dpo_layouts row runs 2 x 4 epochs of 256 pairs (~210k real tokens an epoch, up to 2.3x that padded): ~4e14 FLOP an
epoch at most, ~2 s, so ~30 s with its tokenizing and warm-up. Ten rows ~4 minutes, vLLM's engine start (eager mode)
~1 minute, plus the parent's imports: ~6 minutes, under 8. Every row has a timeout (90 s; vLLM 180 s) so the whole
cannot pass 18.5 minutes even if every row hangs.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # rows are forked
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # the parent asks NVML, never CUDA, so forks stay clean

import lightning as L
import torch
import yaml

from litforge.cli import LitforgeCLI, _import_plugins

ROOT = Path(__file__).resolve().parent.parent
QLORA = ROOT / "configs/optim/qlora.yaml"  # QLoRA (issue 18 item 3)
ADAPTERS_OFF = ["--model.init_args.reference=AdaptersDisabled"]  # the reference is the base, as the overlay suggests

# (GPU, --dry) sizes
LM = ({"hidden_size": 1024, "num_hidden_layers": 12, "num_attention_heads": 16, "intermediate_size": 2816,
       "max_position_embeddings": 1024},
      {"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 128,
       "max_position_embeddings": 256})  # 64 wide: bitsandbytes' 4-bit blocks are 64 values
SMALL = ({"hidden_size": 512, "num_hidden_layers": 8, "num_attention_heads": 8, "intermediate_size": 1408,
          "max_position_embeddings": 512}, LM[1])
STEPS = ((5, 30), (1, 2))  # (warm-up, timed)
BATCH = ((64, 32), (4, 4))  # (sequences, pairs)
TIMEOUT = ((90, 180), (30, 30))  # (a row, the vLLM row)
GENERATION = ((64, 4, 128), (4, 2, 8))  # prompts, samples per prompt, new tokens


class StepClock(L.Callback):
    """Times the steps after `warmup` (CUDA synchronised) and counts their sequences, pairs and real tokens."""

    def __init__(self, warmup: int):
        self.warmup, self.started, self.ended = warmup, None, None
        self.sequences = self.tokens = 0

    def _sync(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.warmup and self.started is None:
            self._sync()
            self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.started is None:
            return
        self._sync()
        self.ended = time.perf_counter()
        self.sequences += len(batch["input_ids"])  # preference batches hold 2 rows per pair
        self.tokens += int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()


def base_config(model: dict, data: dict, dry: bool, precision: str = "bf16-mixed") -> dict:
    """A `litforge fit` config: the model and data given, warm-up + timed steps, no logs, checkpoints or validation."""
    warmup, timed = STEPS[dry]
    return {"seed_everything": 0,
            "trainer": {"accelerator": "cpu" if dry else "gpu", "devices": 1, "precision": precision,
                        "max_steps": warmup + timed, "logger": False, "enable_checkpointing": False,
                        "enable_progress_bar": False, "enable_model_summary": False, "limit_val_batches": 0,
                        "num_sanity_val_steps": 0},
            "model": model, "data": data}


def backbone(sizes: dict, **extra) -> dict:
    """A TinyModel backbone entry."""
    return {"class_path": "litforge.backbones.TinyModel", "init_args": {**sizes, **extra}}


def sft(dry: bool) -> dict:
    batch = BATCH[dry][0]
    return base_config({"class_path": "CausalLM", "init_args": {"backbone": backbone(LM[dry])}},
                       {"class_path": "SyntheticTextDataModule",
                        "init_args": {"num_train": 4 * batch * sum(STEPS[dry]), "num_val": 4, "max_length": 256,
                                      "batch_size": batch}}, dry)


def dpo(dry: bool, attn_implementation: str = "sdpa") -> dict:
    pairs = BATCH[dry][1]
    return base_config({"class_path": "DPONLL", "init_args": {
        "beta": 0.1, "alpha": 0.0, "backbone": backbone(LM[dry], attn_implementation=attn_implementation),
        "reference": {"class_path": "FrozenCopy"}}},
        {"class_path": "ArithmeticPreferenceDataModule",
         "init_args": {"num_train": pairs * sum(STEPS[dry]), "num_val": 4, "max_operand": 49, "max_length": 64,
                       "batch_size": pairs}}, dry)


def position_lm(dry: bool, position: dict) -> dict:
    batch = BATCH[dry][1]
    return base_config({"class_path": "CoPELM", "init_args": {"position": position, "backbone": backbone(SMALL[dry])}},
                       {"class_path": "CountingDataModule",
                        "init_args": {"num_vars": 3, "num_train": batch * sum(STEPS[dry]), "num_val": 4,
                                      "max_length": 256, "batch_size": batch}}, dry)


def moe(dry: bool) -> dict:
    batch = BATCH[dry][1]
    experts = {"num_local_experts": 8 if not dry else 4, "num_experts_per_tok": 2}
    return base_config({"class_path": "MoECausalLM", "init_args": {
        "backbone": {"class_path": "litforge.backbones.TinyModel",
                     "init_args": {**SMALL[dry], "model_type": "mixtral", "config": experts}}}},
        {"class_path": "MixedDomainDataModule",
         "init_args": {"num_train": batch * sum(STEPS[dry]), "num_val": 6, "max_length": 128, "batch_size": batch}},
        dry)


def flash_attention() -> tuple[str | None, str]:
    """The flash-attention implementation this machine offers to transformers, and what it is (or why none)."""
    if importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2", f"flash_attn {importlib.metadata.version('flash_attn')}"
    if importlib.util.find_spec("kernels") is not None:
        return "kernels-community/flash-attn2", "the kernels hub's flash-attn2 (must be in the local hub cache)"
    return None, "neither flash_attn nor kernels is installed"


def fit(config: dict, overlays: list[Path], dry: bool, extra: list[str] = ()) -> dict:
    """Run `config` (+ overlays, + command-line overrides) as `litforge fit` would; the timed steps' numbers."""
    folder = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    config["trainer"]["default_root_dir"] = str(folder)
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    args = ["--config", str(path)] + [arg for overlay in overlays for arg in ("--config", str(overlay))] + list(extra)
    cli = LitforgeCLI(L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                      save_config_callback=None, args=args, run=False, auto_configure_optimizers=False,
                      parser_kwargs={"exit_on_error": False})
    clock = StepClock(STEPS[dry][0])
    cli.trainer.callbacks.append(clock)
    cli.trainer.fit(cli.model, cli.datamodule)
    if clock.ended is None:
        raise RuntimeError(f"training ended before the timed steps (global step {cli.trainer.global_step})")
    seconds = clock.ended - clock.started
    pairs = "DPO" in config["model"]["class_path"]
    result = {"seconds": seconds, "rate": (clock.sequences / 2 if pairs else clock.tokens) / seconds,
              "unit": "pairs/s" if pairs else "tokens/s", "steps": STEPS[dry][1]}
    if pairs:  # which forward the pairs took (PreferenceModule says why it left the padding-free layout)
        refusals = sorted(cli.model.refusals)
        result["note"] = ("padded rows: " + "; ".join(refusals)) if refusals else "padding-free shared-prompt rows"
    return result


def generation_row(dry: bool, vllm: bool) -> dict:
    """Tokens/s of the built-in sampler (or vLLM through `VLLMGeneration`) on the training rows' Llama, bf16."""
    from litforge.backbones import TinyModel
    from litforge.generation import generate
    from litforge.tokenizer import byte_level_tokenizer

    prompts_n, samples, new_tokens = GENERATION[dry]
    tokenizer = byte_level_tokenizer()
    model = TinyModel(**LM[dry]).build(len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id,
                                       tokenizer.eos_token_id)
    model = model.to("cpu" if dry else "cuda", torch.float32 if dry else torch.bfloat16)
    model.config.use_cache = True
    prompts = [f"question {i}: what is {i} + {2 * i}? answer:" for i in range(prompts_n)]
    options = {"n": samples, "max_new_tokens": new_tokens, "temperature": 1.0, "seed": 0,
               "batch_size": prompts_n * samples}
    note = ""
    with contextlib.ExitStack() as stack:
        if vllm:  # the iterative loops' path: the backend is handed the model's weights, then `generate` goes to it
            from litforge.vllm_backend import VLLMGeneration

            started = time.perf_counter()
            stack.enter_context(VLLMGeneration(gpu_memory_utilization=0.3).serving(model, tokenizer))
            note = f"engine built in {time.perf_counter() - started:.0f} s; "
        else:
            generate(model, tokenizer, prompts[:2], n=1, max_new_tokens=4)  # warm-up
        out = generate(model, tokenizer, prompts, **options)
    return {"seconds": out.seconds, "rate": out.new_tokens / out.seconds, "unit": "tokens/s",
            "note": note + f"{out.new_tokens} new tokens"}


def row_fsdp(dry: bool) -> dict:
    if dry:  # the classic FSDPStrategy is GPU only: the CPU dry run shards with FSDP2 over one process
        return fit(sft(dry), [ROOT / "configs/strategy/fsdp.yaml"], dry,
                   ["--trainer.devices", "1", "--trainer.strategy.init_args.data_parallel_size", "1"])
    return fit(sft(dry), [ROOT / "configs/strategy/fsdp_gpu.yaml"], dry, ["--trainer.devices", "1"])


def row_flash(dry: bool) -> dict:
    implementation, what = flash_attention()
    if implementation is None or dry:
        return {"status": "n/a", "note": what if implementation is None else f"{what}; not on CPU"}
    result = fit(dpo(dry, implementation), [], dry)
    return dict(result, note=f"{what}; {result['note']}")


def row_qlora(dry: bool) -> dict:
    if not QLORA.exists():
        return {"status": "n/a", "note": f"not available: {QLORA.relative_to(ROOT)} is not in this checkout"}
    if dry:
        return fit(dpo(dry), [QLORA], dry, ADAPTERS_OFF)
    overlay = yaml.safe_load(QLORA.read_text())  # on a GPU, as the overlay says: bf16 compute with bf16-mixed
    overlay["model"]["init_args"]["quantization"]["bnb_4bit_compute_dtype"] = "bfloat16"
    path = Path(tempfile.mkdtemp(prefix="gpu-check-")) / "qlora_bf16.yaml"
    path.write_text(yaml.safe_dump(overlay, sort_keys=False))
    result = fit(dpo(dry), [path], dry, ADAPTERS_OFF)
    return dict(result, note=f"compute bfloat16, reference AdaptersDisabled; {result['note']}")


def row_layouts(dry: bool) -> dict:
    """`pair_layouts.measure` on this device: which way of skipping padding is faster here (issue 19, item 1)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from pair_layouts import measure

    sizes = {**LM[dry], "max_position_embeddings": 1024, "seed": 0, "attn_implementation": "sdpa"}
    count, vocab, repeats = (16, 512, 1) if dry else (256, 32000, 2)
    results = measure(count, vocab, repeats, "cpu" if dry else "cuda", "float32" if dry else "bfloat16", sizes,
                      log=lambda line: print(line, file=sys.stderr, flush=True))
    free, groups = results["padding-free, random batches"], results["padded, length groups"]
    note = "; ".join(f"{name} {r['seconds']:.2f} s" for name, r in results.items())
    return {"seconds": free["seconds"], "rate": count / free["seconds"], "unit": "pairs/s",
            "note": f"padding-free vs length groups x{groups['seconds'] / free['seconds']:.2f}; {note}"}


def row_vllm(dry: bool) -> dict:
    from litforge.vllm_backend import vllm_unavailable

    reason = vllm_unavailable()
    if reason is not None:
        return {"status": "n/a", "note": reason}
    return generation_row(dry, vllm=True)


ROWS = {
    "sft_bf16": lambda dry: fit(sft(dry), [], dry),
    "dpo_sdpa": lambda dry: fit(dpo(dry), [], dry),
    "dpo_flash": row_flash,
    "qlora_dpo": row_qlora,
    "fsdp_sft": row_fsdp,
    "rope_step": lambda dry: fit(position_lm(dry, {"class_path": "RoPE"}), [], dry),
    "cope_step": lambda dry: fit(position_lm(dry, {"class_path": "CoPE", "init_args": {"npos_max": 64}}), [], dry),
    "dpo_layouts": row_layouts,
    "moe_finetune": lambda dry: fit(moe(dry), [], dry),
    "generate": lambda dry: generation_row(dry, vllm=False),
    "generate_vllm": row_vllm,
}


def run_row(name: str, dry: bool, result_path: str) -> None:
    """The body of a row's process: run it, write its result (JSON) to `result_path`."""
    try:
        if not dry:
            torch.cuda.reset_peak_memory_stats()
        result = {"status": "ok", **ROWS[name](dry)}
    except BaseException as error:  # noqa: BLE001 (a row's failure is its result)
        traceback.print_exc()
        message = " ".join(f"{type(error).__name__}: {error}".split())
        result = {"status": "failed", "note": message[:160]}
    if result["status"] == "n/a":
        pass
    elif dry:
        result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    elif torch.cuda.is_initialized():
        result["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        result["device"] = torch.cuda.get_device_name()
    staging = Path(result_path + ".part")
    staging.write_text(json.dumps(result))
    os.replace(staging, result_path)


def run_isolated(name: str, dry: bool, start_method: str = "fork") -> dict:
    """Run a row in a process of its own with its timeout; a crash or a hang is that row's failure."""
    timeout = TIMEOUT[dry][name == "generate_vllm"]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "result.json")
        process = multiprocessing.get_context(start_method).Process(target=run_row, args=(name, dry, path))
        started = time.perf_counter()
        process.start()
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join()
            return {"status": "failed", "note": f"timed out after {timeout} s", "wall": time.perf_counter() - started}
        if not os.path.exists(path):
            return {"status": "failed", "note": f"the row's process died (exit code {process.exitcode})",
                    "wall": time.perf_counter() - started}
        return dict(json.loads(Path(path).read_text()), wall=time.perf_counter() - started)


def machine(device: str | None = None) -> list[str]:
    """The machine (`device`: the GPU's name as a row saw it) and the versions that matter, one line each."""
    def version(name):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    gpu = "no CUDA device"
    if torch.cuda.device_count():  # through NVML: the parent creates no CUDA context
        gpu = f"{torch.cuda.device_count()} x {device or 'CUDA device'}, CUDA {torch.version.cuda}"
    packages = ["torch", "lightning", "transformers", "peft", "bitsandbytes", "flash_attn", "kernels", "vllm"]
    return [f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, {gpu}",
            f"python {platform.python_version()}; " + ", ".join(f"{name} {version(name)}" for name in packages)]


def table(results: dict[str, dict]) -> str:
    """The printed table: row, seconds of the timed part, throughput, peak memory, status and note."""
    lines = [f"{'row':<14} {'seconds':>8} {'throughput':>20} {'peak MiB':>9}  status  note"]
    rope = results.get("rope_step", {})
    for name, result in results.items():
        note = result.get("note", "")
        if name == "cope_step" and result.get("status") == "ok" and rope.get("status") == "ok":
            note = f"step time x{result['seconds'] / rope['seconds']:.2f} RoPE's" + (f"; {note}" if note else "")
        seconds = f"{result['seconds']:.2f}" if "seconds" in result else "-"
        rate = f"{result['rate']:,.0f} {result['unit']}" if "rate" in result else "-"
        peak = f"{result['peak_mib']:,.0f}" if "peak_mib" in result else "-"
        lines.append(f"{name:<14} {seconds:>8} {rate:>20} {peak:>9}  {result['status']:<6}  {note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry", action="store_true", help="CPU, tiny sizes, 2 timed steps a row")
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows (default: all)")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--start-method", choices=["fork", "spawn"], default="fork",
                        help="how each row's process starts (spawn: if forked rows cannot initialise CUDA)")
    options = parser.parse_args(argv)
    names = [name.strip() for name in options.rows.split(",") if name.strip()]
    unknown = [name for name in names if name not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    if not options.dry and not torch.cuda.device_count():
        parser.error("no CUDA device: run with --dry on CPU")
    _import_plugins()  # before forking: each row starts with every litforge class imported
    started = time.perf_counter()
    results = {}
    for name in names:
        results[name] = run_isolated(name, options.dry, options.start_method)
        print(f"{name}: {results[name]['status']} ({results[name]['wall']:.0f} s)", file=sys.stderr, flush=True)
    device = next((result["device"] for result in results.values() if "device" in result), None)
    print("\n".join(machine(device)))
    print(f"mode: {'dry (CPU, tiny sizes)' if options.dry else 'GPU'}; total {time.perf_counter() - started:.0f} s")
    print(table(results))
    if options.json:
        staging = Path(options.json + ".part")
        staging.write_text(json.dumps({"machine": machine(device), "dry": options.dry, "rows": results}, indent=1))
        os.replace(staging, options.json)
    return results


if __name__ == "__main__":
    main()
