"""System 2 programs: batched multi-step generation on one model whose last reply holds the answer (Yu et al. 2024)."""

from litforge.plugins.system2.base import System2Output, System2Program

__all__ = ["System2Output", "System2Program"]
