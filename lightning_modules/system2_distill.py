"""Distilling System 2 into System 1 (Yu et al. 2024): the model (or a teacher) runs a System 2 program on unlabeled
inputs, an unsupervised consistency filter keeps target answers, and the model is fine-tuned to give those answers
directly, with no intermediate text.

Algorithm (Yu et al. 2024, §2), one round per iteration k of `IterativeObjective`:
    1. run `program` (plugins/system2/) on round k's inputs, with the current model (or `teacher`);
    2. `filter` (plugins/consistency/) keeps one target answer per input or drops it: self-consistency over
       sampled outputs, or agreement under a perturbation (BSM: the responses swapped);
    3. rows are `{"prompt": System 1's prompt of the input, "response": System 1's reply stating the answer}`
       (`system1`, a `Direct` program): the final answer only, never a step's text;
    4. SFT (loss on the response) on the rows for `epochs_per_iteration` epochs.
The loop (iterations/iter_<k>.jsonl written atomically and reused on resume, DDP shards, statistics) is
`IterativeObjective`. Rows do not depend on the number of ranks: inputs are cut into fixed chunks of
`generation_batch_size`, the filter's j-th program run on chunk c is seeded seed + 7919 k + 1000003 c + 101 j, and
rank r takes chunks r, r + world_size, ...

Logged at each boundary (`iteration/*`, the model entering the round) and after the last round, on the first
`num_heldout` held-out test inputs, greedy: System 1 accuracy and generated tokens per item, System 2 accuracy and
tokens per item, and each round's rows kept by the filter with their label accuracy (labels are read for these
diagnostics only, never to filter; `OracleFilter` is the labelled control).

Departures from the paper:
    1. Rounds (the paper distils once): `iterations: 1` is the paper's setting.
    2. Held-out metrics are computed on every rank over the same inputs (each rank gets the same numbers).
"""

from __future__ import annotations

import time
from typing import Any

from litforge.lazy import lazy_default
from litforge.lightning_modules.causal_lm import CausalLM
from litforge.lightning_modules.iterative import IterativeObjective
from litforge.plugins.consistency import ConsistencyFilter, SelfConsistency
from litforge.plugins.system2 import Direct, System2Output, System2Program
from litforge.plugins.system2.base import is_correct

from litforge.backbones import Backbone
from litforge.errors import require
from litforge.generation import gather_objects


