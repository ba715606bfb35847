"""Synthetic tasks for System 2 distillation (Yu et al. 2024, "Distilling System 2 into System 1"), sized for a tiny
byte-level model: each is built so that, after a seed SFT stage, a System 2 program beats System 1 (direct
answering) on the task's hard inputs, and no label of the distillation inputs is ever trained on.

Each task gives three things, all seeded and deterministic:
    * `seed_rows`: labelled skill data for the seed SFT stage (`{"prompt", "response", "skill"}`): the skills the
      program's steps need, plus what plants System 1's weakness (a shortcut, a position bias or a missing skill);
    * `inputs("distill")`: the unlabeled distillation inputs (labels kept for diagnostics only);
    * `inputs("test")`: held-out test inputs with labels.
No seed row's prompt is the System 1 prompt of a distillation or test input (`System2SeedDataModule` drops any).

The tasks (templates below are the ones the shipped configs give the programs; a config must use the same):
    S2A  "I think it is 9.\\n3+4?" -- an opinion or an irrelevant sentence carrying a number, then a one-digit sum.
         Seed: clean sums, the rewrite step (drop the sentence), and direct answers to sentences that carry the
         answer (the sycophancy shortcut). On hard inputs the sentence's number is never the answer.
    RaR  "add seven and two?" -- sums phrased with number words. Seed: clean sums, the rephrase step to "7+2?",
         the answer step given the rephrasing, and direct answers to phrasings with digits only (number words are
         never answered directly: System 1 lacks that skill, the program routes around it).
    BSM  "3+4? A:7 B:8" -- which response is right. Seed: the solve step on the criterion "correct" ("7A 8B correct
         3+4?\n" -> "7", the worked-out sum), the merge step ("7A 8B correct 7" -> "A": the letter after the
         response equal to the solved value, a copy a 2-layer model learns as an induction head) and direct verdicts
         from a position-biased judge that says "A" with probability `bias` whatever is right.
         Hard inputs put the right response first half of the time.
    CoT  "3+4+8?" -- three one-digit terms. Seed: chains of thought and direct answers on the seed triples only;
         distillation and test triples are disjoint from them and from each other, so a distilled System 1 must
         generalise (the paper found CoT distilled poorly on GSM8K).

Departures from the paper:
    1. Synthetic one-digit arithmetic in place of TriviaQA-style sycophancy questions (S2A), last-letter/coin-flip
       (RaR), human preference pairs (BSM) and GSM8K (CoT).
    2. System 1's weakness is planted by the seed data (a shortcut, a bias, a missing skill) instead of being that
       of a pretrained LLM.
    3. The two-term sums of S2A, RaR and BSM (100 facts) are shared skills: a distillation input's sum also appears
       in the seed as a clean question; the input itself (its sentence, phrasing or response pair) never does.
"""

from __future__ import annotations

import random
from typing import Any

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

# the program templates the seed stage teaches (the shipped configs name the same strings)
SYSTEM1 = "{input}\nAnswer:"                  # Direct's default: System 1 on every single-question task
S2A_REWRITE = "{input}\nRewrite:\n"            # System2Attention.regenerate_template
S2A_ANSWER = "{regenerated}\nAnswer:"          # System2Attention.answer_template (= System 1 on a clean question)
RAR_REPHRASE = "{input}\nRephrase:\n"          # RephraseAndRespond.rephrase_template
RAR_RESPOND = "{input}\n{rephrased}\nAnswer:"  # RephraseAndRespond.respond_template
BSM_SYSTEM1 = "{question} {context}\nVerdict:"  # Direct.template for pairs ({context} holds "A:7 B:8")
BSM_SOLVE = "{response_a}A {response_b}B {criterion} {question}\n"  # "7A 8B correct 3+4?\\n" -> "7"
BSM_EVALUATION = "{criterion} {evaluation}"
BSM_MERGE = "{response_a}A {response_b}B {evaluations}"  # "7A 8B correct 7" -> "A": a copy (induction)
BSM_VERDICT = r"^\s*([AB])"                                  # BranchSolveMerge.answer_pattern of the merge reply
BSM_CRITERION = "correct"
COT = "{input}\nSteps:\n"                      # ChainOfThought.template

SENTENCES = ["I think it is {n}.", "My guess is {n}.", "Bo has {n} cats.", "It is {n} degrees out."]
DIGIT_FORMS = ["{a} plus {b}?", "add {a} and {b}?", "sum of {a} and {b}?"]
WORD_FORMS = ["{a} plus {b}?", "add {a} and {b}?", "sum of {a} and {b}?", "{b} added to {a}?"]


