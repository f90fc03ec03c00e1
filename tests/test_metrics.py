"""Classification metrics: accuracy, Matthews correlation, confusion matrix."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxseq.metrics import accuracy, confusion_matrix, matthews_corrcoef


def test_confusion_matrix_layout():
    m = confusion_matrix([0, 0, 1, 1, 1], [0, 1, 1, 1, 0])
    np.testing.assert_array_equal(m, [[1, 1], [1, 2]])  # [[tn, fp], [fn, tp]]


def test_mcc_known_values():
    assert matthews_corrcoef([0, 1, 0, 1], [0, 1, 0, 1]) == 1.0
    assert matthews_corrcoef([0, 1, 0, 1], [1, 0, 1, 0]) == -1.0
    assert matthews_corrcoef([0, 1, 1, 1], [1, 1, 1, 1]) == 0.0  # constant predictor
    tp, tn, fp, fn = 6, 3, 1, 2
    truth = [1] * tp + [0] * tn + [0] * fp + [1] * fn
    pred = [1] * tp + [0] * tn + [1] * fp + [0] * fn
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert matthews_corrcoef(truth, pred) == pytest.approx(expected)
    assert accuracy(truth, pred) == pytest.approx(9 / 12)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=60))
def test_mcc_equals_pearson_correlation_of_labels(pairs):
    truth, pred = map(np.array, zip(*pairs))
    mcc = matthews_corrcoef(truth, pred)
    assert -1.0 <= mcc <= 1.0
    if truth.std() > 0 and pred.std() > 0:
        assert mcc == pytest.approx(np.corrcoef(truth, pred)[0, 1], abs=1e-12)
    else:
        assert mcc == 0.0


def test_bad_labels_are_rejected():
    with pytest.raises(ValueError, match="y_pred must hold only 0/1 labels, found 2"):
        accuracy([0, 1], [0, 2])
    with pytest.raises(ValueError, match="y_true has shape"):
        matthews_corrcoef([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])
