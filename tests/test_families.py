"""Real model families through `LocalCheckpoint`: tiny random Llama, Qwen2, Qwen3, Mistral, Gemma 2, Gemma 3 and
Phi-3 checkpoints (tests/family_helpers.py) train with SFT and DPO+NLL, take the position plugins or refuse them by
name, export to directories plain transformers loads with equal logits, and get their chat templates applied exactly
as `apply_chat_template` does."""

from __future__ import annotations

import json
import math

import pytest
import torch
from family_helpers import FAMILIES, family_checkpoint
from litforge.datamodules import JSONLPreferenceDataModule, SFTDataModule
from litforge.lightning_modules import DPONLL, CausalLM, CoPELM
from litforge.plugins.position import Absolute, CoPE, NoPE
from transformers import AutoModelForCausalLM

from litforge.backbones import LocalCheckpoint
from litforge.checkpoint import checkpoint_metadata, export
from litforge.errors import ConfigError
from litforge.shared_prompt import share_prompts, shared_layout_fits
from litforge.tokenizer import load_tokenizer

NAMES = list(FAMILIES)
CHATS = [
    [{"role": "user", "content": "What is two plus three?"}, {"role": "assistant", "content": "2+3=5"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Why is the cat red?"},
     {"role": "assistant", "content": "Because the dog sat on a small blue mat and ran."}],
]
PAIRS = [
    {"prompt": [{"role": "user", "content": "What is one plus one?"}], "chosen": "1+1=2", "rejected": "1+1=3 no"},
    {"prompt": [{"role": "user", "content": "Tell me a small green answer, please."}],
     "chosen": "Yes: a small green cat sat.", "rejected": "No."},
]


def sft_data(folder, tmp_path) -> SFTDataModule:
    path = tmp_path / "sft.jsonl"
    path.write_text("".join(json.dumps({"messages": chat}) + "\n" for chat in CHATS))
    data = SFTDataModule(train_path=str(path), tokenizer=str(folder), batch_size=2, max_length=96)
    data.setup("fit")
    return data


def pair_data(folder, tmp_path) -> JSONLPreferenceDataModule:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(pair) + "\n" for pair in PAIRS))
    data = JSONLPreferenceDataModule(train_path=str(path), tokenizer=str(folder), batch_size=2, max_length=96)
    data.setup("fit")
    return data


def build(cls, folder, data, **kwargs):
    module = cls(backbone=LocalCheckpoint(str(folder)), tokenizer=data.tokenizer, **kwargs)
    module.configure_model()
    return module


def template_ids(tokenizer, messages, add_generation_prompt=False) -> list[int]:
    """The tokenizer's own `apply_chat_template` token ids."""
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=True,
                                              return_dict=True)["input_ids"])


@pytest.mark.parametrize("name", NAMES)
def test_chat_template_is_applied_as_the_tokenizer_does(name, tmp_path_factory, tmp_path):
    """SFT and preference prompts are the tokenizer's own `apply_chat_template` ids; the response ends with eos,
    which ends the turn in these tokenizers, so a conversation differs from the template's at most by what the
    template writes after the turn (a newline)."""
    data = sft_data(family_checkpoint(name, tmp_path_factory), tmp_path)
    tokenizer = data.tokenizer
    for chat, sample in zip(CHATS, data.load("train")):
        prompt = template_ids(tokenizer, chat[:-1], add_generation_prompt=True)
        full = template_ids(tokenizer, chat)
        turn_end = tokenizer(FAMILIES[name].turn_end, add_special_tokens=False)["input_ids"]
        assert sample["input_ids"][:len(prompt)] == prompt
        assert sample["input_ids"] + turn_end == full
        assert sample["labels"][len(prompt) - 1] == -100 and sample["labels"][len(prompt)] == full[len(prompt)]
    pairs = pair_data(family_checkpoint(name, tmp_path_factory), tmp_path).load("train")
    for pair, sample in zip(PAIRS, pairs):
        prompt = template_ids(tokenizer, pair["prompt"], add_generation_prompt=True)
        assert sample["chosen_input_ids"][:len(prompt)] == prompt
        assert sample["chosen_labels"][:len(prompt)] == [-100] * len(prompt)


