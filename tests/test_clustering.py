"""keras_triplet.metrics.clustering: NMI and AMI against scikit-learn on random
labellings, k-means on both backends, and NMI / AMI of embeddings against
pytorch-metric-learning 2.9's AccuracyCalculator (tests/fixtures/pml_clustering.json,
written by tools/fixtures_pml_clustering.py)."""

import json
import os

import numpy as np
import pytest
from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

from keras_triplet.metrics import clustering

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
JSON = os.path.join(FIXTURES, "pml_clustering.json")


@pytest.mark.parametrize("seed", range(6))
def test_scores_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    for _ in range(20):
        n = int(rng.integers(1, 120))
        a = rng.integers(0, rng.integers(1, 9), n)
        b = a.copy() if rng.random() < 0.2 else rng.integers(0, rng.integers(1, 9), n)
        if rng.random() < 0.3:  # partly agreeing labellings
            b = np.where(rng.random(n) < 0.7, a, b)
        assert clustering.normalized_mutual_info(a, b) == pytest.approx(
            normalized_mutual_info_score(a, b), abs=1e-10
        )
        assert clustering.adjusted_mutual_info(a, b) == pytest.approx(
            adjusted_mutual_info_score(a, b), abs=1e-10
        )


def test_degenerate_labellings():
    assert clustering.normalized_mutual_info([3, 3, 3], [1, 1, 1]) == 1.0
    assert clustering.adjusted_mutual_info([3, 3, 3], [1, 1, 1]) == 1.0
    assert clustering.adjusted_mutual_info([0, 1, 2], [1, 1, 1]) == 0.0
    assert clustering.normalized_mutual_info(["a", "b"], [0, 1]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="one cluster per item"):
        clustering.normalized_mutual_info([0, 1], [0])


def _separated(seed, sizes=(20, 35, 15, 30), dim=8):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)) * 7 + 3, sizes)
    centres = 12.0 * rng.normal(size=(len(sizes), dim))
    return (centres[np.repeat(np.arange(len(sizes)), sizes)] + rng.normal(size=(sum(sizes), dim))).astype(
        "float32"
    ), labels


@pytest.mark.parametrize("backend", ["sklearn", "faiss"])
def test_kmeans_finds_separated_classes(backend):
    pytest.importorskip(backend)
    x, y = _separated(0)
    m = clustering.clustering_metrics(x, y, backend=backend)
    assert m == {"nmi": pytest.approx(1.0), "ami": pytest.approx(1.0), "num_clusters": 4}
    assert clustering.kmeans_clusters(x, 2, backend=backend).shape == (100,)


def test_bad_arguments():
    x, y = _separated(1)
    with pytest.raises(ValueError, match="Unknown k-means backend"):
        clustering.kmeans_clusters(x, 3, backend="scipy")
    with pytest.raises(ValueError, match="n_clusters"):
        clustering.kmeans_clusters(x, 0)
    with pytest.raises(ValueError, match="100"):
        clustering.clustering_metrics(x, y[:5])


if not os.path.exists(JSON):
    pytest.fail(
        "pytorch-metric-learning clustering fixtures missing (tests/fixtures/pml_clustering.json; "
        "regenerate with tools/fixtures_pml_clustering.py)",
        pytrace=False,
    )
with open(JSON) as f:
    SPEC = json.load(f)


@pytest.mark.parametrize("case", SPEC["sets"], ids=lambda c: c["name"])
@pytest.mark.parametrize("backend", ["sklearn", "faiss"])
def test_matches_pytorch_metric_learning(case, backend):
    pytest.importorskip(backend)
    with np.load(os.path.join(FIXTURES, SPEC["inputs_file"]), allow_pickle=False) as f:
        x, y = f[f"embeddings_{case['name']}"], f[f"labels_{case['name']}"]
    got = clustering.clustering_metrics(x, y, backend=backend)
    assert got["num_clusters"] == case["num_clusters"]
    assert got["nmi"] == pytest.approx(case["NMI"], abs=1e-6)
    assert got["ami"] == pytest.approx(case["AMI"], abs=1e-6)
