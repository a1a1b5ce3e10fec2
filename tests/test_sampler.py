"""PKSampler / PKPyDataset: batch composition, determinism, small classes, errors,
tf.data pipelines (arrays and items loaded in parallel), shards, and `model.fit` with
the datasets as input on the current backend (tf.data feeds Keras on jax and torch too).
"""

import doctest
import os
import pickle
import subprocess
import sys
import textwrap
import time
import warnings

import keras
import numpy as np
import pytest

from keras_triplet.data import PKPyDataset, PKSampler
from keras_triplet.data import pydataset as pydataset_module
from keras_triplet.data import sampler as sampler_module

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def imbalanced_labels(seed=0, classes=30, n=600):
    rng = np.random.default_rng(seed)
    sizes = rng.zipf(1.6, classes).clip(2, 80)  # 2 .. 80 examples per class
    labels = np.repeat(np.arange(classes) * 7 + 3, sizes)  # non-contiguous label values
    return rng.permutation(labels)[:n]


def check_batch(labels, idx, P, K, distinct_within_class=True):
    """Exactly P distinct classes × K contiguous examples."""
    assert idx.shape == (P * K,)
    blocks = labels[idx].reshape(P, K)
    assert np.all(blocks == blocks[:, :1]), "a class's K examples must be contiguous"
    assert len(np.unique(blocks[:, 0])) == P, "the P classes must be distinct"
    if distinct_within_class:
        for block in idx.reshape(P, K):
            assert len(np.unique(block)) == K


# ----------------------------------------------------------------- NumPy index sampling


@pytest.mark.parametrize("P,K", [(2, 2), (4, 3), (8, 4), (16, 2)])
def test_batch_composition(P, K):
    labels = imbalanced_labels()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = PKSampler(labels, P, K, seed=5, small_classes="drop")
    assert sampler.batch_size == P * K
    for epoch in range(2):
        batches = sampler.epoch_indices(epoch)
        assert batches.shape == (sampler.steps_per_epoch, P * K)
        for idx in batches:
            check_batch(labels, idx, P, K)


def test_epoch_covers_balanced_data_once():
    labels = np.repeat(np.arange(50), 12)  # 600 examples, 200 chunks of K=3
    sampler = PKSampler(labels, classes_per_batch=10, samples_per_class=3, seed=1)
    assert sampler.num_chunks == 200 and sampler.steps_per_epoch == 20
    seen = sampler.epoch_indices(0).ravel()
    # Every batch has 10 distinct classes; a chunk that waits for a later batch is
    # skipped only if the epoch ends first, which is rare.
    assert len(np.unique(seen)) >= 0.95 * labels.size


def test_steps_per_epoch_definition():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 1 + [3] * 4)
    with pytest.warns(UserWarning):
        sampler = PKSampler(labels, classes_per_batch=2, samples_per_class=4)
    # chunks: ceil(10/4) + 1 + 1 + 1 = 6; steps = ceil(6 / 2) = 3
    assert sampler.num_chunks == 6 and sampler.steps_per_epoch == 3


def test_determinism():
    labels = imbalanced_labels(1)
    make = lambda seed: PKSampler(labels, 6, 3, seed=seed)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b, c = make(11), make(11), make(12)
    np.testing.assert_array_equal(a.epoch_indices(0), b.epoch_indices(0))
    np.testing.assert_array_equal(a.epoch_indices(3), b.epoch_indices(3))
    np.testing.assert_array_equal(a.batch_indices(a.steps_per_epoch + 2), b.epoch_indices(1)[2])
    assert not np.array_equal(a.epoch_indices(0), c.epoch_indices(0))
    assert not np.array_equal(a.epoch_indices(0), a.epoch_indices(1))
    # Order of the calls does not matter (epochs are pure functions of (seed, epoch)).
    later = b.epoch_indices(5).copy()
    np.testing.assert_array_equal(make(11).epoch_indices(5), later)


def test_seed_none_is_recorded():
    labels = np.repeat(np.arange(5), 4)
    sampler = PKSampler(labels, 2, 2, seed=None)
    again = PKSampler(labels, 2, 2, seed=sampler.seed)
    np.testing.assert_array_equal(sampler.epoch_indices(0), again.epoch_indices(0))


