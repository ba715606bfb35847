"""Reference sources: where a preference objective's reference log-probs come from. YAML names them by class_path."""

from litforge.plugins.reference.adapters_disabled import AdaptersDisabled
from litforge.plugins.reference.base import ReferenceSource
from litforge.plugins.reference.frozen_copy import FrozenCopy
from litforge.plugins.reference.precomputed import PrecomputedReference

__all__ = ["AdaptersDisabled", "FrozenCopy", "PrecomputedReference", "ReferenceSource"]
