"""Branch-Solve-Merge for pairwise judging (Saha et al. 2023): branch into evaluation criteria suited to the
question, solve (judge both responses on each criterion separately), merge the judgements into a verdict. Yu et al.
(2024, §4.3) distilled its verdicts, keeping those that survive swapping the two responses (`perturb`).

Departures from the paper:
    1. The prompts follow the paper's pairwise-evaluation prompts in structure and key wording, shortened.
    2. Branching parses the plan one criterion per non-empty line (list markers stripped), at most `max_criteria`;
       a plan with no line gives no verdict (answer None), never a default criterion.
    3. The verdict is "A" or "B" only: the default pattern reads "[[A]]" or "[[B]]", so a tie ("[[C]]") is
       unparsable and counted as such.
"""

from __future__ import annotations

import re

from litforge.plugins.system2.base import PAIR_SLOTS, System2Program, check_template, input_slots

from litforge.errors import UserError, require

BRANCH = (
    "We want to evaluate the quality of the responses provided by two AI assistants to the user question displayed "
    "below. Your task is to propose an evaluation plan that can be executed to compare the two responses. The "
    "evaluation plan should consist of a list of up to five factors that one should consider, such as helpfulness, "
    "relevance and accuracy. In each line, write an evaluation criterion along with a short description of how we "
    "should evaluate that criterion.\n\nUser Question: {question}\n\nEvaluation Plan:\n"
)
SOLVE = (
    "You are given a user question and responses provided by two AI assistants. Your task is to evaluate the "
    "responses based on a single evaluation criterion displayed below. Make sure to evaluate only based on the "
    "criterion specified and none other. In the first line, provide a score between 1 and 5 for Assistant A's "
    "response. In the second line, provide a score between 1 and 5 for Assistant B's response.\n\n"
    "[User Question]\n{question}\n\n[The Start of Assistant A's Answer]\n{response_a}\n[The End of Assistant A's "
    "Answer]\n\n[The Start of Assistant B's Answer]\n{response_b}\n[The End of Assistant B's Answer]\n\n"
    "[Evaluation Criterion]\n{criterion}\n\nEvaluation of {criterion}:\n"
)
MERGE = (
    "You are given a user question, responses provided by two AI assistants, and their evaluations along several "
    "criteria. Combine the evaluations into a final verdict on which response is better. Output your final verdict "
    "by strictly following this format: \"[[A]]\" if assistant A is better and \"[[B]]\" if assistant B is better."
    "\n\n[User Question]\n{question}\n\n[The Start of Assistant A's Answer]\n{response_a}\n[The End of Assistant "
    "A's Answer]\n\n[The Start of Assistant B's Answer]\n{response_b}\n[The End of Assistant B's Answer]\n\n"
    "[Evaluations]\n{evaluations}\n\nFinal verdict:"
)
_LIST_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.):]|\(\d+\))\s*")
_SWAP = {"A": "B", "B": "A"}


class BranchSolveMerge(System2Program):
    """A pairwise judge in three steps: "branch" (skipped with fixed `criteria`), "solve k" per criterion, then
    the merge ("final"), whose verdict is "A" or "B".

    Args:
        criteria: fixed evaluation criteria (None: the model branches into its own for each question).
        max_criteria: most criteria read from a branch plan.
        branch_template: the plan prompt, with {question} (and optionally the responses).
        solve_template: one criterion's judgement, with {criterion}, {response_a}, {response_b} (and {question}).
        merge_template: the verdict prompt, with {evaluations} (and optionally {question} and the responses).
        evaluation_format: one criterion's entry in {evaluations}, with {criterion} and {evaluation}; entries are
            joined by newlines.
        answer_pattern: regular expression with one group, the verdict in the merge reply (last match wins).
        chat: pass each prompt through the tokenizer's chat template when it has one.
        stop: strings that end every reply.
    """

    def __init__(self, criteria: list[str] | None = None, max_criteria: int = 5, branch_template: str = BRANCH,
                 solve_template: str = SOLVE, merge_template: str = MERGE,
                 evaluation_format: str = "{criterion}: {evaluation}", answer_pattern: str = r"\[\[([AB])\]\]",
                 chat: bool = False, stop: list[str] | None = None):
        super().__init__(answer_pattern, chat, stop)
        require(criteria is None or (len(criteria) > 0 and all(c.strip() for c in criteria)), "criteria",
                "must be None (branch) or a list of non-empty criteria")
        require(max_criteria >= 1, "max_criteria", f"must be >= 1, got {max_criteria}")
        self.criteria = None if criteria is None else [c.strip() for c in criteria]
        self.max_criteria = max_criteria
        self.branch_template = check_template(branch_template, "branch_template", required={"question"},
                                              allowed=PAIR_SLOTS)
        self.solve_template = check_template(solve_template, "solve_template",
                                             required={"criterion", "response_a", "response_b"}, allowed=PAIR_SLOTS)
        self.merge_template = check_template(merge_template, "merge_template", required={"evaluations"},
                                             allowed=PAIR_SLOTS)
        self.evaluation_format = check_template(evaluation_format, "evaluation_format",
                                                required={"criterion", "evaluation"})

    def criteria_of(self, plan: str) -> list[str]:
        """The criteria of a branch plan: one per non-empty line, list markers stripped, at most `max_criteria`."""
        lines = (_LIST_MARKER.sub("", line).strip() for line in plan.splitlines())
        return [line for line in lines if line][:self.max_criteria]

    def solve(self, items, step):
        slots = []
        for item in items:
            if "response_a" not in item or "response_b" not in item:
                raise UserError(f"BranchSolveMerge judges pairs: an input lacks response_a/response_b "
                                f"(keys: {sorted(item)})")
            slots.append(input_slots(item))
        steps: list[dict[str, str]] = [{} for _ in items]
        if self.criteria is None:
            plans = step("branch", [self.branch_template.format(**s) for s in slots])
            criteria = [self.criteria_of(plan) for plan in plans]
            for row, plan in enumerate(plans):
                steps[row]["branch"] = plan
        else:
            criteria = [self.criteria for _ in items]
        # solve: every (row, criterion) in one batched step
        rows = [row for row, found in enumerate(criteria) for _ in found]
        names = [f"solve {k + 1}" for found in criteria for k in range(len(found))]
        prompts = [self.solve_template.format(**slots[row], criterion=criterion)
                   for row, found in enumerate(criteria) for criterion in found]
        for row, name, evaluation in zip(rows, names, step(names, prompts, rows)):
            steps[row][name] = evaluation
        merge_rows = [row for row, found in enumerate(criteria) if found]  # no criteria: no verdict
        evaluations = ["\n".join(self.evaluation_format.format(criterion=c, evaluation=steps[row][f"solve {k}"])
                                 for k, c in enumerate(criteria[row], start=1)) for row in merge_rows]
        verdicts = step("final", [self.merge_template.format(**slots[row], evaluations=text)
                                  for row, text in zip(merge_rows, evaluations)], merge_rows)
        finals = [""] * len(items)
        for row, verdict in zip(merge_rows, verdicts):
            finals[row] = verdict
        return list(zip(steps, finals))

    def perturb(self, item):
        swapped = dict(item, response_a=item["response_b"], response_b=item["response_a"])
        if item.get("label") in _SWAP:
            swapped["label"] = _SWAP[item["label"]]
        return swapped, lambda answer: _SWAP.get(answer, answer)
