"""litforge.runtime: a CPU fit makes glibc keep freed memory, so re-allocating it takes no new pages."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# a small MLP's forward and backward: the same ~200 MB of activations allocated and freed every step
STEPS = """
import resource, torch
from litforge import runtime
torch.set_num_threads(1)
applied = runtime.keep_freed_memory()
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
model = torch.nn.Sequential(*[torch.nn.Linear(512, 2048), torch.nn.Linear(2048, 512)] * 2)
x = torch.randn(4096, 512)
counts = []
for step in range(8):
    before = faults()
    model(x).square().mean().backward()
    counts.append(faults() - before)
print(applied, sum(counts[2:]))
"""

FIT = """
import lightning as L
from litforge import runtime
from litforge.backbones import TinyModel
from litforge.datamodules import SyntheticTextDataModule
from litforge.lightning_modules import CausalLM
data = SyntheticTextDataModule(num_train=8, num_val=4, max_length=16, batch_size=4)
module = CausalLM(backbone=TinyModel(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32), tokenizer=data.tokenizer)
assert runtime._applied is None
L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
          enable_checkpointing=False, limit_val_batches=0).fit(module, datamodule=data)
print(runtime._applied)
"""


def run(script: str, **env: str) -> str:
    out = subprocess.run([sys.executable, "-c", script], env={**os.environ, **env}, capture_output=True, text=True,
                         timeout=300, check=True)
    return out.stdout.split()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_freed_activations_are_reused_without_page_faults():
    applied, faults = run(STEPS)  # steps 3-8, fresh 4 KiB pages in all (measured: 16k)
    assert applied == "True" and int(faults) < 40_000
    applied, faults = run(STEPS, LITFORGE_MALLOC="system")  # glibc's defaults: 15k-35k every step (measured: 130k)
    assert applied == "False" and int(faults) > 80_000


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_a_cpu_fit_applies_the_setting():
    assert run(FIT, LITFORGE_MALLOC="") == ["True"]


@pytest.mark.slow
def test_a_misspelt_choice_is_refused(tmp_path):
    """By `litforge fit` before anything is built (exit 2, one line), and by the function itself."""
    env = {**os.environ, "LITFORGE_MALLOC": "sytem"}
    out = subprocess.run([sys.executable, "-m", "litforge.cli", "fit", "--config", str(REPO / "configs/quickstart.yaml")],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == ("litforge: error: environment variable LITFORGE_MALLOC='sytem': "
                                                   "expected 'keep' (the default: reuse freed memory) or 'system' "
                                                   "(glibc's own settings)")
    assert not (tmp_path / "runs").exists()  # nothing written
    out = subprocess.run([sys.executable, "-c", "from litforge import runtime; runtime.keep_freed_memory()"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "ValueError: environment variable LITFORGE_MALLOC='sytem'" in out.stderr