class System2Task:
    """A synthetic task: seed skill rows, hard inputs, and the System 1 prompt of an input."""

    def seed_rows(self, count: int, rng: random.Random) -> list[dict[str, str]]:
        """`count` labelled `{"prompt", "response", "skill"}` rows of the seed SFT stage."""
        raise NotImplementedError

    def hard_input(self, rng: random.Random, split: str) -> dict[str, Any]:
        """One hard input (`{"question", ..., "label"}`) of a split ("distill" or "test")."""
        raise NotImplementedError

    def system1_prompt(self, item: dict[str, Any]) -> str:
        """The System 1 prompt of an input (what a distilled model is trained on)."""
        return SYSTEM1.format(input=_input_text(item))


def _input_text(item: dict[str, Any]) -> str:
    context = item.get("context") or ""
    return f"{context}\n{item['question']}" if context else item["question"]


def _sum(rng: random.Random) -> tuple[int, int]:
    return rng.randint(0, 9), rng.randint(0, 9)


def _clean(a: int, b: int) -> dict[str, str]:
    return {"prompt": SYSTEM1.format(input=f"{a}+{b}?"), "response": f" {a + b}", "skill": "clean"}


class S2ATask(System2Task):
    """System 2 Attention: a sum preceded by an opinion or an irrelevant sentence carrying a number.

    Args:
        shortcut: share of the seed's direct answers to sentence-carrying questions whose sentence holds the answer
            (the rest hold another number; the response is always the true sum).
        skill_weights: relative shares of the seed's clean sums, rewrites and direct answers.
    """

    def __init__(self, shortcut: float = 1.0, skill_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)):
        self.shortcut, self.skill_weights = shortcut, skill_weights

    def seed_rows(self, count, rng):
        rows = []
        for _ in range(count):
            a, b = _sum(rng)
            skill = rng.choices(("clean", "rewrite", "direct"), weights=self.skill_weights)[0]
            if skill == "clean":
                rows.append(_clean(a, b))
                continue
            n = a + b if skill == "direct" and rng.random() < self.shortcut else _other(a + b, rng)
            text = f"{rng.choice(SENTENCES).format(n=n)}\n{a}+{b}?"
            if skill == "rewrite":
                rows.append({"prompt": S2A_REWRITE.format(input=text), "response": f"{a}+{b}?", "skill": skill})
            else:
                rows.append({"prompt": SYSTEM1.format(input=text), "response": f" {a + b}", "skill": skill})
        return rows

    def hard_input(self, rng, split):
        a, b = _sum(rng)
        sentence = rng.choice(SENTENCES).format(n=_other(a + b, rng))  # the injected number is never the answer
        return {"question": f"{a}+{b}?", "context": sentence, "label": str(a + b)}


def _other(answer: int, rng: random.Random) -> int:
    """A number in 0..18 other than `answer`."""
    n = rng.randint(0, 17)
    return n + (n >= answer)


class RaRTask(System2Task):
    """Rephrase-and-Respond: sums phrased with number words, which System 1 never learned to answer directly.

    Args:
        skill_weights: relative shares of the seed's clean sums, rephrasings, answers given a rephrasing, and
            direct answers to digit phrasings.
    """

    def __init__(self, skill_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)):
        self.skill_weights = skill_weights

    def seed_rows(self, count, rng):
        rows = []
        for _ in range(count):
            a, b = _sum(rng)
            canonical = f"{a}+{b}?"
            skill = rng.choices(("clean", "rephrase", "respond", "direct"), weights=self.skill_weights)[0]
            words = rng.choice(WORD_FORMS).format(a=WORDS[a], b=WORDS[b])
            if skill == "clean":
                rows.append(_clean(a, b))
            elif skill == "rephrase":
                rows.append({"prompt": RAR_REPHRASE.format(input=words), "response": canonical, "skill": skill})
            elif skill == "respond":
                noisy = words if rng.random() < 0.5 else rng.choice(DIGIT_FORMS).format(a=a, b=b)
                rows.append({"prompt": RAR_RESPOND.format(input=noisy, rephrased=canonical),
                             "response": f" {a + b}", "skill": skill})
            else:
                noisy = rng.choice(DIGIT_FORMS).format(a=a, b=b)
                rows.append({"prompt": SYSTEM1.format(input=noisy), "response": f" {a + b}", "skill": skill})
        return rows

    def hard_input(self, rng, split):
        a, b = _sum(rng)
        return {"question": rng.choice(WORD_FORMS).format(a=WORDS[a], b=WORDS[b]), "label": str(a + b)}


