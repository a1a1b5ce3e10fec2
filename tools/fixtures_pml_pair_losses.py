"""Golden fixtures from pytorch-metric-learning (PML) 2.9's pair losses and pair miners.

Run inside the reference environment (see tools/make_reference_envs.sh):

    .venv-pml/bin/python tools/fixtures_pml_pair_losses.py

Reads nothing; regenerates the 22 input batches of tools/fixtures_tfa.py (same generator
and seed, identical to tests/fixtures/pml_inputs.npz) and writes, under tests/fixtures/:

- pml_pair_losses.json  {"generator", "versions", "inputs", "calls", "fields", "cases"};
                        each case: "case", "input", "loss" ("contrastive" or
                        "multi_similarity"), "distance" ("lp": LpDistance(
                        normalize_embeddings=False), Euclidean; "cosine": CosineSimilarity()),
                        the loss's parameters, "miner" (null, "pair_margin" or
                        "multi_similarity") and its parameters, "reducer" ("default" or
                        "mean"), "value", "num_pos" / "num_neg" (pairs mined, or all pairs)
                        and "has_grad".
- pml_pair_losses.npz   `grad_<case>` float32 [B, D]: d loss / d embeddings (finite ones);
                        `pos_<case>` / `neg_<case>` bool [B, B]: the pairs the miner kept
                        (cases with a miner).
"""

import json
import os
import sys

import numpy as np
import pytorch_metric_learning
import torch
from pytorch_metric_learning import distances, losses, miners, reducers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixtures_tfa import make_inputs, save_npz  # noqa: E402  (does not import TensorFlow)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures")

CONTRASTIVE_MARGINS = ((0.0, 1.0), (0.2, 0.8))
PAIR_MARGIN_MINER = (0.3, 1.2)  # (pos_margin, neg_margin), Euclidean
MS_PARAMS = ((2.0, 50.0, 0.5), (1.0, 10.0, 0.2))
MS_LP_PARAMS = (2.0, 10.0, 1.0)  # on LpDistance: `base` is a distance
MS_EPSILON = 0.1


def make_distance(name):
    if name == "lp":
        return distances.LpDistance(normalize_embeddings=False, p=2, power=1)
    return distances.CosineSimilarity()


def make_loss(case, reducer):
    kwargs = {"distance": make_distance(case["distance"])}
    if reducer == "mean":
        kwargs["reducer"] = reducers.MeanReducer()
    if case["loss"] == "contrastive":
        return losses.ContrastiveLoss(pos_margin=case["pos_margin"], neg_margin=case["neg_margin"], **kwargs)
    return losses.MultiSimilarityLoss(alpha=case["alpha"], beta=case["beta"], base=case["base"], **kwargs)


def make_miner(case):
    if case["miner"] is None:
        return None
    distance = make_distance(case["distance"])
    if case["miner"] == "pair_margin":
        return miners.PairMarginMiner(
            pos_margin=case["miner_pos_margin"], neg_margin=case["miner_neg_margin"], distance=distance
        )
    return miners.MultiSimilarityMiner(epsilon=case["epsilon"], distance=distance)


