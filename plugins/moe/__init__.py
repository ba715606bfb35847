"""Mixture-of-experts plugins: Branch-Train-MiX merge, sparse upcycling, Branch-Train-Merge averaging."""

from litforge.plugins.moe.base import Upcycler
from litforge.plugins.moe.btm import BranchTrainMerge
from litforge.plugins.moe.btx import BTXMerge
from litforge.plugins.moe.sparse_upcycle import SparseUpcycle

__all__ = ["BTXMerge", "BranchTrainMerge", "SparseUpcycle", "Upcycler"]
