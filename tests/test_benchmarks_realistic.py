"""benchmarks/dpo_realistic.py: its seeded long-tailed data (bounds, medians, exact token counts on both sides'
tokenization) and, where TRL is installed, a tiny end-to-end run of the script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from statistics import median

import pytest
from helpers import load_benchmark
from litforge.datamodules import PreferenceDataModule

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "dpo_realistic.py"


def load_script():
    return load_benchmark("dpo_realistic")


def test_lengths_are_seeded_long_tailed_and_cut_at_1024():
    bench = load_script()
    lengths = bench.pair_lengths(256)
    assert lengths == bench.pair_lengths(256) and lengths != bench.pair_lengths(256, seed=1)
    assert bench.pair_lengths(16) == lengths[:16]  # a smaller run trains the first pairs of the same set
    for prompt, chosen, rejected in lengths:
        assert min(prompt, chosen, rejected) >= 4 and prompt <= 1020
        assert prompt + chosen <= 1024 and prompt + rejected <= 1024
    prompts, responses = [x[0] for x in lengths], [x[1] for x in lengths] + [x[2] for x in lengths]
    assert 130 <= median(prompts) <= 170 and 220 <= median(responses) <= 280
    assert max(responses) > 800 and min(responses) < 60  # long-tailed: a few tokens to near the cut
    assert any(x[0] + x[1] == 1024 for x in lengths)  # the cut binds on some pairs
    assert [x[1] for x in lengths] != [x[2] for x in lengths]  # chosen and rejected drawn separately
    longest = bench.selection(16, memory_only=True)  # --memory-only: the 16 longest pairs, in the set's order
    assert longest == sorted(longest) and len(set(longest)) == 16 and bench.selection(5, False) == [0, 1, 2, 3, 4]
    assert min(sum(lengths[i]) for i in longest) >= max(sum(x) for i, x in enumerate(lengths) if i not in longest)


def test_text_tokenizes_to_the_drawn_counts_for_litforge_and_trl(tmp_path):
    bench = load_script()
    vocab = 1000
    tok = bench.tokenizer(vocab)
    assert len(tok) == vocab
    pairs, lengths = bench.pairs(8, vocab), bench.pair_lengths(8)
    assert pairs == bench.pairs(8, vocab)
    tok.save_pretrained(tmp_path)

    class Pairs(PreferenceDataModule):
        def pairs(self, split):
            return pairs if split == "train" else None

    samples = Pairs(tokenizer=str(tmp_path), max_length=1024).load("train")
    middle = (4 + vocab) // 2
    for sample, pair, (prompt, chosen, rejected) in zip(samples, pairs, lengths):
        # litforge: bos + prompt words, response words + eos; loss on the responses only
        assert len(sample["chosen_input_ids"]) == prompt + chosen
        assert len(sample["rejected_input_ids"]) == prompt + rejected
        assert sample["chosen_labels"][:prompt] == [-100] * prompt and sample["chosen_input_ids"][0] == 1
        assert all(4 <= i < middle for i in sample["chosen_input_ids"][prompt:-1])
        assert all(middle <= i < vocab for i in sample["rejected_input_ids"][prompt:-1])
        # TRL: the prompt and prompt + response + eos text tokenized whole; the prompt is their common prefix
        ids = tok(pair["prompt"] + pair["chosen"] + tok.eos_token)["input_ids"]
        assert ids == sample["chosen_input_ids"] and tok(pair["prompt"])["input_ids"] == ids[:prompt]


def test_bad_arguments_exit_2_before_any_run():
    for args in (["--litforge", "bogus=1"], ["--litforge", "padding_free=maybe"], ["--pairs", "0"]):
        out = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False)
        assert out.returncode == 2 and f"{args[0]} " in out.stderr.splitlines()[-1]


@pytest.mark.slow
def test_tiny_run_prints_table_and_ratios():
    pytest.importorskip("trl")
    out = subprocess.run([sys.executable, str(SCRIPT), "--pairs", "8", "--vocab", "512", "--repeats", "1",
                          "--threads", "1"], capture_output=True, text=True, check=False, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("machine: ") and "TRL 1.16" in lines[0]
    assert lines[-2].startswith("ratio vs TRL as run by a user: ") and lines[-1].startswith("ratio vs TRL best: ")
    float(lines[-2].rsplit(" ", 1)[1]), float(lines[-1].rsplit(" ", 1)[1])
    rows = [line for line in lines if line.startswith(("litforge ", "TRL as a user", "TRL best ")) and ":" not in line]
    losses = [float(row.split()[-2]) for row in rows]  # the epoch's mean loss: its only step's
    assert len(losses) == 3 and max(losses) - min(losses) < 0.01  # one step from the same start: the same loss


def test_pair_layouts_give_one_loss_and_padding_free_computes_only_real_tokens():
    """benchmarks/pair_layouts.py (issue 19 item 1): the four layouts run the same epoch (the same log-probs), the
    padding-free ones on exactly the pairs' real tokens, length groups on less padding than random batches."""
    layouts = load_benchmark("pair_layouts")
    tiny = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
            "max_position_embeddings": 1024, "seed": 0, "attn_implementation": "sdpa"}
    results = layouts.measure(count=16, vocab=64, repeats=1, backbone=tiny, log=lambda line: None)
    assert list(results) == list(layouts.LAYOUTS)
    logps = [r["logp"] for r in results.values()]  # thousands of nats; a wrong block would move it by whole nats
    assert logps[0] < -1000 and max(logps) - min(logps) < 1e-5 * abs(logps[0])
    real = sum(sum(lengths) for lengths in load_script().pair_lengths(16))  # prompt once, both responses
    tokens = {name: r["tokens"] for name, r in results.items()}
    assert tokens["padding-free, random batches"] == tokens["padding-free, length groups"] == real
    assert tokens["padded, random batches"] > tokens["padded, length groups"] > real
    lines = layouts.table(results, 16)
    assert len(lines) == 6 and lines[-1].startswith("padding-free (random batches) vs per-length groups (padded): ")
