"""Running a System 2 program for inference: `litforge validate` reports its accuracy and token cost, `litforge
predict` prints each input's answer and token cost and writes them to `predictions.jsonl` (Yu et al. 2024 measure
System 2 methods by accuracy and generated tokens per item, Table 1 onwards).

With `n` > 1 the answer of an input is the majority over its samples (`SelfConsistency.vote` with no minimum share:
a tie or no parsable sample gives no answer); tokens count every step of every sample.

Departures from the paper:
    1. An answer is correct when it equals the label as a string (both stripped); no numeric or case normalisation,
       so labels must be written the way `answer_pattern` reads answers.
    2. Each rank generates for its own inputs, so a model sharded over several processes (FSDP) is refused: its
       forward passes need every rank, but ranks stop generating at different steps.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from litforge.lightning_modules.set_metrics import PerSetMetrics, kept_rows
from litforge.plugins.consistency.self_consistency import SelfConsistency
from litforge.plugins.system2.base import SEEDS_PER_RUN, System2Output, System2Program, is_correct

from litforge.data import write_jsonl
from litforge.errors import ConfigError, require
from litforge.generation import gather_objects
from litforge.module import LitforgeModule


class System2Inference(PerSetMetrics, LitforgeModule):
    """A System 2 program on the backbone: validate logs `val/accuracy` (over inputs with a label),
    `val/tokens_per_item` and `val/unparsable` (share of inputs with no answer); predict returns, prints and writes
    one row per input.

    Args:
        program: the System 2 program (Direct for System 1).
        n: samples per input (the answer is their majority).
        temperature: sampling temperature of every step (0 = greedy).
        seed: seed of the sampling (batch b runs the program with seed + SEEDS_PER_RUN * b).
        max_new_tokens: longest reply of any step.
        generation_batch_size: sequences per forward pass while generating.
        predictions_file: where predict writes its rows, relative to the run directory (the logger's, else
            trainer.default_root_dir); None writes nothing.
        **kwargs: see `LitforgeModule` (backbone: e.g. a LocalCheckpoint of an instruct model).
    """

    plugin_fields = ("program",)

    def __init__(self, program: System2Program, n: int = 1, temperature: float = 0.0, seed: int = 0,
                 max_new_tokens: int = 64, generation_batch_size: int = 64,
                 predictions_file: str | None = "predictions.jsonl", **kwargs):
        super().__init__(**kwargs)
        require(n >= 1, "n", f"must be >= 1, got {n}")
        require(temperature >= 0, "temperature", f"must be >= 0, got {temperature}")
        require(n == 1 or temperature > 0, "temperature", f"is 0 (greedy), so the n={n} samples would be copies")
        require(max_new_tokens >= 1, "max_new_tokens", f"must be >= 1, got {max_new_tokens}")
        require(generation_batch_size >= 1, "generation_batch_size", f"must be >= 1, got {generation_batch_size}")
        self.program, self.n, self.temperature, self.seed = program, n, temperature, seed
        self.max_new_tokens, self.generation_batch_size = max_new_tokens, generation_batch_size
        self.predictions_file = predictions_file
        self.vote = SelfConsistency(samples=n, min_share=0.0).vote
        self.predictions: list[dict[str, Any]] = []

    def setup(self, stage: str) -> None:
        super().setup(stage)
        strategy, world_size = self.trainer.strategy, self.trainer.world_size
        if isinstance(strategy, (ModelParallelStrategy, FSDPStrategy)) and world_size > 1:
            raise ConfigError("trainer.strategy", f"a model sharded over {world_size} processes "
                              f"({type(strategy).__name__}) cannot generate for each rank's own inputs: use DDP")

    def answer(self, items: list[dict], batch_idx: int) -> list[dict[str, Any]]:
        """Run the program on a batch of inputs: one row per input (answer, tokens, the first sample's texts)."""
        outputs = self.program.run(self.model, self.tokenizer, items, n=self.n, temperature=self.temperature,
                                   seed=self.seed + SEEDS_PER_RUN * batch_idx, max_new_tokens=self.max_new_tokens,
                                   batch_size=self.generation_batch_size)
        return [self.row(item, samples) for item, samples in zip(items, outputs)]

    def row(self, item: dict, samples: list[System2Output]) -> dict[str, Any]:
        """The prediction row of one input."""
        answer = samples[0].answer if self.n == 1 else self.vote(samples)[0]
        row = {"line": item.get("line"), "answer": answer, "tokens": sum(sample.tokens for sample in samples),
               "steps": samples[0].steps, "final": samples[0].final}
        if self.n > 1:
            row["sample_answers"] = [sample.answer for sample in samples]
        if item.get("label") is not None:
            row["label"], row["correct"] = item["label"], is_correct(answer, item)
        return row

    def validation_step(self, batch: list[dict], batch_idx: int, dataloader_idx: int = 0) -> None:
        # a distributed sampler's padding repeats are left out, so every input counts once under any strategy
        batch = [batch[row] for row in kept_rows(self, batch_idx, dataloader_idx, len(batch)).tolist()]
        if not batch:
            return
        self.log_rows(batch, self.answer(batch, batch_idx), batch_idx, dataloader_idx)

    test_step = validation_step

    def log_rows(self, batch: list[dict], rows: list[dict[str, Any]], batch_idx: int, dataloader_idx: int) -> None:
        """Log a validation batch's metrics from its prediction rows (one per input of `batch`)."""
        self.log_per_set("tokens_per_item", torch.tensor([float(r["tokens"]) for r in rows]), dataloader_idx)
        self.log_per_set("unparsable", torch.tensor([float(r["answer"] is None) for r in rows]), dataloader_idx)
        labelled = [float(r["correct"]) for r in rows if "correct" in r]
        if labelled:
            self.log_per_set("accuracy", torch.tensor(labelled), dataloader_idx, prog_bar=True)

    def on_predict_epoch_start(self) -> None:
        self.predictions = []

    def predict_step(self, batch: list[dict], batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        rows = self.answer(batch, batch_idx)
        self.predictions.extend(rows)
        return rows

    def on_predict_epoch_end(self) -> None:
        rows = [row for rank_rows in gather_objects(self.predictions) for row in rank_rows]
        directory = self.trainer.log_dir or self.trainer.default_root_dir  # on every rank: log_dir broadcasts
        if not self.trainer.is_global_zero:
            return
        # a distributed sampler repeats inputs to even out the ranks: keep each line once, in file order
        rows = list({row["line"]: row for row in sorted(rows, key=lambda row: row["line"])}.values())
        for row in rows:
            print(f"line {row['line']}: answer={json.dumps(row['answer'])} tokens={row['tokens']}"
                  + (f" label={json.dumps(row['label'])}" if "label" in row else ""))
        answered = sum(row["answer"] is not None for row in rows)
        summary = (f"{type(self.program).__name__}: {len(rows)} inputs, {answered} answered, "
                   f"{sum(row['tokens'] for row in rows) / max(len(rows), 1):.1f} tokens per input")
        labelled = [row["correct"] for row in rows if "correct" in row]
        if labelled:
            summary += f", accuracy {sum(labelled) / len(labelled):.3f} over {len(labelled)} labelled"
        if self.predictions_file is not None:
            path = Path(directory) / self.predictions_file
            path.parent.mkdir(parents=True, exist_ok=True)
            write_jsonl(path, rows)
            summary += f"; written to {path}"
        print(summary, file=sys.stdout, flush=True)
