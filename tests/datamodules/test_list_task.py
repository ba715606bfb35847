"""The synthetic list task of the LIFT miniature: long-biased pairs, held-out length prompts, demonstrations."""

from __future__ import annotations

import random

from litforge.datamodules.list_task import LengthBiasedTask

from litforge.length import LengthInstruction, count_words

TEMPLATE = LengthInstruction()


def test_length_biased_task():
    task = LengthBiasedTask(num_topics=4, min_words=2, max_words=12, long_bias=0.9, error_rate=0.5)
    pairs = task.pairs(400, seed=0)
    assert all(task.is_good(p["prompt"], p["chosen"]) for p in pairs)
    longer = sum(count_words(p["chosen"]) > count_words(p["rejected"]) for p in pairs) / len(pairs)
    bad = sum(not task.is_good(p["prompt"], p["rejected"]) for p in pairs) / len(pairs)
    assert 0.85 < longer < 0.95 and 0.4 < bad < 0.6
    assert task.pairs(5, seed=1) == task.pairs(5, seed=1)
    assert task.is_good("list b", "1b 2b 3b") and not task.is_good("list b", "1b 3b")
    assert not task.is_good("list b", "1b 2c") and not task.is_good("list b", "")
    assert not task.is_good("list b", task.response("b", 5, random.Random(0), error=True))

    prompts = task.length_prompts(50, seed=0, instruction=TEMPLATE)
    assert all(2 <= p["max_len"] <= 10 and TEMPLATE.parse(p["prompt"]) == (p["instruction"], p["max_len"])
               for p in prompts)
    demos = task.demonstrations(100, seed=0, instruction=TEMPLATE)
    instructed = [d for d in demos if TEMPLATE.parse(d["prompt"])]
    assert 30 < len(instructed) < 70
    assert all(task.is_good((TEMPLATE.parse(d["prompt"]) or (d["prompt"],))[0], d["response"]) for d in demos)
