"""Datamodules: JSONL readers and seeded synthetic tasks. Importing this package makes their short names usable in YAML."""

from litforge.datamodules.base import LMDataModule
from litforge.datamodules.sft import SFTDataModule
from litforge.datamodules.text import SyntheticTextDataModule, TextDataModule
from litforge.datamodules.domains import DomainDataModule, MixedDomainDataModule

__all__ = ["LMDataModule", "SFTDataModule", "SyntheticTextDataModule", "TextDataModule"]
__all__ += ["DomainDataModule", "MixedDomainDataModule"]