@pytest.mark.parametrize("name", NAMES)
def test_sft_step_trains(name, tmp_path_factory, tmp_path):
    folder = family_checkpoint(name, tmp_path_factory)
    data = sft_data(folder, tmp_path)
    module = build(CausalLM, folder, data)
    batch = next(iter(data.train_dataloader()))
    loss = module.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss) and 4 < loss.item() < 8  # about log(420) = 6.0 for random weights
    assert all(p.grad is not None for p in module.model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", NAMES)
def test_dpo_nll_step_shared_prompt_equals_concatenated(name, tmp_path_factory, tmp_path):
    """Whichever forward the module picks, the log-probs are those of the plain 2B-row forward."""
    folder = family_checkpoint(name, tmp_path_factory)
    data = pair_data(folder, tmp_path)
    module = build(DPONLL, folder, data)
    batch = next(iter(data.train_dataloader()))
    shared = module.pair_logprobs(module.model, batch)
    module.shared_prompt = False
    plain = module.pair_logprobs(module.model, batch)
    torch.testing.assert_close(shared.chosen, plain.chosen, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shared.rejected, plain.rejected, rtol=1e-5, atol=1e-5)
    # Gemma 2's window of 8 binds on these rows: the module takes the concatenated forward there
    fits = shared_layout_fits(module.model, batch["input_ids"].size(1))
    assert fits == (name != "gemma2")
    module.shared_prompt = True
    loss = module.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert module.model.get_input_embeddings().weight.grad.abs().sum() > 0


def family_model(folder):
    tokenizer = load_tokenizer(folder)
    model = LocalCheckpoint(str(folder)).build(len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id,
                                               tokenizer.eos_token_id)
    return model, tokenizer


# what each family refuses, and the words of the refusal
REFUSED = {("gemma2", "CoPE"): "soft-caps"}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("plugin", [CoPE(npos_max=8), NoPE(), Absolute()], ids=["CoPE", "NoPE", "Absolute"])
def test_position_plugins_attach_or_refuse_by_name(name, plugin, tmp_path_factory):
    model, tokenizer = family_model(family_checkpoint(name, tmp_path_factory))
    ids = torch.tensor([tokenizer("The cat sat on a mat and ran to the dog.")["input_ids"]])
    before = model(ids).logits
    refusal = REFUSED.get((name, type(plugin).__name__))
    if refusal is not None:
        with pytest.raises(ConfigError, match=refusal):
            plugin.attach(model)
        return
    plugin.attach(model)
    after = model(ids).logits
    assert after.shape == before.shape and torch.isfinite(after).all()
    assert not torch.allclose(after, before)  # RoPE is off (and, for Absolute, positions are added)
    # RoPE sees relative positions, so shifting them all changes nothing; scrambled ones change RoPE's logits. NoPE and
    # CoPE ignore position ids altogether; Absolute reads them as absolute positions, so a shift changes its logits.
    shifted = torch.arange(ids.size(1))[None] + 3
    scrambled = torch.randperm(ids.size(1))[None]
    if isinstance(plugin, Absolute):
        assert not torch.allclose(model(ids, position_ids=shifted).logits, after)
    else:
        torch.testing.assert_close(model(ids, position_ids=scrambled).logits, after)


@pytest.mark.parametrize("name", [n for n in NAMES if (n, "CoPE") not in REFUSED])
def test_cope_dpo_step_shared_equals_concatenated(name, tmp_path_factory, tmp_path):
    folder = family_checkpoint(name, tmp_path_factory)
    data = pair_data(folder, tmp_path)
    module = build(DPONLL, folder, data, position=CoPE(npos_max=8))
    with torch.no_grad():  # a non-zero table, so the positions matter
        for layer in module.model.modules():
            if hasattr(layer, "cope"):
                layer.cope.pos_emb.normal_()
    batch = next(iter(data.train_dataloader()))
    assert share_prompts(batch) is not None
    shared = module.pair_logprobs(module.model, batch)
    module.shared_prompt = False
    plain = module.pair_logprobs(module.model, batch)
    torch.testing.assert_close(shared.chosen, plain.chosen, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shared.rejected, plain.rejected, rtol=1e-5, atol=1e-5)


def trained_checkpoint(cls, folder, data, path, **kwargs):
    """A litforge checkpoint file of a module after one SGD step (so the weights are not the saved ones)."""
    module = build(cls, folder, data, **kwargs)
    loss = module.training_step(next(iter(data.train_dataloader())), 0)
    loss.backward()
    with torch.no_grad():
        for parameter in module.model.parameters():
            if parameter.grad is not None:
                parameter -= 0.1 * parameter.grad
    torch.save({"state_dict": module.state_dict(), "litforge": checkpoint_metadata(module.model, module.tokenizer)},
               path)
    return module


@pytest.mark.parametrize("name", NAMES)
def test_export_loads_in_plain_transformers_with_equal_logits(name, tmp_path_factory, tmp_path):
    folder = family_checkpoint(name, tmp_path_factory)
    data = sft_data(folder, tmp_path)
    module = trained_checkpoint(CausalLM, folder, data, tmp_path / "last.ckpt")
    out = export(tmp_path / "last.ckpt", tmp_path / "export")
    loaded = AutoModelForCausalLM.from_pretrained(out, local_files_only=True).eval()
    assert type(loaded) is type(module.model)
    ids = next(iter(data.train_dataloader()))["input_ids"]
    module.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, module.model(ids).logits, rtol=1e-5, atol=1e-5)
    tokenizer = load_tokenizer(out)
    assert tokenizer.chat_template == data.tokenizer.chat_template
    assert tokenizer.eos_token == FAMILIES[name].eos


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NAMES if (n, "CoPE") not in REFUSED])
def test_cope_export_reloads_through_local_checkpoint(name, tmp_path_factory, tmp_path):
    folder = family_checkpoint(name, tmp_path_factory)
    data = sft_data(folder, tmp_path)
    module = trained_checkpoint(CoPELM, folder, data, tmp_path / "last.ckpt", position=CoPE(npos_max=8))
    out = export(tmp_path / "last.ckpt", tmp_path / "export")
    loaded = LocalCheckpoint(str(out)).build(len(data.tokenizer), data.tokenizer.pad_token_id, None, None).eval()
    ids = next(iter(data.train_dataloader()))["input_ids"]
    module.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, module.model(ids).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_greedy_generation_is_the_same_batched_alone_and_without_cache(name, tmp_path_factory):
    """The KV-cache generator the iterative objectives and judges use: left padding, sliding windows (Gemma 2's
    binds here) and each family's cache give the tokens of a plain recomputation, one prompt at a time."""
    from litforge.generation import generate

    model, tokenizer = family_model(family_checkpoint(name, tmp_path_factory))
    prompts = ["The cat sat on a mat and ran to the dog because", "Why"]
    batched = generate(model, tokenizer, prompts, max_new_tokens=10, temperature=0).token_ids
    alone = [generate(model, tokenizer, [prompt], max_new_tokens=10, temperature=0, use_cache=False).token_ids[0]
             for prompt in prompts]
    assert batched == alone and all(len(ids[0]) > 0 for ids in batched)


