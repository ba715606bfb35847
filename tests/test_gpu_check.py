"""benchmarks/gpu_check.py: the printed table, the flash-attention probe, and its --dry run of every row on CPU."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import load_benchmark

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def load_script():
    return load_benchmark("gpu_check")


def test_table_prints_each_row_and_cope_against_rope():
    gpu_check = load_script()
    results = {
        "rope_step": {"status": "ok", "seconds": 2.0, "rate": 81920.0, "unit": "tokens/s", "peak_mib": 1536.4},
        "cope_step": {"status": "ok", "seconds": 5.0, "rate": 32768.0, "unit": "tokens/s", "peak_mib": 4096.0},
        "qlora_dpo": {"status": "n/a", "note": "not available: a reason"},
        "dpo_sdpa": {"status": "failed", "note": "OutOfMemoryError: CUDA out of memory", "peak_mib": 140000.0},
    }
    assert gpu_check.table(results).splitlines() == [
        "row             seconds           throughput  peak MiB  status  note",
        "rope_step          2.00      81,920 tokens/s     1,536  ok      ",
        "cope_step          5.00      32,768 tokens/s     4,096  ok      step time x2.50 RoPE's",
        "qlora_dpo             -                    -         -  n/a     not available: a reason",
        "dpo_sdpa              -                    -   140,000  failed  OutOfMemoryError: CUDA out of memory",
    ]


def test_flash_probe_names_what_is_missing():
    gpu_check = load_script()
    implementation, what = gpu_check.flash_attention()
    if importlib.util.find_spec("flash_attn") is None and importlib.util.find_spec("kernels") is None:
        assert implementation is None and what == "neither flash_attn nor kernels is installed"
    else:
        assert implementation in ("flash_attention_2", "kernels-community/flash-attn2")


@pytest.mark.slow
def test_dry_run_runs_every_row_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--dry", "--json", str(out)], cwd=ROOT, text=True,
                            capture_output=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    gpu_check = load_script()
    assert list(rows) == list(gpu_check.ROWS)
    # rows whose piece is missing here say so; every other row trains (or generates) and is timed
    missing = {"dpo_flash", "generate_vllm"} | ({"qlora_dpo"} if not gpu_check.QLORA.exists() else set())
    for name, row in rows.items():
        if name in missing:
            assert row["status"] == "n/a" and row["note"], (name, row)
        else:
            assert row["status"] == "ok" and row["seconds"] > 0 and row["rate"] > 0, (name, row)
    assert rows["dpo_sdpa"]["unit"] == "pairs/s" and rows["sft_bf16"]["unit"] == "tokens/s"
    table = result.stdout.splitlines()
    assert table[0].startswith("machine: ") and table[2].startswith("mode: dry")
    assert [line.split()[0] for line in table[4:]] == list(gpu_check.ROWS)
    assert "step time x" in next(line for line in table if line.startswith("cope_step"))
