"""Golden fixtures from the real pytorch-metric-learning (PML) 2.9.

Run inside the reference environment (see tools/make_reference_envs.sh):

    .venv-pml/bin/python tools/fixtures_pml.py

Writes, under tests/fixtures/:

- pml_inputs.npz          the same inputs as tfa_inputs.npz (same generator and seed, see
                          tools/fixtures_tfa.py): `embeddings_<j>` float32 [B, D],
                          `labels_<j>` int32 [B].
- pml_losses.json         {"versions", "inputs", "distance", "cases": [...]}; each case has
                          "case", "input", "kind" ("triplet_margin_miner", "batch_hard_miner"
                          or "angular"), its parameters, "reducer" (PML's default reducer for
                          that loss), "value" (loss with that reducer), "value_mean" (the same
                          loss with MeanReducer, i.e. averaged over every mined triplet /
                          positive pair), "num_mined" and "num_nonzero".
- pml_accuracy_inputs.npz `embeddings_<s>` float32 [N, D], `labels_<s>` int32 [N].
- pml_accuracy.json       {"versions", "settings", "sets": [...]}: AccuracyCalculator metrics
                          precision_at_1, r_precision, mean_average_precision_at_r, leave-one-out
                          (query == reference), Euclidean k-NN, k="max_bin_count".
"""

import json
import os
import sys

import numpy as np
import pytorch_metric_learning
import torch
from pytorch_metric_learning import distances, losses, miners, reducers
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN, FaissKNN

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixtures_tfa import make_inputs, save_npz  # noqa: E402  (does not import TensorFlow)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures")

TRIPLET_MARGINS = (0.2, 0.5)
TRIPLET_TYPES = ("all", "hard", "semihard")
ALPHAS = (35, 40, 45)


def euclidean():
    return distances.LpDistance(normalize_embeddings=False, p=2, power=1)


class _CountingReducer(reducers.MeanReducer):
    """MeanReducer that also remembers the per-triplet / per-pair losses it saw."""

    def element_reduction(self, losses_, *args):
        self.seen = losses_.detach().clone()
        return super().element_reduction(losses_, *args)


def run_loss(make_loss, make_miner, emb, labels):
    """(value with default reducer, value with MeanReducer, #mined, #nonzero, reducer name)."""
    loss_default = make_loss(None)
    reducer_name = type(loss_default.reducer).__name__
    indices = None
    if make_miner is not None:
        indices = make_miner()(emb, labels)
    value = loss_default(emb, labels, indices) if indices is not None else loss_default(emb, labels)

    counting = _CountingReducer()
    loss_mean = make_loss(counting)
    value_mean = loss_mean(emb, labels, indices) if indices is not None else loss_mean(emb, labels)
    seen = getattr(loss_mean.reducer, "seen", None)
    if seen is None:  # the loss returned PML's zero loss before reduction
        num_mined, num_nonzero = 0, 0
    else:
        num_mined, num_nonzero = int(seen.numel()), int((seen > 0).sum())
    if indices is not None:
        num_mined = int(len(indices[0]))
    return float(value), float(value_mean), num_mined, num_nonzero, reducer_name


def loss_cases(inputs):
    cases = []
    for j, inp in enumerate(inputs):
        emb = torch.tensor(inp["embeddings"])
        labels = torch.tensor(inp["labels"].astype(np.int64))
        unit = bool(np.allclose(np.linalg.norm(inp["embeddings"], axis=1), 1.0, atol=1e-5))
        for margin in TRIPLET_MARGINS:
            for t in TRIPLET_TYPES:
                r = run_loss(
                    lambda red, m=margin: losses.TripletMarginLoss(
                        margin=m, distance=euclidean(), reducer=red
                    ),
                    lambda m=margin, t=t: miners.TripletMarginMiner(
                        margin=m, type_of_triplets=t, distance=euclidean()
                    ),
                    emb,
                    labels,
                )
                cases.append(
                    dict(
                        input=j,
                        kind="triplet_margin_miner",
                        type_of_triplets=t,
                        margin=margin,
                        alpha=None,
                        result=r,
                    )
                )
            r = run_loss(
                lambda red, m=margin: losses.TripletMarginLoss(margin=m, distance=euclidean(), reducer=red),
                lambda: miners.BatchHardMiner(distance=euclidean()),
                emb,
                labels,
            )
            cases.append(
                dict(
                    input=j,
                    kind="batch_hard_miner",
                    type_of_triplets=None,
                    margin=margin,
                    alpha=None,
                    result=r,
                )
            )
        for alpha in ALPHAS:
            r = run_loss(lambda red, a=alpha: losses.AngularLoss(alpha=a, reducer=red), None, emb, labels)
            cases.append(
                dict(
                    input=j,
                    kind="angular",
                    type_of_triplets=None,
                    margin=None,
                    alpha=alpha,
                    result=r,
                    inputs_unit_norm=unit,
                )
            )
    out = []
    for i, c in enumerate(cases):
        value, value_mean, num_mined, num_nonzero, reducer_name = c.pop("result")
        row = dict(case=i, **c)
        row.update(
            reducer=reducer_name,
            value=value,
            value_mean=value_mean,
            num_mined=num_mined,
            num_nonzero=num_nonzero,
        )
        if row["kind"] != "angular":
            row.pop("inputs_unit_norm", None)
        out.append(row)
    return out


# ---------------------------------------------------------------------------
# Retrieval metrics
# ---------------------------------------------------------------------------

