"""Plugins the objectives share: position encodings, MoE upcycling, judges, System 2 programs, reversal transforms."""
from litforge.plugins import moe
from litforge.plugins import judges
from litforge.plugins import reversal
from litforge.plugins import position
