"""The one positive-int rule every layer, model and trainer uses (jaxseq.checks)."""

import numpy as np
import pytest

from jaxseq.checks import check_positive_int


@pytest.mark.parametrize("value", [1, 7, 2**40])
def test_positive_python_ints_pass(value):
    check_positive_int("epochs", value)


@pytest.mark.parametrize("value", [0, -3, True, False, 1.0, "2", np.int64(3), None])
def test_everything_else_is_one_line_naming_the_argument(value):
    with pytest.raises(ValueError) as error:
        check_positive_int("epochs", value)
    assert str(error.value) == f"epochs must be a positive int, got {value!r}"


def test_none_passes_only_where_allowed_and_the_message_says_so():
    check_positive_int("checkpoint_every", None, allow_none=True)
    with pytest.raises(ValueError, match=r"^checkpoint_every must be a positive int or None, got 0$"):
        check_positive_int("checkpoint_every", 0, allow_none=True)


def test_the_owner_prefixes_the_message():
    with pytest.raises(ValueError, match=r"^RecurrentClassifier: num_layers must be a positive int, got 0$"):
        check_positive_int("num_layers", 0, owner="RecurrentClassifier")


def test_every_trainer_and_model_uses_the_rule():
    """A bool count is refused everywhere (the captioner used to take True as 1)."""
    from jaxseq.models.captioning import CaptioningRNN
    from jaxseq.nn import LSTM

    with pytest.raises(ValueError, match="hidden_dim must be a positive int, got True"):
        CaptioningRNN(10, wordvec_dim=4, hidden_dim=True)
    with pytest.raises(ValueError, match="num_layers must be a positive int, got True"):
        LSTM(hidden_size=4, num_layers=True)