ACCURACY_SPECS = [
    # (N, D, class sizes, class-centre spread, seed)
    (50, 8, [5, 8, 10, 12, 15], 1.5, 11),
    (120, 16, [4, 6, 9, 11, 14, 18, 25, 33], 1.0, 12),
    (300, 32, [6, 10, 12, 15, 18, 20, 24, 27, 30, 36, 45, 57], 0.8, 13),
    (80, 8, [1, 1, 3, 5, 8, 12, 20, 30], 1.2, 14),  # two singleton classes (lone queries)
]
METRICS = ("precision_at_1", "r_precision", "mean_average_precision_at_r")


def make_accuracy_sets():
    sets = []
    for n, d, sizes, spread, seed in ACCURACY_SPECS:
        assert sum(sizes) == n
        rng = np.random.RandomState(seed)
        values = rng.choice(100, size=len(sizes), replace=False)
        labels = np.concatenate([np.full(s, v) for s, v in zip(sizes, values)])
        centres = spread * rng.randn(len(sizes), d)
        x = np.concatenate([c + rng.randn(s, d) for c, s in zip(centres, sizes)])
        perm = rng.permutation(n)
        sets.append(
            dict(
                labels=labels[perm].astype(np.int32),
                embeddings=x[perm].astype(np.float32),
                class_sizes=sizes,
                spread=spread,
                seed=seed,
            )
        )
    return sets


def accuracy(knn_func, emb, labels):
    calc = AccuracyCalculator(
        include=METRICS, k="max_bin_count", device=torch.device("cpu"), knn_func=knn_func
    )
    # reference=None means query == reference and ref_includes_query=True (leave one out)
    res = calc.get_accuracy(emb, labels)
    return {k: float(res[k]) for k in METRICS}


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    versions = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "pytorch_metric_learning": pytorch_metric_learning.__version__,
        "numpy": np.__version__,
    }

    inputs = make_inputs()
    arrays = {}
    for j, inp in enumerate(inputs):
        arrays[f"embeddings_{j}"] = inp["embeddings"]
        arrays[f"labels_{j}"] = inp["labels"]
    save_npz(os.path.join(OUT, "pml_inputs.npz"), arrays)
    cases = loss_cases(inputs)
    doc = {
        "generator": "tools/fixtures_pml.py",
        "versions": versions,
        "inputs_file": "pml_inputs.npz",
        "inputs": [{k: inp[k] for k in ("batch_size", "dim", "layout", "embedding_kind")} for inp in inputs],
        "distance": "triplet cases: LpDistance(normalize_embeddings=False, p=2, power=1) for "
        "both miner and loss; angular cases: AngularLoss's default "
        "LpDistance(normalize_embeddings=True)",
        "calls": {
            "triplet_margin_miner": "idx = TripletMarginMiner(margin, type_of_triplets, distance)"
            "(emb, labels); TripletMarginLoss(margin, distance)"
            "(emb, labels, idx)",
            "batch_hard_miner": "idx = BatchHardMiner(distance)(emb, labels); "
            "TripletMarginLoss(margin, distance)(emb, labels, idx)",
            "angular": "AngularLoss(alpha)(emb, labels)",
        },
        "fields": {
            "value": "the loss with PML's default reducer (named in 'reducer')",
            "value_mean": "the same loss with reducers.MeanReducer()",
            "num_mined": "number of triplets (or positive pairs for angular) the loss reduced",
            "num_nonzero": "how many of those had a loss > 0",
        },
        "cases": cases,
    }
    with open(os.path.join(OUT, "pml_losses.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")

    sets = make_accuracy_sets()
    acc_arrays, acc_rows = {}, []
    for s, st in enumerate(sets):
        acc_arrays[f"embeddings_{s}"] = st["embeddings"]
        acc_arrays[f"labels_{s}"] = st["labels"]
        emb = torch.tensor(st["embeddings"])
        lab = torch.tensor(st["labels"].astype(np.int64))
        faiss_res = accuracy(FaissKNN(), emb, lab)
        custom_res = accuracy(CustomKNN(euclidean()), emb, lab)
        for k in METRICS:
            assert abs(faiss_res[k] - custom_res[k]) < 1e-9, (s, k, faiss_res, custom_res)
        acc_rows.append(
            dict(
                set=s,
                n=len(st["labels"]),
                dim=st["embeddings"].shape[1],
                class_sizes=st["class_sizes"],
                **custom_res,
            )
        )
    save_npz(os.path.join(OUT, "pml_accuracy_inputs.npz"), acc_arrays)
    acc_doc = {
        "generator": "tools/fixtures_pml.py",
        "versions": versions,
        "inputs_file": "pml_accuracy_inputs.npz",
        "settings": {
            "call": "AccuracyCalculator(include=('precision_at_1', 'r_precision', "
            "'mean_average_precision_at_r'), k='max_bin_count', knn_func=...)"
            ".get_accuracy(emb, labels)",
            "leave_one_out": "reference=None, so reference = query and ref_includes_query=True: "
            "each query's own index is removed from its neighbours",
            "knn": "CustomKNN(LpDistance(normalize_embeddings=False, p=2, power=1)) "
            "(Euclidean); FaissKNN() (IndexFlatL2) gives the same numbers, checked",
            "lone_queries": "queries whose class has no other member are left out of every "
            "metric (set 3 has two singleton classes)",
            "avg_of_avgs": False,
        },
        "sets": acc_rows,
    }
    with open(os.path.join(OUT, "pml_accuracy.json"), "w") as f:
        json.dump(acc_doc, f, indent=1)
        f.write("\n")
    print(f"pml: {len(inputs)} inputs, {len(cases)} loss cases, {len(sets)} accuracy sets")


if __name__ == "__main__":
    main()