class System2Distillation(IterativeObjective, CausalLM):
    """SFT of System 1 on the final answers a System 2 program gives and a consistency filter keeps.

    Args:
        program: the System 2 program whose answers are distilled (System2Attention, RephraseAndRespond, ...).
        filter: keeps a target answer per input, without labels (SelfConsistency, SwapConsistency, AllOf, NoFilter).
        system1: the System 1 prompt and reply a row is made of (`Direct`: `prompt(input)`, `reply(answer)`), and
            the program measured as System 1.
        teacher: a model that runs the program instead of the current one (e.g. a LocalCheckpoint); None = self.
        temperature: sampling temperature of the program's runs inside the filter (0 = greedy).
        max_new_tokens: longest reply of any step.
        generation_batch_size: inputs per chunk, and sequences per forward pass while generating.
        num_heldout: held-out test inputs measured at each boundary and at the end (0 = none).
        evaluate_system2: also measure the program itself on them (its accuracy and tokens per item).
        **kwargs: see `IterativeObjective` (iterations, epochs_per_iteration, seed) and `CausalLM`.
    """

    plugin_fields = ("program", "filter", "system1", "teacher")

    def __init__(self, program: System2Program, filter: ConsistencyFilter = lazy_default(SelfConsistency),
                 system1: Direct = lazy_default(Direct), teacher: Backbone | None = None, temperature: float = 0.7,
                 max_new_tokens: int = 32, generation_batch_size: int = 64, num_heldout: int = 200,
                 evaluate_system2: bool = True, **kwargs):
        require(temperature >= 0, "temperature", f"must be >= 0, got {temperature}")
        require(max_new_tokens >= 1, "max_new_tokens", f"must be >= 1, got {max_new_tokens}")
        require(generation_batch_size >= 1, "generation_batch_size", f"must be >= 1, got {generation_batch_size}")
        require(num_heldout >= 0, "num_heldout", f"must be >= 0, got {num_heldout}")
        super().__init__(**kwargs)
        self.program, self.filter, self.system1, self.teacher = program, filter, system1, teacher
        self.temperature, self.max_new_tokens = temperature, max_new_tokens
        self.generation_batch_size, self.num_heldout = generation_batch_size, num_heldout
        self.evaluate_system2 = evaluate_system2
        self._teacher: list = []  # built on first use; a list keeps it out of the module's parameters and checkpoint

    def generator(self):
        """The model that runs the program: the teacher when one is set, else the model being trained."""
        if self.teacher is None:
            return self.model
        if not self._teacher:
            tok = self.tokenizer
            model = self.teacher.build(len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
            self._teacher.append(model.to(self.device).eval().requires_grad_(False))
        return self._teacher[0]

    def sampler(self, model, seed: int, spent: dict[str, float]):
        """`sample(inputs, n)` for the filter: the program on `model`, its j-th call seeded seed + 101 j (j counted
        per sampler, so a chunk's samples do not depend on the chunks run before it on this rank); adds the calls,
        generated tokens and program runs to `spent`."""
        calls = 0

        def sample(inputs: list[dict], n: int) -> list[list[System2Output]]:
            nonlocal calls
            outputs = self.program.run(model, self.tokenizer, inputs, n=n, temperature=self.temperature,
                                       seed=seed + 101 * calls, max_new_tokens=self.max_new_tokens,
                                       batch_size=self.generation_batch_size)
            calls += 1
            spent["calls"] += 1
            spent["runs"] += sum(len(samples) for samples in outputs)
            spent["tokens"] += sum(output.tokens for samples in outputs for output in samples)
            return outputs
        return sample

    def build_rows(self, k, prompts):
        """Run the program and the filter on this rank's chunks of the inputs; every rank returns all rows, in
        input order, with the statistics: inputs, rows kept, their label accuracy, the filter's counts, tokens."""
        size = self.generation_batch_size
        chunks = [list(range(start, min(start + size, len(prompts)))) for start in range(0, len(prompts), size)]
        model, started = self.generator(), time.perf_counter()
        mine: list[tuple[int, dict[str, Any], bool | None]] = []
        counts: dict[str, float] = {}
        spent = {"calls": 0, "runs": 0, "tokens": 0}
        for c in range(self.rank, len(chunks), self.world_size):
            inputs = [prompts[i] for i in chunks[c]]
            sample = self.sampler(model, self.seed + 7919 * k + 1000003 * c, spent)
            answers, chunk_counts = self.filter.select(self.program, sample, inputs)
            for key, value in chunk_counts.items():
                counts[key] = counts.get(key, 0.0) + value
            for index, item, answer in zip(chunks[c], inputs, answers):
                if answer is not None:
                    row = {"prompt": self.system1.prompt(item), "response": self.system1.reply(answer),
                           "answer": answer}
                    mine.append((index, row, is_correct(answer, item)))
        parts = gather_objects({"rows": mine, "counts": counts, "spent": spent,
                                "seconds": time.perf_counter() - started})
        kept = sorted((entry for part in parts for entry in part["rows"]), key=lambda entry: entry[0])
        if not kept:
            raise RuntimeError(f"round {k}: the filter kept no answer of {len(prompts)} inputs; check the program's "
                               "answer_pattern and max_new_tokens, or loosen the filter")
        graded = [correct for _, _, correct in kept if correct is not None]
        stats: dict[str, Any] = {
            "inputs": len(prompts),
            "rows": len(kept),
            "kept_share": len(kept) / len(prompts),
            "kept_accuracy": sum(graded) / len(graded) if graded else None,
            "program_runs": sum(part["spent"]["runs"] for part in parts),
            "generated_tokens": sum(part["spent"]["tokens"] for part in parts),
            "generate_s": max(part["seconds"] for part in parts),
        }
        for part in parts:
            for key, value in part["counts"].items():
                stats[f"filter_{key}"] = stats.get(f"filter_{key}", 0.0) + value
        return [row for _, row, _ in kept], stats

    def evaluate(self):
        """Greedy accuracy, tokens per item and unparsable share of System 1 (and of the program) on the held-out
        test inputs, for the model being trained."""
        stats = super().evaluate()
        if not self.num_heldout:
            return stats
        inputs = self.trainer.datamodule.prompts("val")[:self.num_heldout]
        measured = [("system1", self.system1)] + ([("system2", self.program)] if self.evaluate_system2 else [])
        for name, program in measured:
            stats.update({f"{name}_{key}": value for key, value in self.measure(program, inputs).items()})
        return stats

    def measure(self, program: System2Program, inputs: list[dict]) -> dict[str, float]:
        """Greedy `accuracy` (over inputs with a label), `tokens_per_item` and `unparsable` share of a program."""
        outputs = [samples[0] for samples in program.run(self.model, self.tokenizer, inputs, n=1, temperature=0.0,
                                                         seed=self.seed, max_new_tokens=self.max_new_tokens,
                                                         batch_size=self.generation_batch_size)]
        marks = [mark for mark in (is_correct(output.answer, item) for item, output in zip(inputs, outputs))
                 if mark is not None]
        return {"accuracy": sum(marks) / len(marks) if marks else float("nan"),
                "tokens_per_item": sum(output.tokens for output in outputs) / max(len(outputs), 1),
                "unparsable": sum(output.answer is None for output in outputs) / max(len(outputs), 1)}
