"""Synthetic multi-step arithmetic with chain of thought: the task of the DPO+NLL, Cringe and iterative miniatures.

A question adds `num_terms` numbers ("12+34+56="); the chain-of-thought solution folds the first two terms one step
at a time ("46+56=102"), so the last number after "=" is the final answer. Which split a question belongs to is a
function of the question itself (a CRC of its text), so train, val and test never share a question, whatever the
counts asked for.

For self-rewarding the task also has a true grade of any response on a 0-5 additive rubric (`grade_points`), and
evaluation-fine-tuning (EFT) examples that teach a model to grade: the judge prompt `GRADE_TEMPLATE` filled with a
question and a response (correct or corrupted by `corrupt_solution`), and a reply that works the question, lists the
rubric's points and ends with "Score: N" (`grade_reply`).
"""

from __future__ import annotations

import random
import re
import zlib
from typing import Any

from litforge.errors import require

SPLITS = ("train", "val", "test")
_ANSWER = re.compile(r"=\s*(-?\d+)")


def split_of(prompt: str) -> str:
    """The split a question belongs to: 10% test, 10% val, 80% train, fixed by the question's text."""
    bucket = zlib.crc32(prompt.encode()) % 10
    return "test" if bucket == 0 else "val" if bucket == 1 else "train"


def question_prompt(operands: list[int]) -> str:
    """The question text: "12+34+56="."""
    return "+".join(str(x) for x in operands) + "="


def cot_solution(operands: list[int], partial_sums: list[int] | None = None) -> str:
    """The chain of thought "S1+ef=S2": after each step the running sum replaces the first two terms.

    `partial_sums` overrides the running sums (used to write incorrect solutions); by default they are correct.
    """
    sums = partial_sums if partial_sums is not None else running_sums(operands)
    steps = []
    for step, total in enumerate(sums):
        rest = operands[step + 2:]
        steps.append("+".join(str(x) for x in [total, *rest]))
    return "=".join(steps)


def running_sums(operands: list[int]) -> list[int]:
    """The correct running sums after each addition step (len = number of terms - 1)."""
    sums, total = [], operands[0]
    for x in operands[1:]:
        total += x
        sums.append(total)
    return sums


def extract_answer(text: str) -> int | None:
    """The final answer of a generated solution: the last integer after an "=" (None when there is none).

    Apply it to the completion only (the prompt ends with "=" and no number).
    """
    found = _ANSWER.findall(text)
    return int(found[-1]) if found else None


def incorrect_solution(operands: list[int], rng: random.Random) -> str:
    """A plausible wrong chain of thought: one step is off by a small amount and later steps carry the error on."""
    sums = running_sums(operands)
    step = rng.randrange(len(sums))
    error = rng.choice([-10, -2, -1, 1, 2, 10, rng.randint(-20, 20) or 3])
    wrong = sums[:step] + [s + error for s in sums[step:]]
    return cot_solution(operands, wrong)


def arithmetic_questions(count: int, split: str = "train", seed: int = 0, num_terms: int = 3,
                         min_operand: int = 10, max_operand: int = 99) -> list[dict[str, Any]]:
    """`count` distinct questions of one split: dicts with "prompt", "operands", "answer" (int) and "solution".

    The same (seed, split, sizes) always give the same questions; no question appears in two splits.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    require(num_terms >= 1, "num_terms", f"must be >= 1, got {num_terms}")
    require(min_operand <= max_operand, "max_operand", f"must be >= min_operand={min_operand}, got {max_operand}")
    space = (max_operand - min_operand + 1) ** num_terms
    require(count <= space // 20, "max_operand",
            f"{count} questions asked from a space of {space} (at most 1 in 20 is drawn); widen the operand range")
    rng = random.Random(f"{seed}-{split}-{num_terms}")
    questions, seen = [], set()
    while len(questions) < count:
        operands = [rng.randint(min_operand, max_operand) for _ in range(num_terms)]
        prompt = question_prompt(operands)
        if prompt in seen or split_of(prompt) != split:
            continue
        seen.add(prompt)
        questions.append({"prompt": prompt, "operands": operands, "answer": sum(operands),
                          "solution": cot_solution(operands)})
    return questions


GRADE_TEMPLATE = "Grade 0-5: {prompt}{response}\n"
"""The judge prompt of the self-rewarding miniature: the seed model learns it from EFT examples, the self-rewarding
run's `LLMJudge` must use the same text."""
_EXPRESSION = re.compile(r"\d+(?:\+\d+)*")
CORRUPTIONS = ("correct", "incorrect", "wrong_work", "repeated", "truncated", "garbled")


