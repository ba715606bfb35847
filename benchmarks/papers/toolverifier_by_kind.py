"""The ToolVerifier miniature's unseen-tool accuracy split by kind of unseen tool, on the models it trained.

    python benchmarks/papers/toolverifier_by_kind.py [--seeds 0 1 2] [--requests 100]   (after toolverifier.py)

The miniature's unseen set mixes two kinds of gold tool: a held-out sibling (its topic is a seen family's, only the
combination of time and place is new: "weather-last-year-country" when the other five weather tools were trained)
and a tool of a held-out family (its topic word, "sports", never appears in a training row's reply). For each seed's
exported SFT model (`<workdir>/seed<N>/runs/toolverifier/sft/hf`) this runs the miniature's selection programs
(DirectSelection, ReasoningSelection, ToolVerifier) on the same unseen requests as `toolverifier.py --requests N`
(the task's `task_seed` = the seed), greedy, and prints the accuracy of each kind per seed and summed over seeds.

It calls the programs directly, in batches of 50 as verify.yaml does, with the program seed = the run seed, so the
verified pair's A/B order follows the same seeds as `litforge validate`; the totals can still differ from the
miniature's table by a request or two where batches split differently.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import machine_report, markdown_table, pin_process  # noqa: E402

BATCH = 50  # configs/toolverifier/verify.yaml's batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--requests", type=int, default=200, help="as toolverifier.py's --requests (default: 200)")
    parser.add_argument("--workdir", default="/tmp/litforge_toolverifier")
    options = parser.parse_args()
    pin_process()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from litforge.datamodules.tool_data import evaluation_inputs
    from litforge.datamodules.tool_tasks import ToolTask
    from litforge.plugins.system2.base import SEEDS_PER_RUN
    from litforge.plugins.tools.selection import DirectSelection, ReasoningSelection
    from litforge.plugins.tools.verifier import ToolVerifier

    print(machine_report(threads=torch.get_num_threads()) + "\n")
    task = ToolTask(names="descriptive")  # configs/toolverifier/sft.yaml's task
    seen_topics = {tool.family for tool in task.seen.tools}
    programs = {"direct": DirectSelection(), "reasoning": ReasoningSelection(), "ToolVerifier": ToolVerifier()}
    kinds = ("sibling", "family")
    directories = {seed: Path(options.workdir) / f"seed{seed}" / "runs" / "toolverifier" / "sft" / "hf"
                   for seed in options.seeds}
    for directory in directories.values():
        if not directory.is_dir():
            raise SystemExit(f"{directory}: no exported model; run benchmarks/papers/toolverifier.py first")
    right, count = Counter(), Counter()  # over all seeds: (program, kind) -> right answers; kind -> requests
    for seed, directory in directories.items():
        model = AutoModelForCausalLM.from_pretrained(directory).eval()
        tokenizer = AutoTokenizer.from_pretrained(directory)
        items = evaluation_inputs(task, options.requests, options.requests, seed)["unseen"]
        item_kinds = []
        for item in items:
            gold = next(tool for tool in item["candidates"] if tool.name == item["label"])
            item_kinds.append("sibling" if gold.family in seen_topics else "family")
        seed_right, seed_count = Counter(), Counter(item_kinds)
        for name, program in programs.items():
            for start in range(0, len(items), BATCH):
                batch = items[start:start + BATCH]
                outputs = program.run(model, tokenizer, batch, n=1, temperature=0.0,
                                      seed=seed + SEEDS_PER_RUN * (start // BATCH), max_new_tokens=48,
                                      batch_size=64)
                for item, kind, samples in zip(batch, item_kinds[start:start + BATCH], outputs):
                    seed_right[name, kind] += samples[0].answer == item["label"]
        print(f"seed {seed}: " + ", ".join(f"{name} {kind} {seed_right[name, kind]}/{seed_count[kind]}"
                                           for name in programs for kind in kinds), flush=True)
        right.update(seed_right)
        count.update(seed_count)
    print(f"\nUnseen requests by kind of gold tool, seeds {options.seeds}, {options.requests} requests each, greedy "
          f"(right / total over seeds)\n")
    rows = [[name] + [f"{right[name, kind]}/{count[kind]} ({right[name, kind] / max(count[kind], 1):.2f})"
                      for kind in kinds] for name in programs]
    print(markdown_table(["", "held-out sibling (seen topic)", "held-out family (unseen topic)"], rows))


if __name__ == "__main__":
    main()
