"""Iterations of self-generated preference pairs: sample N candidates, judge them, pair them, train a preference loss.

The rows of `IterativeObjective` (lightning_modules/iterative.py) for self-rewarding, iterative RPO and iterative
Cringe: at each boundary the current policy samples `candidates` responses per prompt (`litforge.generation`, each
DDP rank its own chunks of prompts), the judge scores each distinct non-empty one (`plugins/judges/`), the pair rule
turns one prompt's scores into (chosen, rejected) pairs (`plugins/pair_rules/`), and the gathered pairs are the next
iteration's training rows.

Rows do not depend on the number of ranks: the prompts are cut into fixed chunks of `generation_batch_size //
candidates` prompts (one generation batch each), chunk c is sampled with seed + 1000003 c and paired with seed + c, and
rank r takes chunks r, r + world_size, ...; so 1 process and 2 ranks sample, judge and pair every chunk alike (with a
deterministic judge; `LLMJudge` seeds each call with its own per-rank counter). The statistics are gathered once and
are the whole iteration's.

Held-out quality is the mean score (by `heldout_judge`, default the training judge) of one greedy response per
held-out prompt, measured for the model entering each iteration and for the last one. With `num_judge_heldout`, the
training judge also scores fixed responses whose true grades the datamodule knows (`graded()`), and its agreement
with them is logged at the same points (self-rewarding's "is the judge getting better?").
"""

from __future__ import annotations

import math
import time
from typing import Any

from litforge.lazy import lazy_default
from litforge.lightning_modules.iterative import IterativeObjective
from litforge.plugins.judges import AnswerJudge, Judge
from litforge.plugins.pair_rules import BestVsWorst, PairRule, build_pairs

from litforge.errors import require
from litforge.generation import gather_objects, generate


