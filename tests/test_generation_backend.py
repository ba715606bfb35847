"""The generation backend setting of the iterative loops: the built-in loop unchanged, routing per model, the vLLM
backend's option mapping and output rule (pure functions, no vllm needed) and its clean refusal on this machine."""

from __future__ import annotations

import contextlib
import importlib.util

import lightning as L
import pytest
import torch
from iterative_helpers import HashJudge
from litforge.datamodules import ArithmeticIterativeDataModule
from litforge.lightning_modules import IterativeRPO
from test_cli import run_main

from litforge.backbones import TinyModel
from litforge.errors import ConfigError
from litforge.generation import BuiltinGeneration, Generations, generate, routed_to
from litforge.vllm_backend import VLLMGeneration, finish, refuse_unservable, sampling_options, vllm_unavailable

PROMPTS = ["12+34=", "hello", "a"]
NO_VLLM = importlib.util.find_spec("vllm") is None or not torch.cuda.is_available()
RUN = """
trainer: {{accelerator: cpu, default_root_dir: {root}, logger: false, enable_checkpointing: false}}
model:
  class_path: IterativeRPO
  init_args:
    backbone: {{class_path: TinyModel, init_args: {{hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2}}}}
    judge: AnswerJudge
    iterations: 1
data: {{class_path: ArithmeticIterativeDataModule, init_args: {{num_train: 4, num_val: 2}}}}
"""


class Recording(BuiltinGeneration):
    """The built-in loop behind a real routing backend, recording each `serving` and each routed call."""

    def __init__(self):
        self.served, self.calls, self.closed = 0, [], 0

    @contextlib.contextmanager
    def serving(self, model, tokenizer):
        self.served += 1
        with routed_to(self, model):
            yield

    def generate(self, model, tokenizer, prompts, **options):
        self.calls.append((len(prompts), options["n"], options["temperature"]))
        return super().generate(model, tokenizer, prompts, **options)

    def close(self):
        self.closed += 1


def test_builtin_backend_samples_what_generate_samples(tiny_model, tokenizer):
    plain = generate(tiny_model, tokenizer, PROMPTS, n=2, temperature=1.0, max_new_tokens=8, seed=3)
    backend = BuiltinGeneration()
    with backend.serving(tiny_model, tokenizer):
        served = generate(tiny_model, tokenizer, PROMPTS, n=2, temperature=1.0, max_new_tokens=8, seed=3)
    assert served.token_ids == plain.token_ids and served.texts == plain.texts and served.stopped == plain.stopped
    direct = backend.generate(tiny_model, tokenizer, PROMPTS, n=2, temperature=1.0, max_new_tokens=8, seed=3)
    assert direct.token_ids == plain.token_ids


def test_routing_is_per_model_and_ends_with_the_block(tiny_model, tokenizer, tiny_backbone):
    other = tiny_backbone.build(len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id,
                                tokenizer.eos_token_id)
    backend = Recording()
    with backend.serving(tiny_model, tokenizer):
        routed = generate(tiny_model, tokenizer, PROMPTS, n=2, temperature=0.5, max_new_tokens=4)
        generate(other, tokenizer, PROMPTS, max_new_tokens=4)  # another model: the built-in loop, not recorded
    generate(tiny_model, tokenizer, PROMPTS, max_new_tokens=4)  # after the block: not recorded
    assert backend.served == 1 and backend.calls == [(3, 2, 0.5)]
    assert isinstance(routed, Generations) and len(routed.texts) == 3 and all(len(t) == 2 for t in routed.texts)