def grade_points(operands: list[int], response: str) -> dict[str, int]:
    """The four criteria of the true grade of a response to the question adding `operands` (5 points in all).

    The response is split at "=" into expressions; the correct one is `cot_solution` ("46+56=102" for 12+34+56).

    - form (1): exactly num_terms - 1 expressions, each integers joined by "+", the k-th with num_terms - 1 - k terms
      (so the last is a single number).
    - steps (2): the share of expected steps written correctly at their position, as 2 * correct // steps.
    - consistent (1): at least two expressions, all well formed, each summing to the one before it (the response's
      own arithmetic holds, whether or not it started right).
    - answer (1): the final answer (`extract_answer`) is the sum.

    Worked grades for 12+34+56: "46+56=102" 5, "46+56=102=102" 4, "48+56=102" 3, "48+56=104" 2, "46+56=103" 2,
    "46+56" 1, "46+5" 0.
    """
    expected = cot_solution(operands).split("=")
    pieces = response.split("=")
    formed = [_EXPRESSION.fullmatch(piece) is not None for piece in pieces]
    form = len(pieces) == len(expected) and all(formed) and all(
        piece.count("+") == len(expected) - 1 - k for k, piece in enumerate(pieces))
    correct = sum(k < len(pieces) and pieces[k] == step for k, step in enumerate(expected))
    consistent = len(pieces) >= 2 and all(formed) and all(
        _total(pieces[k]) == _total(pieces[k - 1]) for k in range(1, len(pieces)))
    return {"form": int(form), "steps": 2 * correct // len(expected), "consistent": int(consistent),
            "answer": int(extract_answer(response) == sum(operands))}


def true_grade(operands: list[int], response: str) -> int:
    """The true grade (0-5) of a response: the sum of `grade_points`."""
    return sum(grade_points(operands, response).values())


def grade_reply(operands: list[int], response: str) -> str:
    """The judge reply an EFT example teaches: the correct working, the rubric's points, then "Score: N".

    "46+56=102; points 1+1+0+0; Score: 2" grades "46+56=103" for 12+34+56 (form, steps, consistent, answer).
    """
    points = grade_points(operands, response)
    listed = "+".join(str(value) for value in points.values())
    return f"{cot_solution(operands)}; points {listed}; Score: {sum(points.values())}"


def corrupt_solution(operands: list[int], kind: str, rng: random.Random) -> str:
    """A response of one of `CORRUPTIONS` kinds, so that every grade occurs among EFT and judge held-out examples.

    correct: the solution (5). incorrect: `incorrect_solution` (2). wrong_work: the first step off, the final answer
    right (3). repeated: the final answer written twice (4). truncated: cut anywhere (0-2). garbled: one or two
    characters replaced (any grade).
    """
    solution = cot_solution(operands)
    if kind == "correct":
        return solution
    if kind == "incorrect":
        return incorrect_solution(operands, rng)
    if kind == "wrong_work":
        sums = running_sums(operands)
        return cot_solution(operands, [sums[0] + rng.choice([-10, -2, -1, 1, 2, 10]), *sums[1:]])
    if kind == "repeated":
        return f"{solution}={sum(operands)}"
    if kind == "truncated":
        return solution[:rng.randrange(len(solution))]
    if kind == "garbled":
        chars = list(solution)
        for _ in range(rng.randint(1, 2)):
            chars[rng.randrange(len(chars))] = rng.choice("0123456789+=x")
        return "".join(chars)
    raise ValueError(f"unknown corruption {kind!r}; one of {CORRUPTIONS}")


def graded_responses(questions: list[dict[str, Any]], count: int, seed: int, balanced: bool = False
                     ) -> list[dict[str, Any]]:
    """`count` rows {"prompt", "response", "grade", "reference"}: the questions in turn, each answered by a response
    of a random `CORRUPTIONS` kind.

    With `balanced`, responses are drawn until each grade 0-5 has count // 6 rows (the rest of count from any grade),
    so that a judge answering one constant grade agrees on about a sixth.
    """
    rng = random.Random(seed)
    quota = {grade: count // 6 for grade in range(6)} if balanced else None
    rows, spare, i = [], count - 6 * (count // 6) if balanced else count, 0
    while len(rows) < count:
        question = questions[i % len(questions)]
        i += 1
        response = corrupt_solution(question["operands"], rng.choice(CORRUPTIONS), rng)
        grade = true_grade(question["operands"], response)
        if quota is not None and quota[grade] <= 0:
            if spare <= 0:
                continue
            spare -= 1
        elif quota is not None:
            quota[grade] -= 1
        rows.append({"prompt": question["prompt"], "response": response, "grade": grade,
                     "reference": str(question["answer"])})
        if i > 1000 * count:
            raise RuntimeError(f"could not draw {count} balanced graded responses")
    return rows


def _total(expression: str) -> int:
    """The value of integers joined by "+"."""
    return sum(int(x) for x in expression.split("+"))
