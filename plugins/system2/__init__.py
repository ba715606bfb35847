"""System 2 programs: batched multi-step generation on one model whose last reply holds the answer (Yu et al. 2024).
YAML names them by class_path."""

from litforge.plugins.system2.base import System2Output, System2Program
from litforge.plugins.system2.branch_solve_merge import BranchSolveMerge
from litforge.plugins.system2.chain_of_thought import ChainOfThought
from litforge.plugins.system2.direct import Direct
from litforge.plugins.system2.rephrase_and_respond import RephraseAndRespond
from litforge.plugins.system2.system2_attention import System2Attention

__all__ = ["BranchSolveMerge", "ChainOfThought", "Direct", "RephraseAndRespond", "System2Attention",
           "System2Output", "System2Program"]
