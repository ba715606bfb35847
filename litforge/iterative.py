"""The iteration boundary of the iterative objectives: generate -> judge -> build pairs -> write JSONL -> re-anchor.

Self-rewarding (Yuan et al. 2024), iterative RPO (Pang et al. 2024) and iterative Cringe (Xu et al. 2023) share
one loop: the current policy samples N candidates per prompt, a judge scores them, a pair rule turns the scores
into (chosen, rejected) pairs, and the next round of preference training starts from the current policy, which is
also the new reference. `IterativeDataModule` (datamodules/iterative.py) runs `build_iteration` at each boundary;
this module holds the pieces that need no Lightning: pair rules, the per-rank work, and the files.

Files (under the run directory): `iterations/iter_<k>.json` (the iteration's statistics, written first) and
`iterations/iter_<k>.jsonl` (its pairs, written last and atomically). An existing `iter_<k>.jsonl` means
iteration k's data is finished: a resumed run reads it instead of generating again.
"""

from __future__ import annotations

import json
import math
import random
import time
from itertools import product
from pathlib import Path
from typing import Any

from litforge.data import atomic_path, write_jsonl
from litforge.generation import gather_objects, generate, shard
from litforge.plugins.judges.base import Judge


class PairRule:
    """Turns one prompt's judged candidates into preference pairs."""

    def pairs(self, candidates: list[str], scores: list[float], rng: random.Random) -> list[tuple[int, int]]:
        """(chosen index, rejected index) pairs; candidates are distinct texts, scores are not None."""
        raise NotImplementedError


class BestVsWorst(PairRule):
    """The highest-scored candidate against the lowest (self-rewarding, §2.3); ties (max == min) give no pair.

    Args:
        min_gap: the best must beat the worst by more than this.
    """

    def __init__(self, min_gap: float = 0.0):
        self.min_gap = min_gap

    def pairs(self, candidates, scores, rng):
        best = max(range(len(scores)), key=lambda i: scores[i])
        worst = min(range(len(scores)), key=lambda i: scores[i])
        return [(best, worst)] if scores[best] - scores[worst] > self.min_gap else []


class CorrectVsIncorrect(PairRule):
    """Correct against incorrect candidates (iterative RPO, §2), at most `max_pairs` per prompt, drawn at random.

    Args:
        max_pairs: pairs per prompt (the paper: about 10, unsure).
        threshold: a candidate scoring at least this is correct (AnswerJudge gives 1.0 or 0.0).
    """

    def __init__(self, max_pairs: int = 10, threshold: float = 1.0):
        self.max_pairs, self.threshold = max_pairs, threshold

    def pairs(self, candidates, scores, rng):
        correct = [i for i, s in enumerate(scores) if s >= self.threshold]
        incorrect = [i for i, s in enumerate(scores) if s < self.threshold]
        combos = list(product(correct, incorrect))
        rng.shuffle(combos)
        return combos[:self.max_pairs]


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
    judge.attach(model, tokenizer)
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


def build_pairs(prompts: list[str], references: list[str | None], texts: list[list[str]],
                scores: list[list[float | None]], rule: PairRule, seed: int) -> list[dict[str, Any]]:
    """Preference pairs of every prompt under `rule` (candidates without a verdict are left out)."""
    rng = random.Random(seed)
    rows = []
    for prompt, reference, candidates, judged in zip(prompts, references, texts, scores):
        kept = [(text, score) for text, score in zip(candidates, judged) if score is not None]
        if len(kept) < 2:
            continue
        for chosen, rejected in rule.pairs([t for t, _ in kept], [s for _, s in kept], rng):
            row = {"prompt": prompt, "chosen": kept[chosen][0], "rejected": kept[rejected][0],
                   "chosen_score": kept[chosen][1], "rejected_score": kept[rejected][1]}
            if reference is not None:
                row["reference"] = reference
            rows.append(row)
    return rows


