"""LLM-as-a-judge with the additive 5-point rubric of Self-Rewarding Language Models (Yuan et al. 2024, §2.1).

Departures from the paper:
    1. The rubric's wording is ours; it keeps the described structure (one point per criterion, five criteria,
       a short justification, a final line "Score: N"). It is a config field, so the paper's text can be used.
    2. The score is the *last* verdict of the judge's own reply; when its N is outside [min_score, max_score] (or
       written on another scale, "8/10" for a 5-point rubric) the reply has no verdict (an earlier in-range number
       is not used instead: the judge's final word counts).
    3. The verdict is read as instruction-tuned models write it: any case ("score: 4"), markdown emphasis
       ("**Score:** 4", "Score: **4**"), a scale ("4/5", "4 out of 5"), a trailing full stop. A verdict worded as
       one the judged response writes itself (case, spaces and emphasis aside) is taken for a quote and skipped,
       so a response cannot raise its score by writing "Score: 5", at the cost that a judge agreeing in exactly
       those words is not counted.
    4. The judge prompt goes through the judge model's chat template as one user turn (`chat`), the way an
       instruct model was trained to read instructions; litforge's byte-level tokenizer is left without it by
       default, since the miniatures teach their judge the plain prompt.
"""

from __future__ import annotations

import re

from litforge.plugins.judges.base import Judge, one_group_pattern
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from litforge.errors import ConfigError, require
from litforge.generation import generate
from litforge.tokenizer import has_own_chat_template, load_tokenizer, turn_end, user_turn

ADDITIVE_RUBRIC = (
    "Review the user's question and the response below, and score the response with the additive 5-point system:\n"
    "- Add 1 point if the response is relevant and gives some information related to the question.\n"
    "- Add a 2nd point if it covers a substantial part of the question, even if incompletely.\n"
    "- Add a 3rd point if it answers the basic elements of the question usefully.\n"
    "- Add a 4th point if it is clear, well organised and addresses the question directly.\n"
    "- Add a 5th point if it is impeccable, expert-level and tailored to the question.\n\n"
    "Question: {prompt}\nResponse: {response}\n\n"
    "Justify your total briefly, then end with the line \"Score: <points>\".\n"
)
# "Score: 4", "score: 4.", "**Score:** 4", "Score: **4**", "Total score = 4" (the number is the one group)
SCORE_PATTERN = r"(?i)(?<![a-z])score(?![a-z])[*_\s]*[:=][*_\s]*(-?\d+(?:\.\d+)?)"
_SCALE = re.compile(r"[*_ \t]*(?:/|out of\b)[*_ \t]*(\d+(?:\.\d+)?)", re.IGNORECASE)  # "4/5", "4 out of 5"
_SLOTS = re.compile(r"\{(prompt|response)\}")


def parse_score(reply: str, min_score: float = 0, max_score: float = 5, pattern: str = SCORE_PATTERN,
                response: str | None = None) -> float | None:
    """The number of the judge's last verdict in its reply, or None when there is none, it is out of range, or it
    is written on another scale than `max_score` ("8/10" for a 5-point rubric).

    Verdicts worded as one in the judged `response` (case, spaces and emphasis aside) are quotes and are skipped.
    """
    compiled = re.compile(pattern)
    quoted = {_plain(match[0]) for match in compiled.finditer(response)} if response else set()
    for match in reversed(list(compiled.finditer(reply))):
        if _plain(match[0]) in quoted:
            continue
        scale = _SCALE.match(reply, match.end())
        if scale is not None and float(scale[1]) != max_score:
            return None
        value = float(match[1])
        return value if min_score <= value <= max_score else None
    return None


def _plain(text: str) -> str:
    """A verdict's words without case, spaces or markdown emphasis, to recognise a quote."""
    return re.sub(r"[\s*_]", "", text).lower()


def fill(template: str, prompt: str, response: str) -> str:
    """The judge prompt: `{prompt}` and `{response}` filled in one pass (text inside them is never re-filled)."""
    return _SLOTS.sub(lambda match: prompt if match[1] == "prompt" else response, template)