def test_cope_reads_the_sliding_window_of_each_layer(tmp_path_factory):
    """Gemma 3 with two sliding layers of window 4: a token sees 2 x 3 tokens back, so with CoPE (no position ids)
    the last token's logits are those of the last 7 tokens alone."""
    folder = family_checkpoint("gemma3", tmp_path_factory)
    model = AutoModelForCausalLM.from_pretrained(folder, sliding_window=4,
                                                 layer_types=["sliding_attention", "sliding_attention"])
    CoPE(npos_max=8).attach(model)
    with torch.no_grad():
        for layer in model.modules():
            if hasattr(layer, "cope"):
                layer.cope.pos_emb.normal_()
        tokenizer = load_tokenizer(folder)
        ids = torch.tensor([tokenizer("The cat sat on a mat and ran to the dog because")["input_ids"]])
        assert ids.size(1) > 8
        full, last = model(ids).logits[0, -1], model(ids[:, -7:]).logits[0, -1]
        torch.testing.assert_close(full, last)
        assert not torch.allclose(full, model(ids[:, -6:]).logits[0, -1])  # one token fewer: the 7th does count


@pytest.mark.parametrize("name", NAMES)
def test_lora_dpo_step_with_adapters_disabled_reference(name, tmp_path_factory, tmp_path):
    """LoRA on each family's attention (Phi-3's fused `qkv_proj` must be named: peft has no default for it); at the
    first step the adapters are zero, so policy and reference agree and the DPO term is log 2."""
    from litforge.plugins.reference import AdaptersDisabled

    folder = family_checkpoint(name, tmp_path_factory)
    targets = ["qkv_proj", "o_proj"] if name == "phi3" else ["q_proj", "v_proj"]
    data = pair_data(folder, tmp_path)
    module = build(DPONLL, folder, data, alpha=0.0, reference=AdaptersDisabled(), lora={"r": 4, "target_modules": targets})
    batch = next(iter(data.train_dataloader()))
    loss = module.training_step(batch, 0)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-5)
    loss.backward()
    trained = [p for p in module.model.parameters() if p.requires_grad]
    assert trained and all("lora_" in n for n, p in module.model.named_parameters() if p.requires_grad)


def test_gemma2_takes_cope_once_soft_capping_is_off(tmp_path_factory):
    """The refusal names its cause; without attention soft-capping the same checkpoint takes CoPE."""
    folder = family_checkpoint("gemma2", tmp_path_factory)
    model, tokenizer = family_model(folder)
    assert model.config._attn_implementation == "eager"  # LocalCheckpoint's default: the family's own attention
    with pytest.raises(ConfigError, match=r"^position: CoPE refuses Gemma2ForCausalLM: it soft-caps attention logits "
                                          r"\(attn_logit_softcapping=50.0\)"):
        CoPE().attach(model)
    uncapped = AutoModelForCausalLM.from_pretrained(folder, attn_logit_softcapping=None)
    CoPE(npos_max=8).attach(uncapped)
    ids = torch.tensor([tokenizer("The cat sat on a mat.")["input_ids"]])
    assert torch.isfinite(uncapped(ids).logits).all()
