"""Golden fixtures from tensorflow-addons 0.23's contrastive, lifted-struct and N-pairs losses.

Run inside the reference environment (see tools/make_reference_envs.sh):

    .venv-tfa/bin/python tools/fixtures_tfa_pairs.py

Uses the 22 input batches of tools/fixtures_tfa.py (same generator and seed, identical to
tests/fixtures/tfa_inputs.npz) and writes, under tests/fixtures/:

- tfa_pairs.npz   the derived inputs of input j: `similarity_<j>` float32 [B, B] (x xᵀ / 2,
                  the N-pairs logits), `multilabel_<j>` int32 [B, 5] (a binary class
                  indicator; on inputs 5 and 16 some rows are all 0), `pair_labels_<j>`
                  int32 [B] and `pair_distances_<j>` float32 [B] (the pairs (i, π(i)) of a
                  fixed permutation π: 1 when same label, and their Euclidean distance);
                  and per case `grad_<case>`: d loss / d input (embeddings for the lifted
                  loss, y_pred otherwise), `values_<case>` for the contrastive loss's
                  per-pair output.
- tfa_pairs.json  {"generator", "versions", "calls", "cases"}; each case: "case", "input",
                  "loss" ("lifted", "npairs", "npairs_multilabel", "contrastive"), "margin",
                  "dtype" ("float32" or "float16": the input cast to it), "value" (null
                  where tensorflow-addons returns NaN; for the contrastive loss the class's
                  SUM_OVER_BATCH_SIZE value), "out_dtype" (tensorflow-addons' output dtype)
                  and "has_grad".
"""

import json
import os
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixtures_tfa import make_inputs, save_npz  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures")
LIFTED_MARGINS = (0.5, 1.0)
CONTRASTIVE_MARGINS = (0.5, 1.0)
NUM_CLASSES = 5
EMPTY_ROWS = (5, 16)  # inputs whose multilabel indicator has rows without any class
HALF = (3, 8, 15)  # inputs also run in float16


def derived_inputs(inputs):
    rng = np.random.RandomState(20240601)
    arrays = {}
    for j, inp in enumerate(inputs):
        x = inp["embeddings"].astype(np.float64)
        b = len(x)
        arrays[f"similarity_{j}"] = (x @ x.T / 2.0).astype(np.float32)
        multi = (rng.rand(b, NUM_CLASSES) < 0.4).astype(np.int32)
        multi[np.flatnonzero(multi.sum(1) == 0), rng.randint(NUM_CLASSES)] = 1
        if j in EMPTY_ROWS:
            multi[: max(1, b // 8)] = 0
        arrays[f"multilabel_{j}"] = multi
        perm = rng.permutation(b)
        arrays[f"pair_labels_{j}"] = (inp["labels"] == inp["labels"][perm]).astype(np.int32)
        arrays[f"pair_distances_{j}"] = np.linalg.norm(x - x[perm], axis=1).astype(np.float32)
    return arrays


def main():
    import tensorflow as tf
    import tensorflow_addons as tfa

    tf.get_logger().setLevel("ERROR")
    inputs = make_inputs()
    derived = derived_inputs(inputs)
    cases = []
    for j in range(len(inputs)):
        dtypes = ("float32", "float16") if j in HALF else ("float32",)
        for dtype in dtypes:
            for margin in LIFTED_MARGINS:
                cases.append(dict(input=j, loss="lifted", margin=margin, dtype=dtype))
            cases.append(dict(input=j, loss="npairs", margin=None, dtype=dtype))
            cases.append(dict(input=j, loss="npairs_multilabel", margin=None, dtype=dtype))
            for margin in CONTRASTIVE_MARGINS:
                cases.append(dict(input=j, loss="contrastive", margin=margin, dtype=dtype))

    arrays = dict(derived)
    out = []
    for i, case in enumerate(cases):
        j, dtype = case["input"], case["dtype"]
        inp = inputs[j]
        labels = tf.constant(inp["labels"])
        if case["loss"] == "lifted":
            x = tf.identity(tf.cast(inp["embeddings"], dtype))
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = tfa.losses.LiftedStructLoss(margin=case["margin"])(labels, x)
        elif case["loss"] == "npairs":
            x = tf.identity(tf.cast(derived[f"similarity_{j}"], dtype))
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = tfa.losses.NpairsLoss()(labels, x)
        elif case["loss"] == "npairs_multilabel":
            x = tf.identity(tf.cast(derived[f"similarity_{j}"], dtype))
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = tfa.losses.NpairsMultilabelLoss()(tf.constant(derived[f"multilabel_{j}"]), x)
        else:
            x = tf.identity(tf.cast(derived[f"pair_distances_{j}"], dtype))
            y = tf.constant(derived[f"pair_labels_{j}"])
            per_pair = tfa.losses.contrastive_loss(y, x, margin=case["margin"])
            arrays[f"values_{i}"] = per_pair.numpy().astype(np.float32)
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = tfa.losses.ContrastiveLoss(margin=case["margin"])(y, x)
        v = float(tf.cast(value, tf.float32).numpy())
        row = dict(
            case=i, **case, value=v if np.isfinite(v) else None, out_dtype=value.dtype.name, has_grad=False
        )
        if np.isfinite(v) and dtype == "float32":
            g = tape.gradient(value, x)
            if g is not None:
                g = tf.convert_to_tensor(g).numpy().astype(np.float32)
                if np.all(np.isfinite(g)):
                    arrays[f"grad_{i}"] = g
                    row["has_grad"] = True
        out.append(row)

    save_npz(os.path.join(OUT, "tfa_pairs.npz"), arrays)
    doc = {
        "generator": "tools/fixtures_tfa_pairs.py",
        "versions": {
            "python": sys.version.split()[0],
            "tensorflow": tf.__version__,
            "tensorflow_addons": tfa.__version__,
            "numpy": np.__version__,
        },
        "inputs_file": "tfa_inputs.npz (embeddings, labels) and tfa_pairs.npz (derived inputs)",
        "calls": {
            "lifted": "tfa.losses.LiftedStructLoss(margin)(labels, embeddings)",
            "npairs": "tfa.losses.NpairsLoss()(labels, similarity)",
            "npairs_multilabel": "tfa.losses.NpairsMultilabelLoss()(multilabel, similarity)",
            "contrastive": "tfa.losses.ContrastiveLoss(margin)(pair_labels, pair_distances); "
            "values_<case>: tfa.losses.contrastive_loss(pair_labels, pair_distances, margin)",
        },
        "cases": out,
    }
    with open(os.path.join(OUT, "tfa_pairs.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    n_nan = sum(r["value"] is None for r in out)
    print(f"tfa pairs: {len(out)} cases ({n_nan} NaN), {sum(r['has_grad'] for r in out)} grads")


if __name__ == "__main__":
    main()
