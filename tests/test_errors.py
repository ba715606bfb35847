"""User errors survive a trip between processes (a spawned worker raising one hands it to its parent by pickle)."""

import pickle

import pytest

from litforge.data import DataError
from litforge.errors import CheckpointError, ConfigError, UserError, require


@pytest.mark.parametrize("error", [ConfigError("beta", "must be > 0, got -1"),
                                   CheckpointError("runs/x/last.ckpt", "does not exist"), UserError("bad input"),
                                   DataError("data/train.jsonl", 2, "response", "missing")])
def test_a_user_error_pickles_with_its_fields_and_message(error):
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error) and vars(copy) == vars(error)


def test_require_names_the_field():
    require(True, "beta", "unused")
    with pytest.raises(ConfigError, match=r"^beta: must be > 0, got -1$") as caught:
        require(False, "beta", "must be > 0, got -1")
    assert caught.value.field == "beta"
