"""Golden fixtures of the log-sum-exp pair losses from the real pytorch-metric-learning 2.9:
CircleLoss, LiftedStructureLoss, GeneralizedLiftedStructureLoss, NPairsLoss, NTXentLoss
and SupConLoss, values and gradients, on the 22 input batches of pml_inputs.npz.

Run inside the reference environment (see tools/make_reference_envs.sh):

    .venv-pml/bin/python tools/fixtures_pml_softmax_losses.py

Writes, under tests/fixtures/:

- pml_softmax_losses.json  {"generator", "versions", "inputs_file", "calls", "fields",
                           "cases": [...]}; each case: "case", "input", "loss", "params"
                           (the loss's arguments), "distance" (PML distance used: "cosine",
                           "lp" = LpDistance(normalize_embeddings=False), "dot" =
                           DotProductSimilarity(normalize_embeddings=False)), "miner"
                           (null, or {"pos_margin", "neg_margin"} of a PairMarginMiner on the
                           loss's distance), "num_pos", "num_neg" (pairs given to the loss),
                           "value" (PML's default reducer).
- pml_softmax_losses.npz   `grad_<case>`: float32 [B, D], d value / d embeddings.

The inputs are pml_inputs.npz (tools/fixtures_pml.py, same generator and seed).
"""

import json
import os
import sys

import numpy as np
import pytorch_metric_learning
import torch
from pytorch_metric_learning import distances, losses, miners
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixtures_tfa import make_inputs, save_npz  # noqa: E402  (does not import TensorFlow)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures")

DISTANCES = {
    "cosine": distances.CosineSimilarity,
    "lp": lambda: distances.LpDistance(normalize_embeddings=False, p=2, power=1),
    # NPairsLoss's default, DotProductSimilarity(), normalises the embeddings (BaseDistance's
    # default): it is the cosine similarity, the "cosine" cases. "dot" is the raw product.
    "dot": lambda: distances.DotProductSimilarity(normalize_embeddings=False),
}

# (loss name, constructor, its params, distance)
LOSSES = [
    ("circle", losses.CircleLoss, dict(m=0.4, gamma=80), "cosine"),
    ("circle", losses.CircleLoss, dict(m=0.25, gamma=256), "cosine"),
    ("lifted_structure", losses.LiftedStructureLoss, dict(neg_margin=1.0, pos_margin=0.0), "lp"),
    ("lifted_structure", losses.LiftedStructureLoss, dict(neg_margin=0.5, pos_margin=0.2), "lp"),
    (
        "generalized_lifted_structure",
        losses.GeneralizedLiftedStructureLoss,
        dict(neg_margin=1.0, pos_margin=0.0),
        "lp",
    ),
    (
        "generalized_lifted_structure",
        losses.GeneralizedLiftedStructureLoss,
        dict(neg_margin=0.5, pos_margin=0.2),
        "lp",
    ),
    ("npairs", losses.NPairsLoss, dict(), "cosine"),
    ("npairs", losses.NPairsLoss, dict(), "dot"),
    ("ntxent", losses.NTXentLoss, dict(temperature=0.07), "cosine"),
    ("ntxent", losses.NTXentLoss, dict(temperature=0.5), "cosine"),
    ("supcon", losses.SupConLoss, dict(temperature=0.1), "cosine"),
    ("supcon", losses.SupConLoss, dict(temperature=0.5), "cosine"),
]

# PairMarginMiner thresholds per distance (PML's own units: similarities for "cosine" and
# "dot", where it keeps positives below pos_margin and negatives above neg_margin;
# distances for "lp", where it keeps positives above and negatives below).
MINERS = {
    "cosine": dict(pos_margin=0.8, neg_margin=0.1),
    "lp": dict(pos_margin=0.6, neg_margin=1.4),
    "dot": dict(pos_margin=0.8, neg_margin=0.1),
}


def run(make_loss, distance, miner_params, emb_np, labels_np):
    emb = torch.tensor(emb_np, requires_grad=True)
    labels = torch.tensor(labels_np.astype(np.int64))
    loss = make_loss(distance=DISTANCES[distance]())
    if miner_params is None:
        indices = lmu.get_all_pairs_indices(labels)
        value = loss(emb, labels)
    else:
        miner = miners.PairMarginMiner(distance=DISTANCES[distance](), **miner_params)
        indices = miner(emb, labels)
        value = loss(emb, labels, indices)
    (grad,) = torch.autograd.grad(value, emb, allow_unused=True)
    grad = torch.zeros_like(emb) if grad is None else grad
    return float(value), grad.detach().numpy().astype(np.float32), len(indices[0]), len(indices[2])


def main():
    torch.manual_seed(0)
    versions = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "pytorch_metric_learning": pytorch_metric_learning.__version__,
        "numpy": np.__version__,
    }
    inputs = make_inputs()
    cases, grads = [], {}
    for j, inp in enumerate(inputs):
        for name, cls, params, distance in LOSSES:
            for miner_params in (None, MINERS[distance]):
                value, grad, num_pos, num_neg = run(
                    lambda distance, cls=cls, params=params: cls(distance=distance, **params),
                    distance,
                    miner_params,
                    inp["embeddings"],
                    inp["labels"],
                )
                i = len(cases)
                cases.append(
                    dict(
                        case=i,
                        input=j,
                        loss=name,
                        params=params,
                        distance=distance,
                        miner=miner_params,
                        num_pos=num_pos,
                        num_neg=num_neg,
                        value=value,
                    )
                )
                grads[f"grad_{i}"] = grad
    doc = {
        "generator": "tools/fixtures_pml_softmax_losses.py",
        "versions": versions,
        "inputs_file": "pml_inputs.npz",
        "inputs": [{k: inp[k] for k in ("batch_size", "dim", "layout", "embedding_kind")} for inp in inputs],
        "gradients_file": "pml_softmax_losses.npz",
        "calls": {
            "no miner": "Loss(distance=D, **params)(emb, labels)",
            "miner": "idx = PairMarginMiner(distance=D, **miner)(emb, labels); Loss(distance=D, **params)(emb, labels, idx)",
            "distances": "cosine = CosineSimilarity(); lp = LpDistance(normalize_embeddings=False, p=2, "
            "power=1); dot = DotProductSimilarity(normalize_embeddings=False) (NPairsLoss's default "
            "DotProductSimilarity() normalises: it is the cosine cases)",
        },
        "fields": {
            "value": "the loss with PML's default reducer",
            "num_pos": "positive pairs given to the loss (all, or the miner's)",
            "num_neg": "negative pairs given to the loss",
            "grad_<case>": "(npz) d value / d embeddings, float32 [B, D]",
        },
        "cases": cases,
    }
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "pml_softmax_losses.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    save_npz(os.path.join(OUT, "pml_softmax_losses.npz"), grads)
    print(f"pml softmax losses: {len(inputs)} inputs, {len(cases)} cases")


if __name__ == "__main__":
    main()