def case_list(inputs):
    cases = []
    for j in range(len(inputs)):
        base = dict(input=j, pos_margin=None, neg_margin=None, alpha=None, beta=None, base=None)
        none = dict(miner=None, miner_pos_margin=None, miner_neg_margin=None, epsilon=None)
        pair_margin = dict(
            none,
            miner="pair_margin",
            miner_pos_margin=PAIR_MARGIN_MINER[0],
            miner_neg_margin=PAIR_MARGIN_MINER[1],
        )
        ms_miner = dict(none, miner="multi_similarity", epsilon=MS_EPSILON)
        for pos_margin, neg_margin in CONTRASTIVE_MARGINS:
            for miner in (none, pair_margin):
                for reducer in ("default", "mean"):
                    cases.append(
                        dict(
                            base,
                            loss="contrastive",
                            distance="lp",
                            pos_margin=pos_margin,
                            neg_margin=neg_margin,
                            reducer=reducer,
                            **miner,
                        )
                    )
        for alpha, beta, b in MS_PARAMS:
            for miner in (none, ms_miner):
                cases.append(
                    dict(
                        base,
                        loss="multi_similarity",
                        distance="cosine",
                        alpha=alpha,
                        beta=beta,
                        base=b,
                        reducer="default",
                        **miner,
                    )
                )
        alpha, beta, b = MS_LP_PARAMS
        for miner in (none, dict(ms_miner, epsilon=0.5)):
            cases.append(
                dict(
                    base,
                    loss="multi_similarity",
                    distance="lp",
                    alpha=alpha,
                    beta=beta,
                    base=b,
                    reducer="default",
                    **miner,
                )
            )
    return cases


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    inputs = make_inputs()
    cases = case_list(inputs)
    arrays = {}
    out = []
    for i, case in enumerate(cases):
        inp = inputs[case["input"]]
        labels = torch.tensor(inp["labels"].astype(np.int64))
        emb = torch.tensor(inp["embeddings"], requires_grad=True)
        miner = make_miner(case)
        b = len(labels)
        if miner is None:
            matches = labels[:, None] == labels[None, :]
            num_pos = int(matches.sum()) - b
            num_neg = int((~matches).sum())
            value = make_loss(case, case["reducer"])(emb, labels)
        else:
            a1, p, a2, n = miner(emb, labels)
            pos = np.zeros((b, b), bool)
            neg = np.zeros((b, b), bool)
            pos[a1.numpy(), p.numpy()] = True
            neg[a2.numpy(), n.numpy()] = True
            arrays[f"pos_{i}"] = pos
            arrays[f"neg_{i}"] = neg
            num_pos, num_neg = len(a1), len(a2)
            value = make_loss(case, case["reducer"])(emb, labels, (a1, p, a2, n))
        v = float(value)
        row = dict(
            case=i,
            **case,
            value=v if np.isfinite(v) else None,
            num_pos=num_pos,
            num_neg=num_neg,
            has_grad=False,
        )
        if np.isfinite(v) and value.requires_grad:
            (g,) = torch.autograd.grad(value, emb)
            g = g.numpy().astype(np.float32)
            if np.all(np.isfinite(g)):
                arrays[f"grad_{i}"] = g
                row["has_grad"] = True
        out.append(row)

    save_npz(os.path.join(OUT, "pml_pair_losses.npz"), arrays)
    doc = {
        "generator": "tools/fixtures_pml_pair_losses.py",
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "pytorch_metric_learning": pytorch_metric_learning.__version__,
            "numpy": np.__version__,
        },
        "inputs_file": "pml_inputs.npz (the same 22 batches)",
        "inputs": [{k: inp[k] for k in ("batch_size", "dim", "layout", "embedding_kind")} for inp in inputs],
        "calls": {
            "contrastive": "ContrastiveLoss(pos_margin, neg_margin, distance[, reducer=MeanReducer()])"
            "(emb, labels[, miner(emb, labels)])",
            "multi_similarity": "MultiSimilarityLoss(alpha, beta, base, distance)(emb, labels[, miner(emb, labels)])",
            "pair_margin": "PairMarginMiner(pos_margin=miner_pos_margin, neg_margin=miner_neg_margin, distance)",
            "multi_similarity miner": "MultiSimilarityMiner(epsilon, distance)",
            "distance": "lp: LpDistance(normalize_embeddings=False, p=2, power=1); cosine: CosineSimilarity()",
        },
        "fields": {
            "reducer": "default: the loss's own (AvgNonZeroReducer for ContrastiveLoss, MeanReducer for "
            "MultiSimilarityLoss); mean: MeanReducer()",
            "num_pos, num_neg": "ordered positive / negative pairs given to the loss (all pairs without a miner)",
            "has_grad": "pml_pair_losses.npz holds grad_<case> (finite gradient w.r.t. the embeddings)",
        },
        "cases": out,
    }
    with open(os.path.join(OUT, "pml_pair_losses.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"pml pair losses: {len(inputs)} inputs, {len(out)} cases, {sum(r['has_grad'] for r in out)} grads")


if __name__ == "__main__":
    main()