def build_iteration(model, tokenizer, judge: Judge, rule: PairRule, prompts: list[str],
                    references: list[str | None], n: int, seed: int, rank: int = 0, world_size: int = 1,
                    **generation) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """This rank's shard of the boundary work (generate, judge, pair), gathered: every rank gets all pairs.

    Returns the pairs in prompt order and the iteration's statistics (pairs built, judge parse failures, mean score,
    share of correct candidates where the rule has a threshold, seconds spent generating and judging).
    """
    mine = shard(prompts, rank, world_size)
    local_prompts, local_refs = [prompts[i] for i in mine], [references[i] for i in mine]
    texts, scores, timings = judge_prompts(model, tokenizer, judge, local_prompts, local_refs, n,
                                           seed + 1000003 * rank, **generation)
    pairs = build_pairs(local_prompts, local_refs, texts, scores, rule, seed + rank)
    valid = [s for row in scores for s in row if s is not None]
    local = {"mine": mine, "pairs": pairs, "valid": valid, "timings": timings,
             "with_pairs": len({p["prompt"] for p in pairs})}
    parts = gather_objects(local)
    order = {prompt: i for i, prompt in enumerate(prompts)}
    all_pairs = sorted((row for part in parts for row in part["pairs"]), key=lambda row: order[row["prompt"]])
    valid = [s for part in parts for s in part["valid"]]
    correct_at = getattr(rule, "threshold", None)
    stats = {
        "pairs": len(all_pairs),
        "prompts": len(prompts),
        "prompts_with_pairs": sum(part["with_pairs"] for part in parts),
        "candidates": sum(part["timings"]["samples"] for part in parts),
        "empty_candidates": sum(part["timings"]["empty"] for part in parts),
        "judged": len(valid) + sum(part["timings"]["judge_failures"] for part in parts),
        "judge_failures": sum(part["timings"]["judge_failures"] for part in parts),
        "mean_score": sum(valid) / len(valid) if valid else float("nan"),
        # share of distinct judged candidates that are correct (only for rules with a correctness threshold)
        "accuracy": sum(s >= correct_at for s in valid) / len(valid) if valid and correct_at is not None else None,
        "generate_s": max(part["timings"]["generate_s"] for part in parts),
        "judge_s": max(part["timings"]["judge_s"] for part in parts),
        "new_tokens": sum(part["timings"]["new_tokens"] for part in parts),
        "generated_by_rank": [part["mine"] for part in parts],
    }
    return all_pairs, stats


def evaluate(model, tokenizer, judge: Judge, prompts: list[str], references: list[str | None], **generation) -> float:
    """Mean judge score of one greedy response per prompt (accuracy with AnswerJudge); NaN when nothing parsed."""
    generations = generate(model, tokenizer, prompts, n=1, temperature=0.0, **generation)
    judge.attach(model, tokenizer)
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
    """`agreement` of the judge (attached to the current policy) with true grades of fixed (prompt, response) rows,
    plus the judge's failed verdicts during the call (`judge_heldout_reply_failures`: for `LLMJudge`, replies with no
    valid "Score: N")."""
    judge.attach(model, tokenizer)
    failures_before = judge.failures
    stats = agreement(judge.score(prompts, responses, references), grades)
    return dict(stats, judge_heldout_reply_failures=judge.failures - failures_before)


def iteration_paths(run_dir: str | Path, k: int) -> tuple[Path, Path]:
    """(pairs JSONL, statistics JSON) of iteration k."""
    folder = Path(run_dir) / "iterations"
    return folder / f"iter_{k}.jsonl", folder / f"iter_{k}.json"


def save_iteration(run_dir: str | Path, k: int, pairs: list[dict], stats: dict) -> None:
    """Write iteration k's statistics, then its pairs (both atomically; the pairs file marks the data finished)."""
    pairs_path, stats_path = iteration_paths(run_dir, k)
    write_json(stats_path, stats)
    write_jsonl(pairs_path, pairs)


def load_iteration(run_dir: str | Path, k: int) -> tuple[list[dict], dict] | None:
    """Iteration k's pairs and statistics when its data is finished, else None."""
    pairs_path, stats_path = iteration_paths(run_dir, k)
    if not pairs_path.is_file():
        return None
    with pairs_path.open(encoding="utf-8") as handle:
        pairs = [json.loads(line) for line in handle if line.strip()]
    stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
    return pairs, stats


def write_json(path: str | Path, value: Any) -> None:
    """Write one JSON document atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(value, indent=1))


class IterativeMixin:
    """Mixed into a preference module whose data is an `IterativeDataModule`: after the last iteration, evaluates
    the final policy and writes `iterations/final.json` (the boundaries themselves run in the datamodule)."""

    def on_train_end(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if hasattr(datamodule, "finish"):
            datamodule.finish(self)
