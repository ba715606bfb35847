"""The default tokenizer: byte-level, built locally, so nothing is downloaded; and a byte-level BPE trained locally on
a task's own text (`trained_tokenizer`), for tasks whose words a tiny model should read as single tokens."""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from pathlib import Path

from jinja2.exceptions import TemplateError
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"

# Roles are written as plain text so the template needs no extra vocabulary; the eos token ends each turn,
# which is also where generation stops.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<' + message['role'] + '>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<assistant>\n' }}{% endif %}"
)


def byte_level_tokenizer() -> PreTrainedTokenizerFast:
    """Build the 256-byte tokenizer plus pad/bos/eos (ids 256-258) with a chat template."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet(), key=_byte_of)
    backend = Tokenizer(models.BPE(vocab={symbol: i for i, symbol in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    return _with_specials(backend)


def trained_tokenizer(corpus: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE with `vocab_size` tokens (the 256 bytes, merges learnt from `corpus`, then pad/bos/eos) and the
    byte-level tokenizer's chat template. Merges stay within a word (a run of letters, digits and underscores); every
    other character is its own token. So a frequent word becomes one token, the same one at the start of a line as
    after a space, and a text split between two words (a prompt and its continuation) tokenizes as the whole text
    does. Any other text still encodes, byte by byte, and decodes to itself. Deterministic: the same corpus gives the
    same tokenizer."""
    if vocab_size <= 259:
        raise ValueError(f"vocab_size must exceed the 256 bytes and 3 special tokens, got {vocab_size}")
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet(), key=_byte_of)
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\w+|\W"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 3, initial_alphabet=alphabet, show_progress=False,
                                  min_frequency=2)
    backend.train_from_iterator(corpus, trainer)
    if any(backend.token_to_id(symbol) is None for symbol in alphabet):  # every byte stays encodable
        raise RuntimeError("the trained BPE lost part of the byte alphabet")
    return _with_specials(backend)


def has_own_chat_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer carries a model's own chat template: any template but the byte-level tokenizer's
    plain-text roles (`CHAT_TEMPLATE`), which the miniatures never put their judge prompts through."""
    template = getattr(tokenizer, "chat_template", None)
    return bool(template) and template != CHAT_TEMPLATE


def user_turn(tokenizer: PreTrainedTokenizerBase, text: str) -> str:
    """`text` as one user message through the tokenizer's chat template, ending with the assistant's generation
    prompt (the template writes bos where its family has one: do not add another)."""
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                         tokenize=False)


def turn_end(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """What the chat template writes after an assistant message (e.g. `<end_of_turn>`), whitespace stripped; None
    when it writes nothing there or the template cannot render a user/assistant exchange."""
    marker = "\x00litforge-turn\x00"
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "x"}, {"role": "assistant", "content": marker}],
                                             tokenize=False)
    except (TemplateError, ValueError, KeyError, TypeError, IndexError):  # it insists on other roles or fields
        return None
    end = text.rpartition(marker)[2].strip() if marker in text else ""
    return end or None


_RESPONSE_ENDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def response_end_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The ids a training response ends with: eos, after the chat template's turn end when that is another token
    (Qwen's `<|im_end|>` before `<|endoftext|>`, Gemma's `<end_of_turn>` before `<eos>`), so a model trained on
    litforge's rows closes its turn the way its template does and still stops where generation stops."""
    if tokenizer not in _RESPONSE_ENDS:
        end = turn_end(tokenizer)
        ids = [] if end is None or end == tokenizer.eos_token else tokenizer(end, add_special_tokens=False)["input_ids"]
        _RESPONSE_ENDS[tokenizer] = ids + [tokenizer.eos_token_id]
    return list(_RESPONSE_ENDS[tokenizer])


def load_tokenizer(path: str | Path | None = None, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The byte-level tokenizer when `path` is None, else the tokenizer saved in a local directory."""
    if path is None:
        return byte_level_tokenizer()
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer directory {path} does not exist (litforge loads tokenizers only from disk)")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _with_specials(backend: Tokenizer) -> PreTrainedTokenizerFast:
    """A `tokenizers` backend as a transformers tokenizer with pad/bos/eos after its vocabulary, the plain-text chat
    template and right padding."""
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=PAD, bos_token=BOS, eos_token=EOS)
    tokenizer.add_special_tokens({"pad_token": PAD, "bos_token": BOS, "eos_token": EOS})
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.padding_side = "right"
    return tokenizer


def _byte_of(symbol: str) -> int:
    """The byte a ByteLevel alphabet symbol stands for (GPT-2's printable remapping of 0-255)."""
    code = ord(symbol)
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    if code in printable:
        return code
    others = [b for b in range(256) if b not in printable]
    return others[code - 256]
