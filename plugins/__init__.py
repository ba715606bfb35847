"""Plugins the objectives share: position encodings, MoE upcycling, judges, System 2 programs, reversal transforms."""