class BSMTask(System2Task):
    """Branch-Solve-Merge: judge which of two answers to a sum is right, against a planted position bias.

    Args:
        bias: probability that a seed direct verdict is "A" whatever is right (else the true verdict).
        skill_weights: relative shares of the seed's solve steps, merge steps and direct verdicts.
    """

    def __init__(self, bias: float = 0.7, skill_weights: tuple[float, float, float] = (3.0, 2.0, 1.0)):
        self.bias, self.skill_weights = bias, skill_weights

    def seed_rows(self, count, rng):
        rows = []
        for _ in range(count):
            item = self.hard_input(rng, "seed")
            skill = rng.choices(("solve", "merge", "direct"), weights=self.skill_weights)[0]
            verdict, right = item["label"], item["response_" + item["label"].lower()]
            if skill == "solve":  # judging "correct" = working the sum out
                rows.append({"prompt": BSM_SOLVE.format(**item, criterion=BSM_CRITERION), "response": right,
                             "skill": skill})
            elif skill == "merge":  # the verdict: the response that matches the worked-out sum
                evaluations = BSM_EVALUATION.format(criterion=BSM_CRITERION, evaluation=right)
                rows.append({"prompt": BSM_MERGE.format(**item, evaluations=evaluations), "response": verdict,
                             "skill": skill})
            else:
                said = "A" if rng.random() < self.bias else verdict
                rows.append({"prompt": self.system1_prompt(item), "response": f" {said}", "skill": skill})
        return rows

    def hard_input(self, rng, split):
        a, b = _sum(rng)
        right, wrong = str(a + b), str(max(0, a + b + rng.choice((-2, -1, 1, 2))) if a + b else a + b + 1)
        if wrong == right:
            wrong = str(a + b + 1)
        first = rng.random() < 0.5
        response_a, response_b = (right, wrong) if first else (wrong, right)
        return {"question": f"{a}+{b}?", "response_a": response_a, "response_b": response_b,
                "context": f"A:{response_a} B:{response_b}", "label": "A" if first else "B"}

    def system1_prompt(self, item):
        return BSM_SYSTEM1.format(question=item["question"], context=f"A:{item['response_a']} B:{item['response_b']}")


class CoTTask(System2Task):
    """Chain of thought: three one-digit terms; seed, distillation and test triples are disjoint.

    Args:
        seed_share: share of the 1000 triples reserved for the seed stage (the rest split evenly between
            distillation and test).
        skill_weights: relative shares of the seed's chains of thought and direct answers.
    """

    def __init__(self, seed_share: float = 0.5, skill_weights: tuple[float, float] = (2.0, 1.0)):
        self.seed_share, self.skill_weights = seed_share, skill_weights
        triples = [(a, b, c) for a in range(10) for b in range(10) for c in range(10)]
        random.Random(12345).shuffle(triples)  # a fixed partition, independent of the task seed
        cut = int(seed_share * len(triples))
        half = cut + (len(triples) - cut) // 2
        self.triples = {"seed": triples[:cut], "distill": triples[cut:half], "test": triples[half:]}

    def seed_rows(self, count, rng):
        rows = []
        for _ in range(count):
            a, b, c = rng.choice(self.triples["seed"])
            question = f"{a}+{b}+{c}?"
            if rng.choices(("cot", "direct"), weights=self.skill_weights)[0] == "cot":
                rows.append({"prompt": COT.format(input=question), "response": cot_steps(a, b, c), "skill": "cot"})
            else:
                rows.append({"prompt": SYSTEM1.format(input=question), "response": f" {a + b + c}",
                             "skill": "direct"})
        return rows

    def hard_input(self, rng, split):
        a, b, c = rng.choice(self.triples[split])
        return {"question": f"{a}+{b}+{c}?", "label": str(a + b + c)}


def cot_steps(a: int, b: int, c: int) -> str:
    """The chain of thought the seed teaches: "3+4=7 7+8=15\\nAnswer: 15"."""
    return f"{a}+{b}={a + b} {a + b}+{c}={a + b + c}\nAnswer: {a + b + c}"


def task_inputs(task: System2Task, num_distill: int, num_test: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """The hard inputs `{"distill": [...], "test": [...]}`, distinct by System 1 prompt within and across the two
    splits, seeded by `seed`; a split comes back shorter when the task has fewer distinct inputs."""
    inputs: dict[str, list[dict[str, Any]]] = {}
    seen: set[str] = set()
    for offset, (split, count) in enumerate((("distill", num_distill), ("test", num_test)), start=1):
        rng, inputs[split] = random.Random(seed * 1000 + offset), []
        for _ in range(50 * count):
            if len(inputs[split]) == count:
                break
            item = task.hard_input(rng, split)
            prompt = task.system1_prompt(item)
            if prompt not in seen:
                seen.add(prompt)
                inputs[split].append(item)
    return inputs
