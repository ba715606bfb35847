"""Every choice a config makes by class_path, one contract per folder: position encodings, MoE upcyclers, judges,
pair rules, reference sources, length-limit rules, reversal transforms, System 2 programs, consistency filters and
tool-use programs."""
from litforge.plugins import (consistency, judges, length, moe, pair_rules, position, reference, reversal, system2,
                              tools)

__all__ = ["consistency", "judges", "length", "moe", "pair_rules", "position", "reference", "reversal", "system2",
           "tools"]
