"""nas.supernet.predictor: ridge regression on one-hot choices, fitted on supernet scores."""
import numpy as np
import pytest

from nas.supernet.predictor import AccuracyPredictor, one_hot
from search_spaces.space import get_space


def test_one_hot_has_one_column_per_option():
    X = one_hot([[0, 2], [1, 0]], (2, 3))
    assert X.tolist() == [[1, 0, 0, 0, 1], [0, 1, 1, 0, 0]]
    with pytest.raises(ValueError, match="out of its choices"):
        one_hot([[2, 0]], (2, 3))


def test_an_additive_score_is_recovered_and_its_noise_averaged_out():
    """Scores that add one value per choice, plus noise as large as the spread between networks:
    the predictor ranks unseen networks by the true values better than the noisy scores do."""
    space = get_space("nasbench_macro")
    rng = np.random.default_rng(0)
    effect = rng.normal(size=(8, 3))
    truth = lambda v: effect[np.arange(8), v].sum(axis=1)  # noqa: E731
    seen, unseen = rng.integers(0, 3, size=(300, 8)), rng.integers(0, 3, size=(2000, 8))
    noisy = truth(seen) + rng.normal(scale=truth(seen).std(), size=300)
    predictor = AccuracyPredictor.for_space(space, seen, noisy)
    agreement = np.corrcoef(predictor.predict(unseen), truth(unseen))[0, 1]
    assert agreement > 0.95 > np.corrcoef(noisy, truth(seen))[0, 1]
    exact = AccuracyPredictor.fit(predictor.choices, seen, truth(seen), alphas=(1e-9,))
    assert np.allclose(exact.predict(unseen), truth(unseen), atol=1e-6)


def test_too_few_scores_are_refused():
    with pytest.raises(ValueError, match="at least 3 scored vectors"):
        AccuracyPredictor.fit((3,) * 8, [[0] * 8, [1] * 8], [0.5, 0.6])
