"""Golden fixtures from the real tensorflow-addons 0.23 triplet losses.

Run inside the reference environment (see tools/make_reference_envs.sh):

    .venv-tfa/bin/python tools/fixtures_tfa.py

Writes, under tests/fixtures/:

- tfa_inputs.npz    `embeddings_<j>` float32 [B, D] and `labels_<j>` int32 [B] for every
                    input j (loadable with np.load(..., allow_pickle=False)).
- tfa_triplet.json  a list of cases {"case", "input", "loss", "margin", "distance_metric",
                    "soft", "value", "has_grad"}; "value" is null where tensorflow-addons
                    returns NaN. "distance_metric" "L1-callable" is the Manhattan distance
                    matrix passed as a callable.
- tfa_grads.npz     `grad_<case>` float32 [B, D]: d loss / d embeddings, for the "L2" and
                    "angular" cases with B >= 8 on inputs without duplicated or zero
                    embeddings (where the gradient is well conditioned) and a finite value.
- tfa_meta.json     package versions and a description of every input.

The inputs are generated from fixed seeds, so a rerun gives identical files (up to the
floating point of the installed TensorFlow build). `make_inputs()` is also used by
tools/fixtures_pml.py (importing this module does not import TensorFlow).
"""

import io
import json
import os
import sys
import warnings
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402

# TensorFlow is imported in main(), so that tools/fixtures_pml.py can reuse the input
# generator below without it.
tf = tfa = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures")

MARGINS = (0.2, 1.0)
METRICS = ("L2", "squared-L2", "angular", "L1-callable")
GRAD_METRICS = ("L2", "angular")


