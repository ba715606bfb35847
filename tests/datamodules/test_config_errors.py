"""Synthetic datamodules refuse settings that cannot work with a ConfigError naming the field, before training."""

from __future__ import annotations

import pytest

from litforge.datamodules import (
    ArithmeticIterativeDataModule,
    ArithmeticSFTDataModule,
    BiographyReversalDataModule,
    CountingDataModule,
    FlipFlopDataModule,
    LengthBiasedPreferenceDataModule,
    LengthBiasedSFTDataModule,
    LengthInstructedDataModule,
    MixedDomainDataModule,
    SelectiveCopyDataModule,
    SelfRewardSeedDataModule,
    SymbolicReversalDataModule,
)
from litforge.errors import ConfigError

BAD = [
    (ArithmeticSFTDataModule, {"num_terms": 0}, "num_terms"),
    (ArithmeticSFTDataModule, {"min_operand": 50, "max_operand": 40}, "max_operand"),
    (ArithmeticSFTDataModule, {"num_train": 5000, "min_operand": 1, "max_operand": 9, "num_terms": 2}, "max_operand"),
    (SelfRewardSeedDataModule, {"template": "no slot"}, "template"),
    (CountingDataModule, {"num_vars": 9}, "num_vars"),
    (CountingDataModule, {"min_statements": 10, "max_statements": 5}, "max_statements"),
    (FlipFlopDataModule, {"length": 1}, "length"),
    (FlipFlopDataModule, {"p_ignore_sparse": 1.2}, "p_ignore_sparse"),
    (SelectiveCopyDataModule, {"num_tokens": 0}, "num_tokens"),
    (SelectiveCopyDataModule, {"num_tokens": 20, "length_dense": 16}, "length_dense"),
    (CountingDataModule, {"max_length": 8}, "max_length"),
    (SymbolicReversalDataModule, {"num_symbols": 0}, "num_symbols"),
    (SymbolicReversalDataModule, {"entity_length": 0}, "entity_length"),
    (SymbolicReversalDataModule, {"num_symbols": 3, "entity_length": 2, "num_pairs": 10}, "num_pairs"),
    (BiographyReversalDataModule, {"num_people": 10 ** 6}, "num_people"),
    (MixedDomainDataModule, {"domains": ["poetry"]}, "domains"),
    (MixedDomainDataModule, {"domains": []}, "domains"),
    (LengthBiasedPreferenceDataModule, {"num_topics": 27}, "num_topics"),
    (LengthBiasedPreferenceDataModule, {"min_words": 5, "max_words": 5}, "max_words"),
    (LengthBiasedPreferenceDataModule, {"long_bias": 1.5}, "long_bias"),
    (LengthBiasedPreferenceDataModule, {"error_rate": -0.1}, "error_rate"),
    (LengthBiasedSFTDataModule, {"instructed_share": 2.0}, "instructed_share"),
    (LengthInstructedDataModule, {"ratio": -1.0}, "ratio"),
    (ArithmeticIterativeDataModule, {"num_train": 0}, "num_train"),
    (ArithmeticIterativeDataModule, {"num_val": -1}, "num_val"),
    (ArithmeticIterativeDataModule, {"num_terms": 0}, "num_terms"),
    (ArithmeticIterativeDataModule, {"min_operand": 50, "max_operand": 40}, "max_operand"),
    (ArithmeticIterativeDataModule, {"prompts_per_iteration": 0}, "prompts_per_iteration"),
]


@pytest.mark.parametrize("cls, kwargs, field", BAD, ids=[f"{c.__name__}-{f}" for c, _, f in BAD])
def test_bad_settings_are_config_errors_naming_the_field(cls, kwargs, field):
    with pytest.raises(ConfigError, match=f"^{field}: ") as caught:
        cls(**kwargs).setup("fit")  # some settings only show when the task is generated, still before training
    assert caught.value.field == field