class IterativePreference(IterativeObjective):
    """Mixed in before a preference objective: each iteration's pairs are sampled, judged and paired by the policy.

    Args:
        judge: scores candidates (`LLMJudge` with no checkpoint = the policy judges itself).
        pair_rule: turns one prompt's scores into pairs (`BestVsWorst`, `CorrectVsIncorrect`).
        candidates: responses sampled per prompt (N).
        temperature: sampling temperature of the candidates.
        top_p: nucleus mass of the candidates.
        max_new_tokens: longest candidate (and held-out response).
        stop: strings that end a candidate.
        generation_batch_size: sequences per generation batch.
        num_heldout: held-out prompts answered greedily at each boundary and at the end (0 = none).
        heldout_judge: scores the held-out responses (None = `judge`); e.g. `AnswerJudge` for exact-answer accuracy
            while the policy judges itself for training.
        num_judge_heldout: fixed graded responses (the datamodule's `graded()`) the training judge scores at each
            boundary, logged as its agreement with the true grades (0 = none).
        **kwargs: see `IterativeObjective` and the preference objective.
    """

    plugin_fields = ("judge", "pair_rule", "heldout_judge")

    def __init__(self, judge: Judge = lazy_default(AnswerJudge), pair_rule: PairRule = lazy_default(BestVsWorst),
                 candidates: int = 4, temperature: float = 0.8, top_p: float = 1.0, max_new_tokens: int = 64,
                 stop: list[str] | None = None, generation_batch_size: int = 64, num_heldout: int = 0,
                 heldout_judge: Judge | None = None, num_judge_heldout: int = 0, **kwargs):
        require(candidates >= 2, "candidates", f"must be >= 2 to make a pair, got {candidates}")
        require(temperature >= 0, "temperature", f"must be >= 0, got {temperature}")
        require(0 < top_p <= 1, "top_p", f"must be in (0, 1], got {top_p}")
        require(max_new_tokens >= 1, "max_new_tokens", f"must be >= 1, got {max_new_tokens}")
        require(stop is None or all(isinstance(text, str) and text for text in stop), "stop",
                f"must be non-empty strings (an empty one would end every candidate at once), got {stop!r}")
        require(generation_batch_size >= 1, "generation_batch_size", f"must be >= 1, got {generation_batch_size}")
        require(num_heldout >= 0, "num_heldout", f"must be >= 0, got {num_heldout}")
        require(num_judge_heldout >= 0, "num_judge_heldout", f"must be >= 0, got {num_judge_heldout}")
        super().__init__(**kwargs)
        self.judge, self.pair_rule, self.heldout_judge = judge, pair_rule, heldout_judge
        self.candidates = candidates
        self.generation = dict(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, stop=stop,
                               batch_size=generation_batch_size)
        self.num_heldout, self.num_judge_heldout = num_heldout, num_judge_heldout
        self.graded_rows: list[dict[str, Any]] = []

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and self.num_judge_heldout:  # fails before training on a datamodule without grades
            self.graded_rows = self.trainer.datamodule.graded(self.num_judge_heldout)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # the judges' counters (LLMJudge seeds each call with them): a resumed run judges with the same seeds
        checkpoint["judges"] = {field: getattr(self, field).state_dict() for field in ("judge", "heldout_judge")
                                if getattr(self, field) is not None}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        for field, state in checkpoint.get("judges", {}).items():
            if getattr(self, field) is not None:
                getattr(self, field).load_state_dict(state)

    def build_rows(self, k, prompts):
        """Sample, judge and pair this rank's shard of the prompts; every rank returns all pairs in prompt order,
        with the statistics: pairs built, judge failures, mean score, share of correct candidates where the rule has
        a threshold, seconds spent generating and judging."""
        texts, references = [r["prompt"] for r in prompts], [r.get("reference") for r in prompts]
        size = max(1, self.generation["batch_size"] // self.candidates)  # prompts per chunk: not per rank
        chunks = [list(range(start, min(start + size, len(texts)))) for start in range(0, len(texts), size)]
        seed = self.seed + 7919 * k
        mine, pairs, valid = [], [], []
        timings = {"generate_s": 0.0, "judge_s": 0.0, "new_tokens": 0, "judge_failures": 0, "samples": 0, "empty": 0}
        for c in range(self.rank, len(chunks), self.world_size):
            local_prompts, local_refs = [texts[i] for i in chunks[c]], [references[i] for i in chunks[c]]
            candidates, scores, spent = judge_prompts(self.model, self.tokenizer, self.judge, local_prompts,
                                                      local_refs, self.candidates, seed + 1000003 * c,
                                                      **self.generation)
            pairs += build_pairs(local_prompts, local_refs, candidates, scores, self.pair_rule, seed + c)
            valid += [s for row in scores for s in row if s is not None]
            mine += chunks[c]
            timings = {key: timings[key] + spent[key] for key in timings}
        parts = gather_objects({"mine": mine, "pairs": pairs, "valid": valid, "timings": timings,
                                "with_pairs": len({p["prompt"] for p in pairs})})
        order = {prompt: i for i, prompt in enumerate(texts)}
        rows = sorted((row for part in parts for row in part["pairs"]), key=lambda row: order[row["prompt"]])
        valid = [s for part in parts for s in part["valid"]]
        failures = sum(part["timings"]["judge_failures"] for part in parts)
        if not rows:
            raise RuntimeError(f"iteration {k} built no pairs from {len(texts)} prompts (all candidates tied or "
                               f"unjudged: {failures} judge failures); try more candidates or a higher temperature")
        correct_at = self.pair_rule.threshold
        stats = {
            "pairs": len(rows),
            "prompts": len(texts),
            "prompts_with_pairs": sum(part["with_pairs"] for part in parts),
            "candidates": sum(part["timings"]["samples"] for part in parts),
            "empty_candidates": sum(part["timings"]["empty"] for part in parts),
            "judged": len(valid) + failures,
            "judge_failures": failures,
            "mean_score": sum(valid) / len(valid) if valid else float("nan"),
            # share of distinct judged candidates that are correct (only for rules with a correctness threshold)
            "accuracy": sum(s >= correct_at for s in valid) / len(valid) if valid and correct_at is not None else None,
            "generate_s": max(part["timings"]["generate_s"] for part in parts),
            "judge_s": max(part["timings"]["judge_s"] for part in parts),
            "new_tokens": sum(part["timings"]["new_tokens"] for part in parts),
            "generated_by_rank": [part["mine"] for part in parts],
        }
        return rows, stats

    def evaluate(self):
        """`heldout_score` (mean score of greedy responses to the held-out prompts; accuracy with AnswerJudge) and
        the training judge's agreement with the true grades of the graded responses."""
        stats = super().evaluate()
        if self.num_heldout:
            rows = self.trainer.datamodule.prompts("val")[:self.num_heldout]
            greedy = dict(self.generation, top_p=1.0)
            del greedy["temperature"]
            stats["heldout_score"] = evaluate_policy(self.model, self.tokenizer, self.heldout_judge or self.judge,
                                                     [r["prompt"] for r in rows], [r.get("reference") for r in rows],
                                                     **greedy)
        if self.graded_rows:
            rows = self.graded_rows
            stats.update(judge_agreement(self.model, self.tokenizer, self.judge, [r["prompt"] for r in rows],
                                         [r["response"] for r in rows], [r["grade"] for r in rows],
                                         [r.get("reference") for r in rows]))
        return stats


def judge_prompts(model, tokenizer, judge: Judge, prompts: list[str], references: list[str | None], n: int,
                  seed: int, **generation) -> tuple[list[list[str]], list[list[float | None]], dict[str, float]]:
    """Sample `n` candidates per prompt and score each distinct non-empty one; returns texts, scores and timings.

    Identical candidates of a prompt are judged once; empty ones are dropped (they cannot be a response).
    """
    started = time.perf_counter()
    generations = generate(model, tokenizer, prompts, n=n, seed=seed, **generation)
    generated = time.perf_counter()
    texts = [list(dict.fromkeys(t for t in samples if t.strip())) for samples in generations.texts]
    flat = [(i, text) for i, samples in enumerate(texts) for text in samples]
    judge.use_policy(model, tokenizer)
    failures_before = judge.failures
    flat_scores = judge.score([prompts[i] for i, _ in flat], [t for _, t in flat], [references[i] for i, _ in flat])
    scores: list[list[float | None]] = [[] for _ in prompts]
    for (i, _), score in zip(flat, flat_scores):
        scores[i].append(score)
    timings = {"generate_s": generated - started, "judge_s": time.perf_counter() - generated,
               "new_tokens": generations.new_tokens, "judge_failures": judge.failures - failures_before,
               "samples": n * len(prompts),
               "empty": sum(not t.strip() for samples in generations.texts for t in samples)}
    return texts, scores, timings


def evaluate_policy(model, tokenizer, judge: Judge, prompts: list[str], references: list[str | None],
                    **generation) -> float:
    """Mean judge score of one greedy response per prompt (accuracy with AnswerJudge); NaN when nothing parsed."""
    generations = generate(model, tokenizer, prompts, n=1, temperature=0.0, **generation)
    judge.use_policy(model, tokenizer)
    scores = [s for s in judge.score(prompts, [t[0] for t in generations.texts], references) if s is not None]
    return sum(scores) / len(scores) if scores else float("nan")


def agreement(scores: list[float | None], grades: list[int]) -> dict[str, Any]:
    """How a judge's scores match true grades: exact agreement of the rounded score (a missing verdict disagrees),
    mean absolute error and mean score over the verdicts, the number without one, the histogram of rounded scores (a
    judge that saturates puts everything in one bin) and the mean score per true grade (one that ignores the grade
    gives a flat row)."""
    rounded = [None if s is None else math.floor(s + 0.5) for s in scores]
    valid = [(s, g) for s, g in zip(scores, grades) if s is not None]
    histogram = {str(v): rounded.count(v) for v in sorted({r for r in rounded if r is not None})}
    by_grade = {str(g): [s for s, h in valid if h == g] for g in sorted(set(grades))}
    return {"judge_agreement": sum(r == g for r, g in zip(rounded, grades)) / len(grades) if grades else float("nan"),
            "judge_mae": sum(abs(s - g) for s, g in valid) / len(valid) if valid else float("nan"),
            "judge_heldout_mean": sum(s for s, _ in valid) / len(valid) if valid else float("nan"),
            "judge_heldout_failures": len(scores) - len(valid), "judge_histogram": histogram,
            "judge_mean_by_grade": {g: sum(v) / len(v) if v else float("nan") for g, v in by_grade.items()}}


def judge_agreement(model, tokenizer, judge: Judge, prompts: list[str], responses: list[str], grades: list[int],
                    references: list[str | None]) -> dict[str, Any]:
    """`agreement` of the judge (given the current policy) with true grades of fixed (prompt, response) rows,
    plus the judge's failed verdicts during the call (`judge_heldout_reply_failures`: for `LLMJudge`, replies with no
    valid "Score: N")."""
    judge.use_policy(model, tokenizer)
    failures_before = judge.failures
    stats = agreement(judge.score(prompts, responses, references), grades)
    return dict(stats, judge_heldout_reply_failures=judge.failures - failures_before)