def test_small_classes_replace():
    labels = np.array([0] * 8 + [1] * 8 + [2] * 2)  # class 2 has fewer than K=4
    sampler = PKSampler(labels, classes_per_batch=2, samples_per_class=4, seed=0)
    assert sampler.dropped_classes.size == 0 and 2 in sampler.classes
    blocks = []
    for epoch in range(6):
        for idx in sampler.epoch_indices(epoch):
            check_batch(labels, idx, 2, 4, distinct_within_class=False)
            for block in idx.reshape(2, 4):
                if labels[block[0]] == 2:
                    blocks.append(block)
                else:
                    assert len(np.unique(block)) == 4  # no repeats in big classes
    assert blocks, "class 2 must be sampled"
    for block in blocks:  # both examples of class 2, then repeats
        assert set(block) == {16, 17}


def test_small_classes_drop():
    labels = np.array([0] * 8 + [1] * 8 + [2] * 2 + [3] * 5)
    sampler = PKSampler(labels, 2, 4, small_classes="drop", seed=0)
    np.testing.assert_array_equal(sampler.dropped_classes, [2])
    np.testing.assert_array_equal(sampler.classes, [0, 1, 3])
    assert sampler.num_examples == 21
    for epoch in range(3):
        used = labels[sampler.epoch_indices(epoch)]
        assert 2 not in used


def test_singleton_warning_and_attribute():
    labels = np.array([0] * 5 + [1] * 5 + [7] + [9])
    with pytest.warns(UserWarning, match=r"2 classes have a single example \(labels 7, 9\)"):
        sampler = PKSampler(labels, 2, 2)
    np.testing.assert_array_equal(sampler.singleton_classes, [7, 9])
    # A singleton sampled with replacement is K copies of its one example.
    for idx in sampler.epoch_indices(0):
        for block in idx.reshape(2, 2):
            if labels[block[0]] in (7, 9):
                assert len(set(block)) == 1
    with pytest.warns(UserWarning, match="dropped"):
        sampler = PKSampler(labels, 2, 2, small_classes="drop")
    np.testing.assert_array_equal(sampler.dropped_classes, [7, 9])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PKSampler(np.repeat(np.arange(3), 2), 2, 2)  # no singleton: no warning


