"""Golden NMI / AMI from the real pytorch-metric-learning (PML) 2.9 AccuracyCalculator.

Run inside the reference environment (see tools/make_reference_envs.sh):

    .venv-pml/bin/python tools/fixtures_pml_clustering.py

Writes, under tests/fixtures/:

- pml_clustering_inputs.npz  `embeddings_<name>` float32 [N, D], `labels_<name>` int64 [N].
- pml_clustering.json        {"versions", "settings", "sets": [...]}: per set its name,
                             n, dim, num_clusters, blobs, and PML's "NMI" and "AMI".

PML clusters with faiss k-means into as many clusters as there are labels, then scores
with scikit-learn. A k-means result depends on its initialisation, so every set is made of
well-separated Gaussian blobs, as many as there are labels, where a k-means that starts
with one centroid in each blob finds the blobs. PML's default (`FaissKMeans(niter=20)`,
one random initialisation) sometimes starts with two centroids in one blob and stays
there, so the fixtures pass PML's own `FaissKMeans(niter=20, nredo=100)` (the best of 100
initialisations; `default_found_blobs` says whether the default one did too), and the
script asserts that PML's clustering is exactly the blobs (so our k-means,
scikit-learn's or faiss', must find the same clusters). The labels are not the blobs:
some items carry another class's label, some classes share a blob and others are split
over two, so NMI and AMI are not trivially 1.
"""

import json
import os
import sys

import faiss
import numpy as np
import pytorch_metric_learning
import sklearn
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import FaissKMeans
from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixtures_tfa import save_npz  # noqa: E402  (does not import TensorFlow)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures")

# name, blob sizes, dim, fraction of items relabelled at random, seed, layout
SPECS = [
    ("exact", [30, 30, 30, 30], 8, 0.0, 21, "labels = blobs"),
    ("noisy", [40, 25, 35, 50, 30], 16, 0.15, 22, "15% of the items carry a random label"),
    ("uneven", [15, 60, 25, 80, 40], 8, 0.05, 23, "uneven blobs, 5% relabelled"),
    (
        "shared",
        [50, 50, 50, 50],
        8,
        0.0,
        24,
        "classes 0 and 1 share blob 0; class 3 is split over blobs 2 and 3",
    ),
]


def make_set(sizes, dim, noise, seed, layout):
    rng = np.random.RandomState(seed)
    k = len(sizes)
    blobs = np.repeat(np.arange(k), sizes)
    centres = 40.0 * rng.randn(k, dim)
    x = centres[blobs] + rng.randn(blobs.size, dim)
    if layout.startswith("classes 0 and 1"):
        labels = np.array([0, 2, 3, 3])[blobs]
        shared = np.flatnonzero(blobs == 0)
        labels[shared[rng.rand(shared.size) < 0.5]] = 1
    else:
        labels = blobs.copy()
        flip = rng.rand(blobs.size) < noise
        labels[flip] = rng.randint(0, k, flip.sum())
    values = rng.choice(1000, size=k, replace=False)  # arbitrary label values
    perm = rng.permutation(blobs.size)
    assert np.unique(labels).size == k, "as many labels as blobs"
    return x[perm].astype(np.float32), values[labels][perm].astype(np.int64), blobs[perm]


def main():
    os.makedirs(OUT, exist_ok=True)
    versions = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "pytorch_metric_learning": pytorch_metric_learning.__version__,
        "faiss": faiss.__version__,
        "scikit_learn": sklearn.__version__,
        "numpy": np.__version__,
    }
    cpu = torch.device("cpu")
    calc = AccuracyCalculator(
        include=("NMI", "AMI"), device=cpu, kmeans_func=FaissKMeans(niter=20, nredo=100)
    )
    default = AccuracyCalculator(include=("NMI", "AMI"), device=cpu)
    arrays, rows = {}, []
    for name, sizes, dim, noise, seed, layout in SPECS:
        x, labels, blobs = make_set(sizes, dim, noise, seed, layout)
        # The clustering PML computes, checked to be the blobs.
        clusters = calc.get_cluster_labels(query=torch.tensor(x), query_labels=torch.tensor(labels)).numpy()
        assert normalized_mutual_info_score(blobs, clusters) == 1.0, f"{name}: PML's k-means missed a blob"
        default_clusters = default.get_cluster_labels(
            query=torch.tensor(x), query_labels=torch.tensor(labels)
        )
        default_found = normalized_mutual_info_score(blobs, default_clusters.numpy()) == 1.0
        res = calc.get_accuracy(torch.tensor(x), torch.tensor(labels))
        assert abs(res["NMI"] - normalized_mutual_info_score(labels, blobs)) < 1e-12
        assert abs(res["AMI"] - adjusted_mutual_info_score(labels, blobs)) < 1e-12
        arrays[f"embeddings_{name}"] = x
        arrays[f"labels_{name}"] = labels
        rows.append(
            dict(
                name=name,
                n=int(x.shape[0]),
                dim=dim,
                num_clusters=len(sizes),
                blobs=sizes,
                layout=layout,
                default_found_blobs=bool(default_found),
                NMI=float(res["NMI"]),
                AMI=float(res["AMI"]),
            )
        )
    save_npz(os.path.join(OUT, "pml_clustering_inputs.npz"), arrays)
    doc = {
        "generator": "tools/fixtures_pml_clustering.py",
        "versions": versions,
        "inputs_file": "pml_clustering_inputs.npz",
        "settings": {
            "call": "AccuracyCalculator(include=('NMI', 'AMI'), kmeans_func=FaissKMeans(niter=20, "
            "nredo=100)).get_accuracy(emb, labels)",
            "kmeans": "faiss.Kmeans through PML's FaissKMeans, best of 100 initialisations (PML's default "
            "is one: default_found_blobs says whether it found the blobs too), k = number of "
            "distinct labels",
            "scores": "sklearn normalized_mutual_info_score / adjusted_mutual_info_score (arithmetic)",
            "well_separated": "each set is k well-separated Gaussian blobs (centres 40 * N(0, 1), "
            "unit noise); PML's clustering is asserted to be exactly the blobs, so any k-means "
            "that finds the blobs gives these numbers",
        },
        "sets": rows,
    }
    with open(os.path.join(OUT, "pml_clustering.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(
        f"pml clustering: {len(rows)} sets: "
        + ", ".join(f"{r['name']} NMI {r['NMI']:.4f} AMI {r['AMI']:.4f}" for r in rows)
    )


if __name__ == "__main__":
    main()
