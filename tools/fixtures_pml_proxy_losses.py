"""Golden fixtures for the proxy and margin-softmax losses from the real
pytorch-metric-learning (PML) 2.9, with the weights from PML's own initialisation.

Run inside the reference environment (see tools/make_reference_envs.sh):

    .venv-pml/bin/python tools/fixtures_pml_proxy_losses.py

Reads the 22 input batches of tests/fixtures/pml_inputs.npz (tools/fixtures_pml.py) and
writes, under tests/fixtures/:

- pml_proxy_losses.json  {"versions", "calls", "fields", "cases": [...]}; each case has
                         "case", "input", "kind" (proxy_anchor, proxy_nca, arcface, cosface,
                         sub_center_arcface), its parameters, "num_classes", "value".
- pml_proxy_losses.npz   for case i: `labels_<i>` (the input's labels renumbered to
                         0..P-1, int32 [B]), `weights_<i>` (PML's `proxies` [C, D] or `W`
                         [D, C·K] right after construction, float32), `grad_<i>` (d loss /
                         d embeddings [B, D]) and `grad_weights_<i>` (d loss / d weights).
"""

import json
import os
import sys

import numpy as np
import pytorch_metric_learning
import torch
from pytorch_metric_learning import losses

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixtures_tfa import save_npz  # noqa: E402  (does not import TensorFlow)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures")
EXTRA_CLASSES = 2  # proxies of classes absent from every batch

# kind -> list of parameter dicts (PML argument names)
CONFIGS = {
    "proxy_anchor": [dict(margin=0.1, alpha=32), dict(margin=0.2, alpha=16)],
    "proxy_nca": [dict(softmax_scale=1), dict(softmax_scale=10)],
    "arcface": [dict(margin=28.6, scale=64), dict(margin=10.0, scale=16)],
    "cosface": [dict(margin=0.35, scale=64), dict(margin=0.2, scale=16)],
    "sub_center_arcface": [
        dict(margin=28.6, scale=64, sub_centers=3),
        dict(margin=20.0, scale=32, sub_centers=2),
    ],
}
CLASSES = {
    "proxy_anchor": losses.ProxyAnchorLoss,
    "proxy_nca": losses.ProxyNCALoss,
    "arcface": losses.ArcFaceLoss,
    "cosface": losses.CosFaceLoss,
    "sub_center_arcface": losses.SubCenterArcFaceLoss,
}


def weights_of(loss):
    return loss.proxies if hasattr(loss, "proxies") else loss.W


def main():
    inputs = np.load(os.path.join(OUT, "pml_inputs.npz"))
    n_inputs = len([k for k in inputs.files if k.startswith("labels_")])
    versions = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "pytorch_metric_learning": pytorch_metric_learning.__version__,
        "numpy": np.__version__,
    }
    cases, arrays = [], {}
    seed = 0
    for j in range(n_inputs):
        emb_np = inputs[f"embeddings_{j}"]
        labels_np = np.unique(inputs[f"labels_{j}"], return_inverse=True)[1].astype(np.int32).reshape(-1)
        num_classes = int(labels_np.max()) + 1 + EXTRA_CLASSES
        for kind, configs in CONFIGS.items():
            for params in configs:
                torch.manual_seed(seed)
                seed += 1
                loss = CLASSES[kind](num_classes=num_classes, embedding_size=emb_np.shape[1], **params)
                weights = weights_of(loss)
                initial = weights.detach().numpy().copy()
                emb = torch.tensor(emb_np, requires_grad=True)
                value = loss(emb, torch.tensor(labels_np.astype(np.int64)))
                value.backward()
                i = len(cases)
                arrays[f"labels_{i}"] = labels_np
                arrays[f"weights_{i}"] = initial.astype(np.float32)
                arrays[f"grad_{i}"] = emb.grad.numpy().astype(np.float32)
                grad_w = weights.grad
                arrays[f"grad_weights_{i}"] = (
                    np.zeros_like(initial) if grad_w is None else grad_w.numpy()
                ).astype(np.float32)
                cases.append(
                    dict(case=i, input=j, kind=kind, num_classes=num_classes, value=float(value), **params)
                )
    save_npz(os.path.join(OUT, "pml_proxy_losses.npz"), arrays)
    doc = {
        "generator": "tools/fixtures_pml_proxy_losses.py",
        "versions": versions,
        "inputs_file": "pml_inputs.npz",
        "arrays_file": "pml_proxy_losses.npz",
        "calls": {
            "all": "torch.manual_seed(seed); loss = <Loss>(num_classes=C, embedding_size=D, **params); "
            "value = loss(embeddings, labels); value.backward(). Labels are the input's labels "
            f"renumbered 0..P-1 (np.unique return_inverse); C = P + {EXTRA_CLASSES}. Default "
            "distance, reducer and weight initialisation of each loss.",
        },
        "fields": {
            "value": "the loss with PML's default reducer",
            "weights_<i>": "PML's proxies [C, D] (proxy losses) or W [D, C * sub_centers] right "
            "after construction",
            "grad_<i>": "d value / d embeddings",
            "grad_weights_<i>": "d value / d weights",
        },
        "cases": cases,
    }
    with open(os.path.join(OUT, "pml_proxy_losses.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"pml proxy losses: {n_inputs} inputs, {len(cases)} cases")


if __name__ == "__main__":
    main()
