"""Datamodules: file and `datasets` readers and seeded synthetic tasks.

Importing the package makes their short names work in YAML.
"""

from litforge.datamodules.arithmetic_data import (ArithmeticPreferenceDataModule, ArithmeticSFTDataModule,
                                                  SelfRewardSeedDataModule)
from litforge.datamodules.base import LMDataModule
from litforge.datamodules.cope_data import CountingDataModule, FlipFlopDataModule, SelectiveCopyDataModule
from litforge.datamodules.domains import DomainDataModule, MixedDomainDataModule
from litforge.datamodules.iterative import ArithmeticIterativeDataModule, IterativeDataModule, JSONLIterativeDataModule
from litforge.datamodules.length_biased import LengthBiasedPreferenceDataModule, LengthBiasedSFTDataModule
from litforge.datamodules.lift import LengthInstructedDataModule
from litforge.datamodules.preference import JSONLPreferenceDataModule, PreferenceDataModule
from litforge.datamodules.reversal_tasks import (BiographyReversalDataModule, ReversalTextDataModule,
                                                 SymbolicReversalDataModule)
from litforge.datamodules.sft import SFTDataModule
from litforge.datamodules.system2_distill import System2DistillDataModule, System2SeedDataModule
from litforge.datamodules.system2_inputs import System2InputsDataModule
from litforge.datamodules.system2_tasks import BSMTask, CoTTask, RaRTask, S2ATask, System2Task
from litforge.datamodules.text import SyntheticTextDataModule, TextDataModule
from litforge.datamodules.tool_data import ToolEvalDataModule, ToolSelectDataModule, ToolSFTDataModule
from litforge.datamodules.tool_tasks import ToolTask

__all__ = ["ArithmeticIterativeDataModule", "ArithmeticPreferenceDataModule", "ArithmeticSFTDataModule", "BSMTask",
           "BiographyReversalDataModule", "CoTTask", "CountingDataModule", "DomainDataModule", "FlipFlopDataModule",
           "IterativeDataModule", "JSONLIterativeDataModule", "JSONLPreferenceDataModule", "LMDataModule",
           "LengthBiasedPreferenceDataModule", "LengthBiasedSFTDataModule", "LengthInstructedDataModule",
           "MixedDomainDataModule", "PreferenceDataModule", "RaRTask", "ReversalTextDataModule", "S2ATask",
           "SFTDataModule", "SelectiveCopyDataModule", "SelfRewardSeedDataModule", "SymbolicReversalDataModule",
           "SyntheticTextDataModule", "System2DistillDataModule", "System2InputsDataModule", "System2SeedDataModule",
           "System2Task", "TextDataModule", "ToolEvalDataModule", "ToolSFTDataModule", "ToolSelectDataModule",
           "ToolTask"]