def test_too_many_classes_per_batch():
    labels = np.repeat(np.arange(5), 4)
    with pytest.raises(
        ValueError,
        match=r"classes_per_batch=6 is larger than the number of "
        r"usable classes, 5.*at most 5",
    ):
        PKSampler(labels, classes_per_batch=6, samples_per_class=2)
    labels = np.array([0] * 4 + [1] * 4 + [2] * 2)
    with pytest.raises(
        ValueError,
        match=r"usable classes, 2 \(1 of the 3 classes have fewer "
        r"than samples_per_class=4.*small_classes='replace'",
    ):
        PKSampler(labels, 3, 4, small_classes="drop")
    PKSampler(labels, 3, 4, small_classes="replace")  # fine


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(samples_per_class=1), ValueError, "positive pair"),
        (dict(classes_per_batch=1), ValueError, "no negatives"),
        (dict(classes_per_batch=2.0), TypeError, "classes_per_batch.*integer"),
        (dict(small_classes="oversample"), ValueError, "small_classes"),
        (dict(num_shards=3), ValueError, "multiple of `num_shards`"),
        (dict(num_shards=2, shard_index=2), ValueError, "shard_index"),
        (dict(seed=-1), ValueError, "seed"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    args = dict(labels=np.repeat(np.arange(6), 3), classes_per_batch=4, samples_per_class=2)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        PKSampler(**args)


@pytest.mark.parametrize(
    "labels,error,match",
    [
        (np.array(["a", "b", "a", "b"]), TypeError, "return_inverse"),
        (np.array([0.5, 1.0, 0.5, 1.0]), ValueError, "non-integer"),
        (np.zeros((4, 2), dtype=int), ValueError, "1-D"),
        (np.array([], dtype=int), ValueError, "empty"),
        (np.array([0, 0, 2**40, 2**40]), ValueError, "int32"),
    ],
)
def test_bad_labels(labels, error, match):
    with pytest.raises(error, match=match):
        PKSampler(labels, 2, 2)


def test_labels_column_and_float_integers():
    labels = np.repeat(np.arange(4), 3)
    a = PKSampler(labels[:, None], 2, 3, seed=2)
    b = PKSampler(labels.astype("float32"), 2, 3, seed=2)
    np.testing.assert_array_equal(a.epoch_indices(0), b.epoch_indices(0))


def test_shards_split_the_global_batch():
    labels = imbalanced_labels(2)
    kw = dict(classes_per_batch=8, samples_per_class=3, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = PKSampler(labels, **kw)
        shards = [PKSampler(labels, num_shards=4, shard_index=i, **kw) for i in range(4)]
    for s in shards:
        assert s.batch_size == 6 and s.global_batch_size == 24
        assert s.steps_per_epoch == full.steps_per_epoch
    for epoch in range(2):
        parts = [s.epoch_indices(epoch) for s in shards]
        np.testing.assert_array_equal(np.concatenate(parts, axis=1), full.epoch_indices(epoch))
        for part in parts:
            for idx in part:
                check_batch(labels, idx, 2, 3, distinct_within_class=False)


def test_pickle_roundtrip():
    sampler = PKSampler(np.repeat(np.arange(6), 3), 3, 2, seed=9)
    sampler.epoch_indices(0)
    copy = pickle.loads(pickle.dumps(sampler))
    np.testing.assert_array_equal(copy.epoch_indices(1), sampler.epoch_indices(1))


def test_docstring_examples():
    for module in (sampler_module, pydataset_module):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0


def test_import_without_tensorflow():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["tensorflow"] = None  # any `import tensorflow` now fails
        import numpy as np
        import keras_triplet.data as data
        x = np.arange(40, dtype="float32").reshape(20, 2)
        ds = data.PKPyDataset(x, np.repeat(np.arange(5), 4), 2, 2, seed=0)
        xb, yb = ds[0]
        assert xb.shape == (4, 2) and yb.shape == (4,)
        try:
            data.PKSampler(np.repeat(np.arange(5), 4), 2, 2).as_dataset(x)
        except ImportError as e:
            assert "PKPyDataset" in str(e)
        else:
            raise AssertionError("as_dataset should need TensorFlow")
        print("ok")
        """
    )
    env = dict(os.environ, KERAS_BACKEND="numpy")  # light: no jax, torch or tensorflow
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]


# ------------------------------------------------------------------- tf.data pipelines

import tensorflow as tf  # noqa: E402 - the tf.data pipelines; tensorflow-cpu is part of the dev install


def take(ds, n):
    return [(jax_free(x), y.numpy()) for x, y in ds.take(n)]


def jax_free(x):
    if isinstance(x, dict):
        return {k: v.numpy() for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(v.numpy() for v in x)
    return x.numpy()


def test_as_dataset_arrays_follow_the_indices():
    labels = imbalanced_labels(3)
    N = labels.size
    x = np.arange(N, dtype="float32")[:, None] * np.ones((1, 3), "float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = PKSampler(labels, 5, 4, seed=8)
    ds = sampler.as_dataset(x)
    assert ds.element_spec[0].shape == (20, 3) and ds.element_spec[1].shape == (20,)
    assert ds.element_spec[1].dtype == tf.int32
    n = sampler.steps_per_epoch + 3  # across an epoch boundary
    for step, (xb, yb) in enumerate(take(ds, n)):
        idx = sampler.batch_indices(step)
        np.testing.assert_array_equal(xb[:, 0].astype(int), idx)
        np.testing.assert_array_equal(yb, labels[idx])
    # Iterating again gives the same batches; initial_epoch resumes.
    again = take(ds, 2)
    np.testing.assert_array_equal(again[1][1], labels[sampler.batch_indices(1)])
    resumed = take(sampler.as_dataset(x, initial_epoch=1), 1)
    np.testing.assert_array_equal(
        resumed[0][0][:, 0].astype(int), sampler.batch_indices(sampler.steps_per_epoch)
    )


def test_as_dataset_tuple_and_dict_inputs():
    labels = np.repeat(np.arange(6), 4)
    a = np.arange(24, dtype="float32")[:, None]
    b = np.arange(24, dtype="int64")[:, None, None] * np.ones((1, 2, 2), "int64")
    sampler = PKSampler(labels, 3, 2, seed=0)
    (xa, xb), y = take(sampler.as_dataset((a, b)), 1)[0]
    idx = sampler.batch_indices(0)
    np.testing.assert_array_equal(xa[:, 0], idx)
    np.testing.assert_array_equal(xb[:, 1, 1], idx)
    assert xb.dtype == np.int64 and y.dtype == np.int32
    x, y = take(sampler.as_dataset({"a": a, "b": b}), 1)[0]
    assert set(x) == {"a", "b"}
    np.testing.assert_array_equal(x["b"][:, 0, 0], idx)
    with pytest.raises(ValueError, match="first dimension 24"):
        sampler.as_dataset(a[:10])
    with pytest.raises(ValueError, match="load_fn"):
        sampler.as_dataset(a, output_shape=(1,))


@pytest.fixture
def npy_items(tmp_path):
    """40 files `i.npy` holding a (3, 2) array filled with i; labels i // 5."""
    paths = []
    for i in range(40):
        path = tmp_path / f"{i}.npy"
        np.save(path, np.full((3, 2), i, dtype="float32"))
        paths.append(str(path))
    return paths, np.arange(40) // 5


@pytest.mark.parametrize("items_per_call", [None, 1, 5, 12])
def test_as_dataset_items_parallel_loading_keeps_order(npy_items, items_per_call):
    paths, labels = npy_items
    sampler = PKSampler(labels, 4, 3, seed=2)
    rng = np.random.default_rng(0)
    delays = rng.uniform(0, 0.004, size=len(paths))  # scramble the loaders' finishing order

    def slow_load(path):
        i = int(os.path.basename(path)[:-4])
        time.sleep(delays[i])
        return np.load(path)

    ds = sampler.as_dataset(paths, load_fn=slow_load, num_parallel_calls=8, items_per_call=items_per_call)
    assert ds.element_spec[0].shape == (12, 3, 2) and ds.element_spec[0].dtype == tf.float32
    n = sampler.steps_per_epoch + 2
    for step, (xb, yb) in enumerate(take(ds, n)):
        idx = sampler.batch_indices(step)
        np.testing.assert_array_equal(xb[:, 0, 0].astype(int), idx)
        np.testing.assert_array_equal(yb, labels[idx])
        np.testing.assert_array_equal(xb[:, 0, 0].astype(int) // 5, yb)


def test_load_fn_rng_repeats_whatever_the_parallelism(npy_items):
    """A `load_fn(item, rng)` gets one generator per place in the stream: the same
    augmentations with any parallelism, from either pipeline, and after resuming."""
    paths, labels = npy_items
    sampler = PKSampler(labels, 4, 3, seed=2)
    delays = np.random.default_rng(0).uniform(0, 0.003, size=len(paths))

    def noisy_load(path, rng):
        i = int(os.path.basename(path)[:-4])
        time.sleep(delays[i])  # scramble the loaders' finishing order
        return np.load(path) + rng.normal(size=(3, 2)).astype("float32")

    n = sampler.steps_per_epoch + 2
    runs = [
        take(sampler.as_dataset(paths, load_fn=noisy_load, num_parallel_calls=k, items_per_call=g), n)
        for k, g in ((1, 12), (8, 1), (8, 5))
    ]
    for run in runs[1:]:
        for (xa, ya), (xb, yb) in zip(runs[0], run):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    first = runs[0]
    assert not np.array_equal(first[0][0], first[1][0])  # fresh draws per step
    noise = np.stack([x - x.round() for x, _ in first])
    assert noise.std() > 0.1  # the generator was used
    resumed = take(sampler.as_dataset(paths, load_fn=noisy_load, initial_epoch=1), 2)
    for (xa, _), (xb, _) in zip(first[sampler.steps_per_epoch :], resumed):
        np.testing.assert_array_equal(xa, xb)
    ds = PKPyDataset(paths, labels, 4, 3, seed=2, load_fn=noisy_load)
    for i in range(2):
        np.testing.assert_array_equal(ds[i][0], first[i][0])


def test_as_dataset_items_specs(npy_items):
    paths, labels = npy_items
    sampler = PKSampler(labels, 2, 2, seed=0)
    calls = []

    def load(path):
        calls.append(path)
        return np.load(path)

    ds = sampler.as_dataset(paths, load_fn=load, output_shape=(3, 2), output_dtype="float64")
    assert calls == []  # nothing loaded to find the shape
    assert ds.element_spec[0].shape == (4, 3, 2) and ds.element_spec[0].dtype == tf.float64
    xb, _ = take(ds, 1)[0]
    assert xb.dtype == np.float64

    def load_pair(path):
        a = np.load(path)
        return {"image": a, "mean": a.mean(keepdims=True)[0]}

    spec = {"image": tf.TensorSpec((3, 2), tf.float32), "mean": tf.TensorSpec((1,), tf.float32)}
    x, y = take(sampler.as_dataset(paths, load_fn=load_pair, element_spec=spec), 1)[0]
    assert x["image"].shape == (4, 3, 2) and x["mean"].shape == (4, 1)
    np.testing.assert_array_equal(x["image"][:, 0, 0], x["mean"][:, 0])
    x, y = take(sampler.as_dataset(paths, load_fn=load_pair), 1)[0]  # inferred structure
    assert x["mean"].shape == (4, 1)


def test_as_dataset_items_errors(npy_items):
    paths, labels = npy_items
    sampler = PKSampler(labels, 2, 2, seed=0)
    with pytest.raises(ValueError, match="39 items but `labels` has 40"):
        sampler.as_dataset(paths[:-1], load_fn=np.load)

    def bad_load(path):
        a = np.load(path)
        return a if a[0, 0] < 5 else a[:2]

    ds = sampler.as_dataset(paths, load_fn=bad_load)  # item 0 has shape (3, 2)
    with pytest.raises(Exception, match=r"returned shape \(2, 2\) for item .* must have shape"):
        take(ds, 2 * sampler.steps_per_epoch)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="runs once per suite, on the TensorFlow pass (a tf.distribute check in a fresh process)",
)
def test_mirrored_strategy_replicas_get_whole_classes():
    code = textwrap.dedent(
        """
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from keras_triplet.data import PKSampler
        labels = np.repeat(np.arange(12), 5)
        sampler = PKSampler(labels, classes_per_batch=6, samples_per_class=3, seed=0)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        x = np.arange(60, dtype="float32")[:, None]
        dist = strategy.experimental_distribute_dataset(sampler.as_dataset(x))
        for step, (xb, yb) in zip(range(4), dist):
            parts = [t.numpy() for t in strategy.experimental_local_results(yb)]
            assert [p.shape for p in parts] == [(9,), (9,)], parts
            for p in parts:
                blocks = p.reshape(3, 3)
                assert (blocks == blocks[:, :1]).all()
            assert (np.concatenate(parts) == labels[sampler.batch_indices(step)]).all()
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]


# ------------------------------------------------------------------------- PyDataset


def test_pydataset_matches_sampler():
    labels = imbalanced_labels(4)
    x = np.arange(labels.size, dtype="float32")[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = PKPyDataset(x, labels, 4, 2, seed=3)
        sampler = PKSampler(labels, 4, 2, seed=3)
    assert len(ds) == sampler.steps_per_epoch
    for i in range(len(ds)):
        xb, yb = ds[i]
        np.testing.assert_array_equal(xb[:, 0].astype(int), sampler.epoch_indices(0)[i])
        assert yb.dtype == np.int32
        check_batch(labels, xb[:, 0].astype(int), 4, 2, distinct_within_class=False)
    ds.on_epoch_end()  # what fit does before the first epoch: no change
    assert ds.epoch == 0
    ds.on_epoch_begin()
    ds.on_epoch_end()
    assert ds.epoch == 1
    np.testing.assert_array_equal(ds[0][0][:, 0].astype(int), sampler.epoch_indices(1)[0])
    with pytest.raises(IndexError):
        ds[len(ds)]
    copy = pickle.loads(pickle.dumps(ds))  # what use_multiprocessing=True needs
    np.testing.assert_array_equal(copy[1][0], ds[1][0])


def test_pydataset_items_and_dict(npy_items):
    paths, labels = npy_items
    ds = PKPyDataset(paths, labels, 2, 3, seed=1, load_fn=np.load, initial_epoch=2)
    sampler = PKSampler(labels, 2, 3, seed=1)
    xb, yb = ds[1]
    idx = sampler.epoch_indices(2)[1]
    assert xb.shape == (6, 3, 2)
    np.testing.assert_array_equal(xb[:, 0, 0].astype(int), idx)
    np.testing.assert_array_equal(yb, labels[idx])
    x = {"a": np.arange(40)[:, None], "b": np.zeros((40, 2))}
    xb, yb = PKPyDataset(x, labels, 2, 3, seed=1)[0]
    np.testing.assert_array_equal(xb["a"][:, 0], sampler.epoch_indices(0)[0])
    with pytest.raises(ValueError, match="first dimension 40"):
        PKPyDataset(np.zeros((39, 2)), labels, 2, 3)

    def bad_load(path):
        a = np.load(path)
        return a if a[0, 0] < 5 else a[:2]

    bad = PKPyDataset(paths, labels, 4, 2, load_fn=bad_load)
    with pytest.raises(ValueError, match="different shapes"):
        [bad[i] for i in range(len(bad))]


# ------------------------------------------------------------------------ model.fit


def tiny_model(classes):
    model = keras.Sequential(
        [
            keras.Input((3, 2)),
            keras.layers.Flatten(),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(classes),
        ]
    )
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_fit_with_tf_data_arrays_and_items(npy_items):
    paths, labels = npy_items
    x = np.stack([np.load(p) for p in paths])
    sampler = PKSampler(labels, 4, 2, seed=0)
    model = tiny_model(8)
    history = model.fit(
        sampler.as_dataset(x), steps_per_epoch=sampler.steps_per_epoch, epochs=2, verbose=0, shuffle=False
    )
    assert np.all(np.isfinite(history.history["loss"]))
    history = model.fit(
        sampler.as_dataset(paths, load_fn=np.load), steps_per_epoch=3, epochs=1, verbose=0, shuffle=False
    )
    assert np.all(np.isfinite(history.history["loss"]))


def test_fit_with_pydataset(npy_items):
    paths, labels = npy_items
    x = np.stack([np.load(p) for p in paths])
    served = []

    class Recording(PKPyDataset):
        def __getitem__(self, index):
            served.append((self.epoch, index))
            return super().__getitem__(index)

    ds = Recording(x, labels, 4, 2, seed=0)
    model = tiny_model(8)
    history = model.fit(ds, epochs=2, verbose=0, shuffle=False)
    assert len(history.history["loss"]) == 2 and np.all(np.isfinite(history.history["loss"]))
    # The last two passes are the two training epochs: all batches, two different epochs.
    last = served[-2 * len(ds) :]
    assert [i for _, i in last] == list(range(len(ds))) * 2
    assert len({e for e, _ in last[: len(ds)]}) == 1
    assert last[0][0] != last[-1][0]


def test_process_exits_with_a_live_items_pipeline(tmp_path):
    """An endless pipeline still prefetching at exit must not hang the interpreter."""
    code = textwrap.dedent(
        """
        import time
        import numpy as np
        from keras_triplet.data import PKSampler

        def busy_load(i):  # holds the GIL, like np.load or image decoding
            t = time.perf_counter()
            while time.perf_counter() - t < 0.0005:
                pass
            return np.zeros((8,), np.float32)

        sampler = PKSampler(np.repeat(np.arange(100), 10), 16, 4)
        it = iter(sampler.as_dataset(list(range(1000)), load_fn=busy_load))
        for _ in range(3):
            next(it)
        print("ok")
        """
    )
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]