def save_npz(path, arrays):
    """Like np.savez_compressed, but byte-identical on every run (fixed zip timestamps),
    so regenerating unchanged fixtures leaves git clean. Loads with allow_pickle=False."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            arr = np.asarray(arrays[name])
            assert arr.dtype != object, name
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr, allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def l1_distance_matrix(embeddings):
    """Manhattan distance matrix [B, B]; the test passes its own L1 callable."""
    diff = tf.expand_dims(embeddings, 1) - tf.expand_dims(embeddings, 0)
    return tf.reduce_sum(tf.abs(diff), axis=-1)


def tfa_metric(name):
    return l1_distance_matrix if name == "L1-callable" else name


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


def labels_from_sizes(rng, sizes, shuffle=True):
    """Labels with the given class sizes, arbitrary (non-contiguous) label values."""
    values = rng.choice(1000, size=len(sizes), replace=False)
    labels = np.concatenate([np.full(s, v) for s, v in zip(sizes, values)])
    if shuffle:
        labels = labels[rng.permutation(len(labels))]
    return labels.astype(np.int32)


def make_labels(rng, batch_size, layout):
    kind = layout[0]
    if kind == "pk":  # balanced P x K
        p, k = layout[1], layout[2]
        return labels_from_sizes(rng, [k] * p, shuffle=layout[3] if len(layout) > 3 else True)
    if kind == "distinct":  # no positive pair
        return labels_from_sizes(rng, [1] * batch_size)
    if kind == "equal":  # no negative
        return labels_from_sizes(rng, [batch_size])
    if kind == "singletons":  # uneven classes, several of size 1
        sizes = []
        remaining = batch_size
        n_single = max(1, batch_size // 8)
        sizes += [1] * n_single
        remaining -= n_single
        while remaining > 0:
            s = int(min(remaining, rng.randint(2, 6)))
            sizes.append(s)
            remaining -= s
        return labels_from_sizes(rng, sizes)
    raise ValueError(layout)


def l2_normalize(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_embeddings(rng, labels, dim, kind):
    b = len(labels)
    x = rng.randn(b, dim)
    if kind == "normal":
        pass
    elif kind == "unit":
        x = l2_normalize(x)
    elif kind == "scaled3":
        x = 3.0 * l2_normalize(x)
    elif kind == "dup":
        # unit vectors; in every class with >= 2 members, the second member is an exact
        # copy of the first (identical embeddings inside a class).
        x = l2_normalize(x)
        for v in np.unique(labels):
            idx = np.flatnonzero(labels == v)
            if len(idx) >= 2:
                x[idx[1]] = x[idx[0]]
    elif kind == "zeros":
        # random normal with zero vectors: two in the largest class, one in another
        # class of >= 2 members, and one singleton (where there are such classes).
        values, counts = np.unique(labels, return_counts=True)
        order = np.argsort(-counts, kind="stable")
        values, counts = values[order], counts[order]
        x[np.flatnonzero(labels == values[0])[:2]] = 0.0
        if len(values) > 1 and counts[1] >= 2:
            x[np.flatnonzero(labels == values[1])[:1]] = 0.0
        if np.any(counts == 1):
            x[np.flatnonzero(labels == values[counts == 1][0])] = 0.0
    else:
        raise ValueError(kind)
    return x.astype(np.float32)


# (batch_size, dim, label layout, embedding kind)
INPUT_SPECS = [
    (1, 4, ("distinct",), "normal"),
    (2, 4, ("equal",), "normal"),
    (2, 4, ("distinct",), "unit"),
    (8, 4, ("pk", 4, 2), "normal"),  # pairs only
    (8, 16, ("pk", 2, 4, False), "unit"),  # balanced, sorted labels
    (8, 4, ("distinct",), "normal"),
    (8, 16, ("equal",), "unit"),
    (8, 4, ("singletons",), "scaled3"),
    (32, 16, ("pk", 8, 4), "unit"),
    (32, 4, ("singletons",), "normal"),
    (32, 16, ("pk", 4, 8), "scaled3"),
    (32, 16, ("pk", 8, 4), "dup"),
    (32, 4, ("singletons",), "zeros"),
    (32, 16, ("distinct",), "unit"),
    (32, 4, ("pk", 16, 2), "normal"),  # pairs only
    (64, 16, ("pk", 16, 4), "unit"),
    (64, 4, ("singletons",), "normal"),
    (64, 16, ("pk", 32, 2), "unit"),  # pairs only
    (64, 4, ("equal",), "scaled3"),
    (64, 16, ("pk", 8, 8), "zeros"),
    (8, 4, ("equal",), "zeros"),
    (2, 4, ("equal",), "zeros"),
]


def layout_name(layout):
    names = {
        "distinct": "all labels distinct (no positive pair)",
        "equal": "all labels equal (no negative)",
        "singletons": "random uneven classes with singletons",
    }
    if layout[0] == "pk":
        p, k = layout[1], layout[2]
        kind = "pairs only" if k == 2 else "balanced"
        order = "sorted" if len(layout) > 3 and not layout[3] else "shuffled"
        return f"{kind} P x K = {p} x {k} ({order})"
    return names[layout[0]]


def make_inputs(seed=20240531):
    rng = np.random.RandomState(seed)
    inputs = []
    for b, d, layout, kind in INPUT_SPECS:
        labels = make_labels(rng, b, layout)
        emb = make_embeddings(rng, labels, d, kind)
        inputs.append(
            {
                "labels": labels,
                "embeddings": emb,
                "batch_size": b,
                "dim": d,
                "layout": layout_name(layout),
                "embedding_kind": kind,
            }
        )
    return inputs


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------


def make_loss(case):
    metric = tfa_metric(case["distance_metric"])
    if case["loss"] == "semihard":
        return tfa.losses.TripletSemiHardLoss(margin=case["margin"], distance_metric=metric)
    return tfa.losses.TripletHardLoss(margin=case["margin"], soft=case["soft"], distance_metric=metric)


def case_list(inputs):
    cases = []
    for j in range(len(inputs)):
        for metric in METRICS:
            for margin in MARGINS:
                cases.append(
                    dict(input=j, loss="semihard", margin=margin, distance_metric=metric, soft=False)
                )
            for soft in (False, True):
                for margin in MARGINS:
                    cases.append(dict(input=j, loss="hard", margin=margin, distance_metric=metric, soft=soft))
    return cases


def wants_grad(case, inp):
    return (
        case["distance_metric"] in GRAD_METRICS
        and inp["batch_size"] >= 8
        and inp["embedding_kind"] not in ("dup", "zeros")
    )


def main():
    global tf, tfa
    import tensorflow as tf
    import tensorflow_addons as tfa

    tf.get_logger().setLevel("ERROR")
    os.makedirs(OUT, exist_ok=True)
    tf.random.set_seed(0)
    np.random.seed(0)
    inputs = make_inputs()

    arrays = {}
    for j, inp in enumerate(inputs):
        arrays[f"embeddings_{j}"] = inp["embeddings"]
        arrays[f"labels_{j}"] = inp["labels"]

    cases = case_list(inputs)
    grads = {}
    for i, case in enumerate(cases):
        inp = inputs[case["input"]]
        labels = tf.constant(inp["labels"])
        emb = tf.Variable(inp["embeddings"])
        loss_obj = make_loss(case)
        with tf.GradientTape() as tape:
            value_tensor = loss_obj(labels, emb)  # called as tfa users do
        value = float(value_tensor.numpy())
        finite = bool(np.isfinite(value))
        case["case"] = i
        case["value"] = value if finite else None
        case["has_grad"] = False
        if finite and wants_grad(case, inp):
            g = tape.gradient(value_tensor, emb)
            g = g.numpy().astype(np.float32)
            if np.all(np.isfinite(g)):
                grads[f"grad_{i}"] = g
                case["has_grad"] = True
        # key order for readability
        cases[i] = {
            k: case[k]
            for k in ("case", "input", "loss", "margin", "distance_metric", "soft", "value", "has_grad")
        }

    save_npz(os.path.join(OUT, "tfa_inputs.npz"), arrays)
    save_npz(os.path.join(OUT, "tfa_grads.npz"), grads)
    with open(os.path.join(OUT, "tfa_triplet.json"), "w") as f:
        json.dump(cases, f, indent=1)
        f.write("\n")
    meta = {
        "generator": "tools/fixtures_tfa.py",
        "versions": {
            "python": sys.version.split()[0],
            "tensorflow": tf.__version__,
            "tensorflow_addons": tfa.__version__,
            "numpy": np.__version__,
        },
        "call": "tfa.losses.TripletSemiHardLoss(margin, distance_metric)(labels, embeddings) / "
        "tfa.losses.TripletHardLoss(margin, soft, distance_metric)(labels, embeddings)",
        "L1-callable": "lambda x: reduce_sum(abs(x[:, None, :] - x[None, :, :]), axis=-1)",
        "grads": "tfa_grads.npz grad_<case>: gradient of the loss w.r.t. the embeddings; "
        "only for L2/angular cases, B >= 8, embedding kinds other than dup/zeros, "
        "finite value",
        "inputs": [{k: inp[k] for k in ("batch_size", "dim", "layout", "embedding_kind")} for inp in inputs],
    }
    with open(os.path.join(OUT, "tfa_meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    n_nan = sum(c["value"] is None for c in cases)
    print(f"tfa: {len(inputs)} inputs, {len(cases)} cases ({n_nan} NaN), {len(grads)} grads")


if __name__ == "__main__":
    main()
