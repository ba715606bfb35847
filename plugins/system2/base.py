"""The System 2 program contract: a fixed sequence of batched generation steps on one model, whose last reply holds
the final answer (Yu et al. 2024, "Distilling System 2 into System 1", §2).

A program's inputs are dicts: `{"question", "context" (optional), "label" (optional)}`, or for pairwise judging
`{"question", "response_a", "response_b", "label" ("A" | "B", optional)}`. A program never reads `label`.

Every template is a YAML field filled with `str.format` slots. The slots an input offers:
    {question}, {context} ("" when absent), {input} (the context, a newline, then the question; the question alone
    when there is no context), and for pairs {response_a}, {response_b}. Steps add their own (e.g. {rephrased}).
A template that misses a slot its step needs, or names one it cannot have, is a ConfigError naming its field.

Departures from the paper:
    1. `tokens` counts the tokens each reply keeps: the eos that ends a reply and the tokens of a stop string are
       not counted (Yu et al. count generated tokens without saying which).
    2. Each step is one `generate` call over all inputs x samples; step k of a run seeded s samples with seed
       s + k, so callers that run a program several times space their seeds by `SEEDS_PER_RUN`.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from litforge.plugins.judges.base import one_group_pattern
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from litforge.errors import ConfigError, require
from litforge.generation import generate
from litforge.tokenizer import user_turn

INPUT_SLOTS = frozenset({"question", "context", "input"})
PAIR_SLOTS = frozenset({"question", "response_a", "response_b"})
SEEDS_PER_RUN = 1000  # a program runs fewer steps than this: runs seeded this far apart never share a step's seed


@dataclass
class System2Output:
    """One run of a program on one input."""

    answer: str | None  # the parsed final answer; None when the final reply could not be parsed
    steps: dict[str, str]  # intermediate texts by step name, in the order they ran (e.g. {"rephrase": ...})
    final: str  # the final reply's text
    tokens: int  # tokens generated over all steps for this input
    prompts: dict[str, str] = field(default_factory=dict)  # each step's filled template by step name ("final" last)


def is_correct(answer: str | None, item: dict) -> bool | None:
    """Whether `answer` equals the input's label (exact, after stripping the label); None for an unlabelled input.
    Labels are read only here, for metrics and the oracle control, never by a program."""
    label = item.get("label")
    return None if label is None else answer == str(label).strip()


def check_template(template: str, field_name: str, required: Iterable[str] = (), allowed: Iterable[str] = (),
                   one_of: Iterable[str] = ()) -> str:
    """`template` unchanged; ConfigError naming `field_name` when it lacks a `required` slot, has none of `one_of`
    (when given), or names a slot outside required | allowed | one_of."""
    required, one_of = set(required), set(one_of)
    known = required | one_of | set(allowed)
    try:
        slots = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:  # a lone "{" or "}": literal braces must be doubled
        raise ConfigError(field_name, f"not a str.format template ({error}); write literal braces as {{{{ }}}}") \
            from None
    missing, unknown = sorted(required - slots), sorted(slots - known)
    require(not missing, field_name, f"needs the slot(s) {_braced(missing)}")
    require(not one_of or slots & one_of, field_name, f"needs one of the slots {_braced(sorted(one_of))}")
    require(not unknown, field_name, f"unknown slot(s) {_braced(unknown)}; available: {_braced(sorted(known))}")
    return template


def _braced(names: Iterable[str]) -> str:
    return ", ".join("{" + name + "}" for name in names)


def input_slots(item: dict) -> dict[str, str]:
    """The slots an input fills: question, context, input (context + newline + question), and a pair's responses."""
    question, context = str(item.get("question", "")), str(item.get("context") or "")
    slots = {"question": question, "context": context, "input": f"{context}\n{question}" if context else question}
    for name in ("response_a", "response_b"):
        if name in item:
            slots[name] = str(item[name])
    return slots


