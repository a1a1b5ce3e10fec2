"""keras_triplet.metrics.matching: the nearest-neighbour matching curve, against a
brute-force count at every threshold, and the cutpoint choice."""

import numpy as np
import pytest

from keras_triplet.metrics import matching


def _brute(distances, correct, t):
    acc = distances <= t
    tp, fp = np.sum(acc & correct), np.sum(acc & ~correct)
    fn, tn = np.sum(~acc & correct), np.sum(~acc & ~correct)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "accuracy": (tp + tn) / distances.size,
        "far": fp / (fp + tn) if fp + tn else 0.0,
        "frr": fn / (tp + fn) if tp + fn else 0.0,
    }


@pytest.mark.parametrize("seed", range(4))
def test_curve_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    distances = np.round(rng.random(n), 1)  # ties on purpose
    correct = rng.random(n) < [0.0, 0.3, 0.7, 1.0][seed]
    thresholds, curve = matching.matching_curve(distances, correct)
    np.testing.assert_array_equal(thresholds, np.unique(distances))
    for i, t in enumerate(thresholds):
        want = _brute(distances, correct, t)
        got = matching.matching_metrics(distances, correct, t)
        for name in matching.MATCHING_METRICS:
            assert curve[name][i] == pytest.approx(want[name]), (name, t)
            assert got[name] == pytest.approx(want[name]), (name, t)
    below = matching.matching_metrics(distances, correct, -1.0)  # nothing accepted
    assert below["precision"] == 1.0 and below["far"] == 0.0 and below["tp"] == 0


def test_cutpoints_meet_their_targets():
    rng = np.random.default_rng(7)
    distances = rng.random(200)
    correct = rng.random(200) < 1.0 - distances  # far neighbours are wrong more often
    thresholds, curve = matching.matching_curve(distances, correct)
    targets = {"precision": 0.9, "recall": 0.5, "far": 0.1, "frr": 0.2, "accuracy": 0.6}
    cut, unmet = matching.choose_cutpoints(thresholds, curve, "f1", targets)
    assert unmet == []
    for name, target in targets.items():
        value = cut[name][name]
        assert value <= target if name in ("far", "frr") else value >= target
        at = np.flatnonzero(thresholds == cut[name]["distance"])[0]
        # The choice is extreme: the next threshold in the chosen direction misses the target.
        step = -1 if name in ("recall", "frr") else 1
        if 0 <= at + step < thresholds.size:
            nxt = curve[name][at + step]
            assert not (nxt <= target if name in ("far", "frr") else nxt >= target), name
    assert cut["optimal"]["f1"] == pytest.approx(curve["f1"].max())


def test_unmet_target_and_bad_names():
    thresholds, curve = matching.matching_curve([0.1, 0.2], [False, True])
    cut, unmet = matching.choose_cutpoints(thresholds, curve, "precision", {"precision": 1.01})
    assert unmet == ["precision"] and list(cut) == ["optimal"]
    with pytest.raises(ValueError, match="Unknown matching target 'prec'"):
        matching.choose_cutpoints(thresholds, curve, "f1", {"prec": 0.9})
    with pytest.raises(ValueError, match="error rate"):
        matching.choose_cutpoints(thresholds, curve, "far")
    with pytest.raises(ValueError, match="one flag per query"):
        matching.matching_curve([0.1, 0.2], [True])
    with pytest.raises(ValueError, match="NaN"):
        matching.matching_curve([np.nan], [True])
