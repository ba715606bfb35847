"""Consistency filters: unsupervised choice of distillation targets among System 2 outputs (Yu et al. 2024).
YAML names them by class_path; OracleFilter reads labels and is a control only."""

from litforge.plugins.consistency.all_of import AllOf
from litforge.plugins.consistency.base import ConsistencyFilter
from litforge.plugins.consistency.no_filter import NoFilter
from litforge.plugins.consistency.oracle import OracleFilter
from litforge.plugins.consistency.self_consistency import SelfConsistency
from litforge.plugins.consistency.swap_consistency import SwapConsistency

__all__ = ["AllOf", "ConsistencyFilter", "NoFilter", "OracleFilter", "SelfConsistency", "SwapConsistency"]
