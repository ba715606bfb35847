"""One LightningModule per objective. Importing this package makes their short names usable in YAML."""

from litforge.lightning_modules.causal_lm import CausalLM
from litforge.lightning_modules.moe_lm import MoECausalLM

__all__ = ["CausalLM"]
__all__ += ["MoECausalLM"]
from litforge.lightning_modules.preference import PreferenceModule
from litforge.lightning_modules.dpo_nll import DPONLL
from litforge.lightning_modules.cringe import PairwiseCringe

__all__ += ["PreferenceModule", "DPONLL", "PairwiseCringe"]
from litforge.lightning_modules.iterative_rpo import IterativeCringe, IterativeRPO
from litforge.lightning_modules.self_reward import SelfRewarding

__all__ += ["IterativeCringe", "IterativeRPO", "SelfRewarding"]
from litforge.lightning_modules.lift_dpo import LiftDPO

__all__ += ["LiftDPO"]
from litforge.lightning_modules.reverse_lm import ReverseLM

__all__ += ["ReverseLM"]
from litforge.lightning_modules.cope_lm import CoPELM

__all__ += ["CoPELM"]
