"""The one positive-int rule and the one rate rule every layer, model and trainer uses (jaxseq.checks)."""

import numpy as np
import pytest

from jaxseq.checks import check_positive_int, check_rate


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


@pytest.mark.parametrize("value", [0, 0.0, 0.5, 0.999, np.float64(0.1)])
def test_rates_in_the_half_open_unit_interval_pass(value):
    check_rate("dropout", value)


@pytest.mark.parametrize("value", [1, 1.0, -0.1, float("nan"), float("inf"), True, False, "0.1", None, [0.1]])
def test_any_other_rate_is_one_line_naming_the_argument(value):
    with pytest.raises(ValueError) as error:
        check_rate("dropout", value)
    assert str(error.value) == f"dropout must be a number in [0, 1), got {value!r}"


@pytest.mark.parametrize("value", [np.float32(0.25), np.int64(0)])
def test_a_numpy_scalar_rate_is_refused_saying_what_to_pass(value):
    """It would pass every check and then fail the first checkpoint's JSON, after training."""
    with pytest.raises(ValueError) as error:
        check_rate("dropout", value, owner="RecurrentClassifier")
    assert str(error.value) == (f"RecurrentClassifier: dropout must be a number in [0, 1), got {value!r} "
                                f"(a {type(value).__name__}: pass a Python float, which a checkpoint's "
                                "metadata can hold)")


def test_one_is_a_rate_only_where_allowed_and_the_message_says_so():
    check_rate("dropout", 1.0, one_allowed=True)
    with pytest.raises(ValueError, match=r"^GRU: dropout must be a number in \[0, 1\], got 1.5$"):
        check_rate("dropout", 1.5, owner="GRU", one_allowed=True)


def test_every_model_and_trainer_uses_the_rate_rule():
    """A string rate was a TypeError from a comparison before; now the same one line everywhere."""
    import jax.numpy as jnp

    from jaxseq.models.recurrent_classifier import RecurrentClassifier
    from jaxseq.models.transformer import ClassificationTransformer
    from jaxseq.models.word_dropout import drop_words
    from jaxseq.nn import LSTM
    from jaxseq.train.classifier import ClassifierTrainConfig

    cases = [
        (lambda: LSTM(hidden_size=4, num_layers=2, dropout="0.1"), "dropout must be a number in [0, 1], got '0.1'"),
        (lambda: RecurrentClassifier(vocab_size=10, embed_dropout="0.1"),
         "RecurrentClassifier: embed_dropout must be a number in [0, 1), got '0.1'"),
        (lambda: ClassificationTransformer(vocab_size=10, dropout=1.0),
         "ClassificationTransformer: dropout must be a number in [0, 1), got 1.0"),
        (lambda: ClassifierTrainConfig(label_smoothing="0.1"), "label_smoothing must be a number in [0, 1), got '0.1'"),
        (lambda: drop_words(None, jnp.zeros((1, 2), jnp.int32), jnp.ones((1, 2), bool), True, 1),
         "drop_words: rate must be a number in [0, 1), got True"),
    ]
    for make, message in cases:
        with pytest.raises(ValueError) as error:
            make()
        assert str(error.value) == message
