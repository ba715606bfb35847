"""Domain data for Branch-Train-MiX: the domains a mixed datamodule may name."""

from __future__ import annotations

import pytest
from litforge.datamodules import MixedDomainDataModule

from litforge.errors import ConfigError

BAD_SETTINGS = [
    (MixedDomainDataModule, {"domains": ["poetry"]}, "domains"),
    (MixedDomainDataModule, {"domains": []}, "domains"),
]


@pytest.mark.parametrize("cls, kwargs, field", BAD_SETTINGS, ids=[f"{c.__name__}-{f}" for c, _, f in BAD_SETTINGS])
def test_bad_settings_are_config_errors_naming_the_field(cls, kwargs, field):
    with pytest.raises(ConfigError, match=f"^{field}: ") as caught:
        cls(**kwargs).setup("fit")  # some settings only show when the task is generated, still before training
    assert caught.value.field == field
