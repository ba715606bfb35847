"""Datamodules: JSONL readers and seeded synthetic tasks. Importing this package makes their short names usable in YAML."""

from litforge.datamodules.base import LMDataModule
from litforge.datamodules.sft import SFTDataModule
from litforge.datamodules.text import SyntheticTextDataModule, TextDataModule
from litforge.datamodules.domains import DomainDataModule, MixedDomainDataModule

__all__ = ["LMDataModule", "SFTDataModule", "SyntheticTextDataModule", "TextDataModule"]
__all__ += ["DomainDataModule", "MixedDomainDataModule"]
from litforge.datamodules.arithmetic import ArithmeticSFTDataModule, SelfRewardSeedDataModule
from litforge.datamodules.preference import (ArithmeticPreferenceDataModule, JSONLPreferenceDataModule,
                                             PreferenceDataModule)

__all__ += ["ArithmeticSFTDataModule", "SelfRewardSeedDataModule", "ArithmeticPreferenceDataModule",
            "JSONLPreferenceDataModule", "PreferenceDataModule"]
from litforge.datamodules.lift import (LengthBiasedPreferenceDataModule, LengthBiasedSFTDataModule,
                                       LengthInstructedDataModule)

__all__ += ["LengthBiasedPreferenceDataModule", "LengthBiasedSFTDataModule", "LengthInstructedDataModule"]
from litforge.datamodules.iterative import (ArithmeticIterativeDataModule, IterativeDataModule,
                                            JSONLIterativeDataModule)

__all__ += ["ArithmeticIterativeDataModule", "IterativeDataModule", "JSONLIterativeDataModule"]
from litforge.datamodules.reversal_tasks import (BiographyReversalDataModule, ReversalTextDataModule,
                                                 SymbolicReversalDataModule)

__all__ += ["BiographyReversalDataModule", "ReversalTextDataModule", "SymbolicReversalDataModule"]
from litforge.datamodules.cope_tasks import CountingDataModule, FlipFlopDataModule, SelectiveCopyDataModule

__all__ += ["CountingDataModule", "FlipFlopDataModule", "SelectiveCopyDataModule"]