class Step:
    """Runs one program step: one reply per prompt, all prompts in one batched `generate` call.

    Each prompt belongs to a row (an input x sample); the reply's tokens are added to that row's count and the
    filled template is kept under the step's name. Step k samples with seed `seed + k`.
    """

    def __init__(self, program: System2Program, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                 rows: int, temperature: float, seed: int, max_new_tokens: int, batch_size: int):
        self.program, self.model, self.tokenizer = program, model, tokenizer
        self.temperature, self.seed = temperature, seed
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.tokens = [0] * rows
        self.prompts: list[dict[str, str]] = [{} for _ in range(rows)]
        self.calls = 0
        self.prompt_tokens = 0  # prompt tokens read over all steps (bos and chat markup included)

    def __call__(self, name: str | list[str], prompts: list[str], rows: list[int] | None = None,
                 temperature: float | None = None) -> list[str]:
        """The reply to each prompt; `rows[k]` is the row prompt k belongs to (default: prompt k is row k),
        `name` the step name (one for all, or one per prompt when a row has several prompts in one step) and
        `temperature` this call's sampling temperature (None: the run's)."""
        rows = list(range(len(prompts))) if rows is None else rows
        names = [name] * len(prompts) if isinstance(name, str) else name
        if not prompts:
            return []
        texts = [self.program.chat_text(self.tokenizer, prompt) for prompt in prompts]
        bos = self.tokenizer.bos_token
        # a chat template usually writes bos itself: never add a second one
        add_bos = not (bos and any(text.startswith(bos) for text in texts))
        out = generate(self.model, self.tokenizer, texts, n=1, max_new_tokens=self.max_new_tokens,
                       temperature=self.temperature if temperature is None else temperature,
                       stop=self.program.stop, seed=self.seed + self.calls, batch_size=self.batch_size,
                       add_bos=add_bos)
        self.calls += 1
        self.prompt_tokens += out.prompt_tokens
        for row, step_name, prompt, ids in zip(rows, names, prompts, out.token_ids):
            self.tokens[row] += len(ids[0])
            self.prompts[row][step_name] = prompt
        return [samples[0] for samples in out.texts]


class System2Program:
    """A fixed sequence of batched generation steps on one model (a plugin named in YAML by class_path).

    Subclasses implement `solve` (the steps) and may implement `perturb`; `run` batches every step over all
    inputs x samples, counts tokens and parses the final reply with `answer_pattern` (the last match wins;
    no match gives `answer=None`, never a guess).

    Args:
        answer_pattern: regular expression with one group, the final answer in the final reply (last match wins).
        chat: pass each step's prompt through the tokenizer's chat template (as one user turn) when it has one.
        stop: strings that end every step's reply (cut before them).
    """

    def __init__(self, answer_pattern: str = r"Answer:\s*([^\n]*[^\s.])", chat: bool = False,
                 stop: list[str] | None = None):
        self.answer_pattern = answer_pattern
        self.pattern = one_group_pattern(answer_pattern, "answer_pattern")
        self.chat = chat
        self.stop = list(stop or [])

    def run(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, inputs: list[dict], n: int = 1,
            temperature: float = 0.0, seed: int = 0, max_new_tokens: int = 64,
            batch_size: int = 64) -> list[list[System2Output]]:
        """n independent samples per input (outputs[i][j]); temperature 0 = greedy."""
        require(n >= 1, "n", f"must be >= 1, got {n}")
        items = [item for item in inputs for _ in range(n)]  # row i * n + j is sample j of input i
        step = Step(self, model, tokenizer, len(items), temperature, seed, max_new_tokens, batch_size)
        solved = self.solve(items, step)
        outputs = [System2Output(self.parse(final), steps, final, tokens, prompts)
                   for (steps, final), tokens, prompts in zip(solved, step.tokens, step.prompts)]
        return [outputs[i * n:(i + 1) * n] for i in range(len(inputs))]

    def solve(self, items: list[dict], step: Step) -> list[tuple[dict[str, str], str]]:
        """(intermediate texts by step name, final reply) per item, generating through `step` (the final step is
        named "final")."""
        raise NotImplementedError

    def perturb(self, item: dict) -> tuple[dict, Callable[[str], str]] | None:
        """An input that must give the same answer, and the map from its answer back (None: no perturbation)."""
        return None

    def parse(self, reply: str) -> str | None:
        """The final answer in a reply: the last match of `answer_pattern`, stripped; None when there is none."""
        found = self.pattern.findall(reply)
        return found[-1].strip() if found and found[-1].strip() else None

    def chat_text(self, tokenizer: PreTrainedTokenizerBase, prompt: str) -> str:
        """The text the model reads for a prompt: through the chat template as one user turn when `chat` is set
        and the tokenizer has a template, else the prompt itself."""
        if self.chat and getattr(tokenizer, "chat_template", None):
            return user_turn(tokenizer, prompt)
        return prompt
