"""The CoPE tasks: each generator's answers, checked against an independent reading of its prompt."""

from __future__ import annotations

import random
import re

import pytest
from litforge.datamodules.cope_tasks import counting_example, flipflop_example, selective_copy_example


def run_program(prompt: str) -> int:
    """Interpret a counting program independently of the generator."""
    values = {}
    for token in re.split(r"(?<=;) ", prompt.split(" print ")[0]):
        if token.endswith("++;"):
            values[token[0]] = min(values[token[0]] + 1, 10)
        elif token.endswith("= 0 ;"):
            values[token[0]] = 0
    return values[prompt.split(" print ")[1].strip()]


@pytest.mark.parametrize("num_vars", [1, 3, 5])
def test_counting_answers(num_vars):
    rng = random.Random(0)
    for _ in range(200):
        example = counting_example(rng, num_vars=num_vars)
        assert int(example["response"]) == run_program(example["prompt"])
        assert set(re.findall(r"(\w) \+\+;", example["prompt"])) <= set("xyzuv"[:num_vars])


def test_counting_weights_follow_the_paper():
    rng = random.Random(1)
    text = " ".join(counting_example(rng, 1, 200, 200, max_value=10 ** 6)["prompt"] for _ in range(20))
    passes, incs = text.count("pass;"), text.count("++;")
    assert passes / incs == pytest.approx(50 / 7, rel=0.15)


def test_flipflop_answer_is_last_write():
    rng = random.Random(0)
    for rate in (0.1, 0.8, 0.98):
        for _ in range(100):
            example = flipflop_example(rng, length=20, p_ignore=rate)
            writes = re.findall(r"w([01])", example["prompt"])
            assert example["response"] == writes[-1] and example["prompt"].endswith("r")
            assert len(example["prompt"]) == 2 * 20 - 1
            for read in re.finditer(r"r([01])", example["prompt"]):  # every read in the sequence is right, too
                assert read.group(1) == re.findall(r"w([01])", example["prompt"][:read.start()])[-1]


def test_selective_copy():
    example = selective_copy_example(random.Random(0), length=20, num_tokens=5)
    assert example["response"] == example["prompt"][:-1].replace(".", "")
    assert len(example["prompt"]) == 21 and len(example["response"]) == 5
