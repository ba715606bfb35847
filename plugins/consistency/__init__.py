"""Consistency filters: unsupervised choice of distillation targets among System 2 outputs (Yu et al. 2024)."""

from litforge.plugins.consistency.base import ConsistencyFilter

__all__ = ["ConsistencyFilter"]