class LLMJudge(Judge):
    """A language model reads the rubric, the prompt and the response, and ends its reply with "Score: N".

    The filled rubric is sent as one user turn through the judge tokenizer's chat template when `chat` says so, and
    the reply then ends where the template ends a turn.
    Each response is judged `samples` times; its score is the mean of the replies that parsed. Replies without a
    valid score are counted in `failures` (and `replies` counts all replies); a response none of whose replies
    parsed gets None. Only the judge's generated reply is parsed, so a response that writes "Score: 5" cannot
    score itself.

    Args:
        checkpoint: a local Hugging Face directory of the judge model; None judges with the policy being trained
            (self-rewarding).
        template: the judge prompt, with `{prompt}` and `{response}` slots.
        samples: judge replies per response, averaged (the paper: 3).
        temperature: sampling temperature of the judge replies.
        top_p: nucleus mass of the judge replies.
        max_new_tokens: longest judge reply.
        min_score: lowest valid score.
        max_score: highest valid score.
        score_pattern: regular expression with one group, the number of a verdict (the default reads any case,
            markdown emphasis and a trailing "/5").
        batch_size: sequences per generation batch.
        seed: seed of the judge's sampling (call c samples with seed + c, so repeated calls differ; the call count
            is saved in the checkpoint, so a resumed run goes on with the same seeds).
        chat: send the judge prompt through the judge tokenizer's chat template, as one user turn. None (default):
            when the tokenizer has a model's own template (an instruct checkpoint's); litforge's byte-level
            tokenizer's plain-text template is not one, so the miniatures' judges read the plain prompt.
    """

    def __init__(self, checkpoint: str | None = None, template: str = ADDITIVE_RUBRIC, samples: int = 3,
                 temperature: float = 0.7, top_p: float = 0.9, max_new_tokens: int = 128, min_score: float = 0,
                 max_score: float = 5, score_pattern: str = SCORE_PATTERN, batch_size: int = 64,
                 seed: int = 0, chat: bool | None = None):
        require("{response}" in template, "template", "needs a {response} slot (and usually {prompt})")
        require(samples >= 1, "samples", f"must be >= 1, got {samples}")
        require(temperature >= 0, "temperature", f"must be >= 0, got {temperature}")
        require(0 <= top_p <= 1, "top_p", f"must be in [0, 1], got {top_p}")
        require(max_new_tokens >= 1, "max_new_tokens", f"must be >= 1, got {max_new_tokens}")
        require(min_score < max_score, "max_score", f"must be above min_score={min_score}, got {max_score}")
        one_group_pattern(score_pattern, "score_pattern")
        require(batch_size >= 1, "batch_size", f"must be >= 1, got {batch_size}")
        self.checkpoint, self.template, self.samples = checkpoint, template, samples
        self.temperature, self.top_p, self.max_new_tokens = temperature, top_p, max_new_tokens
        self.min_score, self.max_score, self.score_pattern = min_score, max_score, score_pattern
        self.batch_size, self.seed, self.chat = batch_size, seed, chat
        self.model: PreTrainedModel | None = None
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.replies = 0
        self.calls = 0
        self.prompt_tokens = 0  # tokens the judge read (chat markup and bos included), over all calls
        self.last_replies: list[list[str]] = []
        if checkpoint is not None:
            from litforge.backbones import LocalCheckpoint

            self.tokenizer = load_tokenizer(checkpoint)
            self.model = LocalCheckpoint(checkpoint).build(len(self.tokenizer), self.tokenizer.pad_token_id,
                                                           self.tokenizer.bos_token_id, self.tokenizer.eos_token_id)
            self.uses_chat()  # chat: true on a tokenizer without a template fails here, not at the first round

    def use_policy(self, policy, tokenizer):
        if self.checkpoint is None:
            self.model, self.tokenizer = policy, tokenizer
        elif self.model is not None:
            self.model.to(next(policy.parameters()).device)

    def uses_chat(self) -> bool:
        """Whether judge prompts go through the judge tokenizer's chat template (see `chat`)."""
        if self.tokenizer is None:
            return bool(self.chat)
        if self.chat and not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError("chat", "the judge's tokenizer has no chat template; set chat: false or null")
        return self.chat if self.chat is not None else has_own_chat_template(self.tokenizer)

    def judge_prompt(self, prompt: str, response: str) -> str:
        """The text the judge model reads: the filled rubric, as one chat user turn when `uses_chat()`."""
        text = fill(self.template, prompt, response)
        return user_turn(self.tokenizer, text) if self.uses_chat() else text

    def judge_replies(self, judge_prompts: list[str]) -> list[list[str]]:
        """`samples` judge replies to each judge prompt, the reply only (overridable, e.g. to call a served model)."""
        if self.model is None:
            raise RuntimeError("LLMJudge with checkpoint=None judges with the policy: call use_policy(policy, "
                               "tokenizer) first")
        chat = self.uses_chat()
        # a reply ends with the judge's turn, also where that is not the eos token (Gemma's <end_of_turn>)
        end = turn_end(self.tokenizer) if chat else None
        out = generate(self.model, self.tokenizer, judge_prompts, n=self.samples, max_new_tokens=self.max_new_tokens,
                       temperature=self.temperature, top_p=self.top_p, seed=self.seed + self.calls,
                       batch_size=self.batch_size, add_bos=not chat,  # a template writes its own bos
                       stop=[end] if end and end != self.tokenizer.eos_token else None)
        self.prompt_tokens += out.prompt_tokens
        return out.texts

    def state_dict(self):
        # `calls` seeds the next call's sampling: a resumed run must go on from it, not from 0
        return dict(super().state_dict(), calls=self.calls, replies=self.replies)

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.calls, self.replies = state.get("calls", 0), state.get("replies", 0)

    def score(self, prompts, responses, references=None):
        self.calls += 1
        replies = self.judge_replies([self.judge_prompt(p, r) for p, r in zip(prompts, responses)])
        self.last_replies = replies
        scores: list[float | None] = []
        for texts, response in zip(replies, responses):  # only the judge's reply is parsed, never its prompt
            parsed = [parse_score(text, self.min_score, self.max_score, self.score_pattern, response)
                      for text in texts]
            valid = [value for value in parsed if value is not None]
            self.replies += len(parsed)
            self.failures += len(parsed) - len(valid)
            scores.append(sum(valid) / len(valid) if valid else None)
        return scores