@pytest.mark.slow
def test_iterative_loop_serves_each_boundary_and_the_final_evaluation(tmp_path):
    backend = Recording()
    data = ArithmeticIterativeDataModule(num_train=6, num_val=4, batch_size=4)
    module = IterativeRPO(backbone=TinyModel(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                             intermediate_size=64), tokenizer=data.tokenizer, judge=HashJudge(),
                          iterations=2, candidates=3, max_new_tokens=6, temperature=1.0, num_heldout=4,
                          generation_backend=backend)
    trainer = L.Trainer(accelerator="cpu", default_root_dir=str(tmp_path), logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, data)
    # 2 boundaries + the final evaluation; each boundary: held-out greedy answers, then 3 candidates per prompt
    assert backend.served == 3 and backend.closed == 1
    assert backend.calls == [(4, 1, 0.0), (6, 3, 1.0), (4, 1, 0.0), (6, 3, 1.0), (4, 1, 0.0)]


def test_the_setting_parses_by_short_name(capsys, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(RUN.format(root=tmp_path))
    code, out, _ = run_main(["fit", "--config", str(config), "--model.generation_backend", "BuiltinGeneration",
                             "--print_config"], capsys)
    assert code in (0, None) and "litforge.generation.BuiltinGeneration" in out


@pytest.mark.skipif(not NO_VLLM, reason="vllm and CUDA are here")
def test_vllm_is_refused_naming_the_setting_and_the_reason():
    with pytest.raises(ConfigError) as error:
        VLLMGeneration()
    assert error.value.field == "generation_backend"
    assert vllm_unavailable() in str(error.value)
    assert "not installed" in vllm_unavailable() or "CUDA" in vllm_unavailable()


@pytest.mark.skipif(not NO_VLLM, reason="vllm and CUDA are here")
def test_vllm_refused_from_the_command_line_in_one_line(capsys, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(RUN.format(root=tmp_path))
    code, _, err = run_main(["fit", "--config", str(config), "--model.generation_backend", "VLLMGeneration"], capsys)
    lines = [line for line in err.splitlines() if line.startswith("litforge: error: ")]
    assert code == 2 and len(lines) == 1 and "generation_backend: VLLMGeneration cannot run" in lines[0]


def test_sampling_options_map_one_to_one():
    assert sampling_options(4, 64, 0.8, 0.95, ["\n\n", ""], 11, 258) == {
        "n": 4, "max_tokens": 64, "temperature": 0.8, "top_p": 0.95, "seed": 11, "stop": ["\n\n"],
        "stop_token_ids": [258], "include_stop_str_in_output": False, "skip_special_tokens": False}
    greedy = sampling_options(1, 8, 0.0, 0.5, None, 0, None)  # greedy: nucleus off, as the built-in argmax
    assert greedy["temperature"] == 0.0 and greedy["top_p"] == 1.0 and greedy["stop"] == []
    assert greedy["stop_token_ids"] == []


def test_finish_reports_as_the_builtin_loop(tokenizer):
    def ids(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    eos = tokenizer.eos_token_id
    assert finish(tokenizer, ids("42") + [eos], "stop", None, []) == ("42", ids("42"), "eos")
    assert finish(tokenizer, ids("42") + [eos], "stop", eos, []) == ("42", ids("42"), "eos")  # eos as stop token id
    assert finish(tokenizer, ids("4242"), "length", None, []) == ("4242", ids("4242"), "length")
    # vLLM's token ids run through the token that completed the stop string: cut as `generate` cuts
    assert finish(tokenizer, ids("7\nQ:"), "stop", "\nQ", ["\nQ"]) == ("7", ids("7"), "stop")


def test_policies_vllm_would_run_differently_are_refused(tiny_backbone, tokenizer):
    from litforge.plugins.position import CoPE, RoPE

    def build():
        return tiny_backbone.build(len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id,
                                   tokenizer.eos_token_id)

    plain, rope, cope = build(), build(), build()
    RoPE().attach(rope)
    CoPE(npos_max=8).attach(cope)
    refuse_unservable(plain)
    refuse_unservable(rope)
    with pytest.raises(ConfigError, match="generation_backend: the policy carries the CoPE position plugin"):
        refuse_unservable(cope)
