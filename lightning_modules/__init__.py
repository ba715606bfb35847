"""One LightningModule per objective. Importing this package makes their short names usable in YAML."""

from litforge.lightning_modules.causal_lm import CausalLM
from litforge.lightning_modules.cope_lm import CoPELM
from litforge.lightning_modules.cringe import PairwiseCringe
from litforge.lightning_modules.dpo_nll import DPONLL
from litforge.lightning_modules.iterative_rpo import IterativeCringe, IterativeRPO
from litforge.lightning_modules.lift_dpo import LiftDPO
from litforge.lightning_modules.moe_lm import MoECausalLM
from litforge.lightning_modules.preference import PreferenceModule
from litforge.lightning_modules.reverse_lm import ReverseLM
from litforge.lightning_modules.self_reward import SelfRewardSeed, SelfRewarding
from litforge.lightning_modules.system2_distill import System2Distillation
from litforge.lightning_modules.system2_inference import System2Inference
from litforge.lightning_modules.tool_inference import ToolInference

__all__ = ["CausalLM", "CoPELM", "DPONLL", "IterativeCringe", "IterativeRPO", "LiftDPO", "MoECausalLM",
           "PairwiseCringe", "PreferenceModule", "ReverseLM", "SelfRewardSeed", "SelfRewarding", "System2Distillation",
           "System2Inference", "ToolInference"]
