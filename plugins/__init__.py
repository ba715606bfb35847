"""Every choice a config makes by class_path, one contract per folder: position encodings, MoE upcyclers, judges,
pair rules, reference sources, length-limit rules and reversal transforms."""
from litforge.plugins import judges, length, moe, pair_rules, position, reference, reversal

__all__ = ["judges", "length", "moe", "pair_rules", "position", "reference", "reversal"]
