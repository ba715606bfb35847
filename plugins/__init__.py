"""Plugins the objectives share: position encodings, MoE upcycling, judges, System 2 programs, reversal transforms."""
from litforge.plugins import moe  # noqa: F401  (makes BTXMerge, SparseUpcycle, BranchTrainMerge usable in YAML)
from litforge.plugins import judges  # noqa: F401  (makes LLMJudge, AnswerJudge, ... usable in YAML)
from litforge.plugins import reversal  # noqa: F401  (makes TokenReversal, WordReversal, ... usable in YAML)
from litforge.plugins import position  # noqa: F401  (makes RoPE, NoPE, Absolute, CoPE usable in YAML)
