"""TripletModel on the current backend: training, statistics, jit, mixed precision,
saving, the functional form, the non-metric-loss fallback and the cross-batch memory."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_triplet import losses
from keras_triplet.distances import pairwise_distances
from keras_triplet.models import STATISTICS, TripletModel, in_batch_recall_at_1, step
from keras_triplet.models import memory as memory_module

BACKEND = keras.backend.backend()


# ---------------------------------------------------------------------------- helpers


def recall_at_1(embeddings, labels):
    """Leave-one-out Recall@1 with Euclidean distances, in NumPy."""
    e = np.asarray(embeddings, "float64")
    sq = (e * e).sum(1)
    d = sq[:, None] + sq[None, :] - 2 * e @ e.T
    np.fill_diagonal(d, np.inf)
    return float(np.mean(labels[np.argmin(d, axis=1)] == labels))


def mlp(input_dim=64, dim=16, seed=0, hidden=64):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((input_dim,)),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(dim),
        ],
        name="mlp",
    )


@pytest.fixture
def small_batch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 10)).astype("float32")
    y = np.repeat(np.arange(8), 4).astype("int32")
    return x, y


def compiled_model(input_dim=10, dim=8, loss=None, run_eagerly=False, **kwargs):
    """A small TripletModel. `run_eagerly=True` skips compiling the step functions (the
    slow part of a short test); the compiled paths are covered by `trained` and the jit,
    mixed-precision and digits tests."""
    model = TripletModel(mlp(input_dim, dim, hidden=16), **kwargs)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=loss or losses.TripletLoss(margin=0.2),
        run_eagerly=run_eagerly,
    )
    return model


# ---------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def trained(request):
    """One model with a cross-batch memory, fit for 2 epochs with validation (shared by
    several tests: every fit compiles a train function, which is the slow part)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 10)).astype("float32")
    y = np.repeat(np.arange(8), 4).astype("int32")
    model = compiled_model(memory_size=40, loss=losses.TripletLoss(margin=0.3))
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, validation_data=(x, y), shuffle=False)
    return model, history.history, x, y


def test_statistics_are_logged_in_history(trained):
    _, history, _, _ = trained
    for name in ("loss", *STATISTICS):
        for key in (name, "val_" + name):
            assert key in history, sorted(history)
            assert len(history[key]) == 2
            assert np.isfinite(history[key]).all()
    assert "recall@1" not in history and "val_recall@1" in history
    for name in ("active_fraction", "hard_fraction"):
        assert 0.0 <= history[name][-1] <= 1.0
    assert history["hard_fraction"][-1] <= history["active_fraction"][-1]
    assert history["embedding_norm"][-1] > 0.0
    assert 0.0 <= history["val_recall@1"][-1] <= 1.0


def test_evaluate_statistics_match_the_batch(trained):
    """`evaluate`'s loss and statistics equal those computed directly on the batch."""
    from keras_triplet.miners import triplet_statistics

    model, _, x, y = trained
    x, y = x[:16], y[:16]
    logs = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    raw = ops.convert_to_numpy(model.embedder(x))
    emb = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    stats = triplet_statistics(y, pairwise_distances(emb), margin=0.3)
    for name, value in stats.items():
        np.testing.assert_allclose(logs[name], float(value), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(logs["embedding_norm"], np.linalg.norm(raw, axis=1).mean(), rtol=1e-4)
    np.testing.assert_allclose(logs["recall@1"], recall_at_1(emb, y), atol=1e-6)
    expected_loss = losses.TripletLoss(margin=0.3)(y, emb)
    np.testing.assert_allclose(logs["loss"], float(expected_loss), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("run_eagerly", [True, False], ids=["eager", "compiled"])
def test_training_logs_the_norm_before_normalisation(small_batch, run_eagerly):
    """`embedding_norm` in the training logs is the embedder's output norm (the model's
    output, which compute_loss receives, has norm 1). A learning rate of 0 keeps the
    weights, so the logged value can be recomputed."""
    x, y = small_batch
    model = TripletModel(mlp(10, 8, hidden=16))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=losses.TripletLoss(), run_eagerly=run_eagerly)
    logs = model.train_on_batch(x, y, return_dict=True)
    raw = ops.convert_to_numpy(model.embedder(x))
    np.testing.assert_allclose(logs["embedding_norm"], np.linalg.norm(raw, axis=1).mean(), rtol=1e-5)
    assert abs(logs["embedding_norm"] - 1.0) > 1e-2
    assert "recall@1" not in logs
    # Called by hand on embeddings that the last call did not return, compute_loss logs
    # their own norm.
    model.compute_loss(x, y, ops.convert_to_tensor(2 * raw), training=False)
    np.testing.assert_allclose(
        float(model._statistic_trackers[STATISTICS.index("embedding_norm")].result()),
        np.mean([logs["embedding_norm"], 2 * np.linalg.norm(raw, axis=1).mean()]),
        rtol=1e-5,
    )


def test_regularisation_losses_are_added(small_batch):
    x, y = small_batch
    keras.utils.set_random_seed(0)
    embedder = keras.Sequential(
        [keras.Input((10,)), keras.layers.Dense(8, kernel_regularizer=keras.regularizers.L2(0.1))]
    )
    model = TripletModel(embedder)
    model.compile(optimizer="sgd", loss=losses.TripletLoss(margin=0.2))
    logs = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    kernel = ops.convert_to_numpy(embedder.layers[0].kernel.value)
    expected = float(losses.TripletLoss(margin=0.2)(y, model.embed(x))) + 0.1 * np.sum(kernel**2)
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-5)


def test_in_batch_recall_at_1_matches_numpy():
    rng = np.random.default_rng(3)
    e = rng.normal(size=(20, 4)).astype("float32")
    labels = rng.integers(0, 4, 20).astype("int32")
    value = in_batch_recall_at_1(ops.convert_to_tensor(labels), pairwise_distances(e))
    assert float(value) == pytest.approx(recall_at_1(e, labels))


def test_embed_returns_normalised_numpy(small_batch):
    x, _ = small_batch
    model = TripletModel(mlp(10, 8, hidden=16))
    e = model.embed(x, batch_size=7)
    assert isinstance(e, np.ndarray) and e.shape == (32, 8) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    raw = TripletModel(model.embedder, normalize=False).embed(x)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), e, atol=1e-5)


def test_functional_form(small_batch):
    x, y = small_batch
    inputs = keras.Input((10,))
    outputs = keras.layers.Dense(6)(keras.layers.Dense(12, activation="relu")(inputs))
    model = TripletModel(inputs, outputs)
    same = TripletModel(inputs=inputs, outputs=outputs)
    assert isinstance(model, keras.Model) and isinstance(model.embedder, keras.Model)
    np.testing.assert_allclose(model.embed(x), same.embed(x), atol=1e-6)
    model.compile(optimizer="adam", loss=losses.TripletLoss(miner="batch-hard"), run_eagerly=True)
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert "active_fraction" in history.history


@pytest.mark.parametrize(
    "loss",
    [
        lambda: losses.TripletLoss(miner="batch-all", distance="squared_euclidean"),
        lambda: losses.QuadrupletLoss(),
        lambda: losses.AngularLoss(),
    ],
    ids=["batch-all", "quadruplet", "angular"],
)
def test_every_library_loss_trains(small_batch, loss):
    x, y = small_batch
    model = compiled_model(loss=loss(), run_eagerly=True)
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    # active_fraction (hinges at a triplet margin) only for the losses that have one.
    assert ("active_fraction" in history.history) == (model.loss.margin is not None)
    assert "hard_fraction" in history.history


def test_non_metric_loss_falls_back_to_keras(small_batch):
    x, _ = small_batch
    target = np.eye(8, dtype="float32")[np.arange(32) % 8]
    model = TripletModel(mlp(10, 8, hidden=16))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse", metrics=["mae"], run_eagerly=True)
    history = model.fit(x, target, batch_size=16, epochs=3, verbose=0)
    assert set(history.history) == {"loss", "mae"}
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_sample_weight_is_rejected(small_batch):
    x, y = small_batch
    model = compiled_model(run_eagerly=True)
    with pytest.raises(ValueError, match="sample_weight"):
        model.fit(x, y, sample_weight=np.ones(32), batch_size=32, epochs=1, verbose=0)


def test_bad_arguments_raise_clear_errors(small_batch):
    with pytest.raises(TypeError, match="Keras layer or model"):
        TripletModel(lambda x: x)
    with pytest.raises(ValueError, match="embedding network"):
        TripletModel()
    with pytest.raises(ValueError, match="memory_size"):
        TripletModel(mlp(10, 4), memory_size=-1)
    for bad in (0, -2, 1.5, True, "3"):
        with pytest.raises(ValueError, match="statistics_freq"):
            TripletModel(mlp(10, 4), statistics_freq=bad)
    conv = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3)])
    with pytest.raises(ValueError, match="2-D embeddings"):
        TripletModel(conv).embed(np.zeros((2, 4, 4, 1), "float32"))


@pytest.mark.parametrize("width_padding", [0, 3])
def test_step_counts_all_query_columns_at_once_exactly(width_padding):
    """Steps that run op by op (`fused=False`) have a small direct search compare its
    query columns in one comparison (`DirectNegatives(broadcast=True)`): the same counts
    as the search's column loop, at ties (integer distances) and at each edge, with M
    padded or not; the statistics of such a step equal the reference's."""
    import reference as ref
    from test_miners import integer_distances

    from keras_triplet.miners import pair_masks
    from keras_triplet.miners.search import DirectNegatives, with_negatives

    for seed, labels in [(0, np.repeat(np.arange(4), 3)), (1, np.array([0, 0, 1, 1, 1, 2, 3, 3, 3, 3, 4]))]:
        d = integer_distances(seed, len(labels))
        y, dt = ops.convert_to_tensor(labels.astype("int32")), ops.convert_to_tensor(d.astype("float32"))
        positive, negative = pair_masks(y)
        width = int(np.max(np.sum(labels[:, None] == labels[None, :], axis=1))) - 1 + width_padding
        found = DirectNegatives(dt, negative, positive, min(width, len(labels)))
        counts = DirectNegatives(dt, negative, positive, min(width, len(labels)), broadcast=True)
        assert counts._across is not None and found._across is None
        for offset in (0.0, 1.0, 2.0):
            for inclusive in (False, True):
                np.testing.assert_array_equal(
                    ops.convert_to_numpy(counts.count_within(offset, inclusive)),
                    ops.convert_to_numpy(found.count_within(offset, inclusive)),
                )
        at_once = with_negatives(dt, negative, positive, lambda found: found._across is not None, fused=False)
        assert at_once
        _, stats = step.loss_and_statistics(losses.TripletLoss(margin=1.0), y, dt, fused=False)
        want = ref.triplet_statistics(labels, d, 1.0)
        for key in want:
            assert float(stats[key]) == pytest.approx(want[key], rel=1e-6, abs=1e-6), key


@pytest.mark.parametrize("jit_compile", ["auto", True])
def test_statistics_freq_computes_them_every_n_steps(jit_compile):
    """With `statistics_freq=3` the statistics are those of steps 0 and 3 of the epoch
    (the same values as with every step), the logs keep the last mean in between, and
    the loss, the norm and the training itself do not change."""
    if BACKEND == "torch" and jit_compile is True:
        pytest.skip("jit_compile=True is for TensorFlow (XLA) and JAX")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(80, 10)).astype("float32")
    y = np.repeat(np.arange(20), 4).astype("int32")

    def batch_logs(freq):
        model = TripletModel(mlp(10, 8, hidden=16), statistics_freq=freq)
        model.compile(
            optimizer=keras.optimizers.SGD(0.1), loss=losses.TripletLoss(margin=0.2), jit_compile=jit_compile
        )
        records = []
        record = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda batch, logs: records.append({k: float(v) for k, v in logs.items()})
        )
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[record])
        return model, records

    _, every = batch_logs(1)
    model, sparse = batch_logs(3)
    assert model.statistics_freq == 3 and len(every) == len(sparse) == 5
    for name in ("loss", "embedding_norm"):
        np.testing.assert_allclose([s[name] for s in sparse], [e[name] for e in every], rtol=1e-4)
    for name in ("active_fraction", "hard_fraction", "positive_distance", "negative_distance"):
        means = np.array([e[name] for e in every])
        steps = means * np.arange(1, 6) - np.concatenate([[0.0], means[:-1] * np.arange(1, 5)])
        expected = [steps[0]] * 3 + [np.mean(steps[[0, 3]])] * 2
        np.testing.assert_allclose([s[name] for s in sparse], expected, rtol=1e-4, atol=1e-6)
    config = model.get_config()
    assert config["statistics_freq"] == 3
    assert TripletModel.from_config(config).statistics_freq == 3
    # "auto" (the default): every 10th step, here the first of the five only.
    model, auto = batch_logs("auto")
    assert (
        model.statistics_freq == "auto"
        and TripletModel.from_config(model.get_config()).statistics_freq == "auto"
    )
    want = [
        dict(e, **{k: every[0][k] for k in every[0] if k.endswith(("_fraction", "_distance"))}) for e in every
    ]
    for name in ("loss", "active_fraction", "hard_fraction", "positive_distance", "negative_distance"):
        np.testing.assert_allclose([s[name] for s in auto], [w[name] for w in want], rtol=1e-4, atol=1e-6)


def test_statistics_step_test_is_python_where_the_step_runs_eagerly():
    """The every-N-th-step test reads the step count: on eager PyTorch (CPU) as a Python
    bool (no tensor operations; a skipped step leaves the statistics' trackers alone),
    elsewhere as a boolean tensor (a compiled step's); the same answer either way."""
    model = TripletModel(mlp(10, 8, hidden=16), statistics_freq=3)
    model.compile(optimizer="sgd", loss=losses.TripletLoss(margin=0.2))
    x = np.random.default_rng(0).normal(size=(32, 10)).astype("float32")
    model.fit(x, np.repeat(np.arange(8), 4), batch_size=16, epochs=1, verbose=0)
    norm = model._statistic_trackers[STATISTICS.index("embedding_norm")]
    for count, expected in ((5.0, False), (6.0, True), (0.0, True)):
        norm.count.assign(count)
        answer = model._statistics_this_step(True)
        if BACKEND == "torch":
            assert answer is expected
        else:
            assert bool(ops.convert_to_numpy(answer)) is expected
    assert model._statistics_this_step(False) is True  # evaluation: always


def test_tracker_results_follow_every_change_of_their_state():
    """The trackers' results are memoised between changes of their state on eager
    PyTorch (Keras reads them after every step): any update, reset, assignment or scoped
    state gives the new mean, and an unchanged state the same tensor."""
    model = TripletModel(mlp(10, 8, hidden=16))
    tracker = model._statistic_trackers[STATISTICS.index("active_fraction")]

    def result():
        return float(ops.convert_to_numpy(tracker.result()))

    assert result() == 0.0
    tracker.update_state(2.0)
    first = tracker.result()
    assert float(ops.convert_to_numpy(first)) == 2.0
    if BACKEND == "torch":
        assert tracker.result() is first  # unchanged: not computed again
    tracker.update_state(4.0, sample_weight=3.0)
    assert result() == 3.5
    tracker.count.assign(1.0)
    assert result() == 14.0
    with keras.StatelessScope(state_mapping=[(tracker.total, ops.ones(())), (tracker.count, ops.ones(()))]):
        assert result() == 1.0
    assert result() == 14.0
    tracker.reset_state()
    assert result() == 0.0


@pytest.mark.skipif(BACKEND == "torch", reason="jit_compile=True is for TensorFlow (XLA) and JAX")
def test_jit_compile(small_batch):
    x, y = small_batch
    model = TripletModel(mlp(10, 8, hidden=16), memory_size=48)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=losses.TripletLoss(margin=0.2),
        jit_compile=True,
    )
    assert model.jit_compile
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert int(ops.convert_to_numpy(model.memory.count.value)) == 48
    logs = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert np.isfinite(logs["recall@1"])


@pytest.mark.parametrize("jit_compile", [True, "auto"])
def test_partial_last_batch(jit_compile):
    """A last batch narrower than the direct search's static M (16) compiles and trains:
    TensorFlow may retrace with a dynamic batch size, JAX compiles the new shape."""
    if BACKEND == "torch" and jit_compile is True:
        pytest.skip("jit_compile=True is for TensorFlow (XLA) and JAX")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 10)).astype("float32")
    y = np.repeat(np.arange(10), 4).astype("int32")
    model = TripletModel(mlp(10, 8, hidden=16))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2), loss=losses.TripletLoss(margin=0.2), jit_compile=jit_compile
    )
    history = model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    logs = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    assert np.isfinite(logs["loss"]) and np.isfinite(logs["recall@1"])


def test_mixed_precision(small_batch):
    x, y = small_batch
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = TripletModel(mlp(10, 8, hidden=16))
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=losses.TripletLoss(margin=0.2))
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert model.embedder.layers[0].compute_dtype == "float16"
        history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
        e = model.embed(x)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert np.isfinite(history.history["loss"]).all()
    assert e.dtype == np.float32 and np.isfinite(e).all()
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-3)
    assert keras.mixed_precision.global_policy().name == previous.name


def test_save_and_load(tmp_path, trained):
    model, _, x, _ = trained
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is TripletModel
    assert loaded.memory_size == 40 and loaded.normalize
    np.testing.assert_allclose(loaded.embed(x), model.embed(x), atol=1e-6)
    for saved, restored in zip(model.memory.state_variables, loaded.memory.state_variables):
        np.testing.assert_array_equal(ops.convert_to_numpy(saved.value), ops.convert_to_numpy(restored.value))
    assert isinstance(loaded.loss, losses.TripletLoss) and loaded.loss.margin == 0.3
    assert isinstance(loaded.optimizer, keras.optimizers.Adam)


# ---------------------------------------------------------------------------- memory


def fifo_reference(batches, size):
    """The last `size` (embedding, label) pairs, slot by slot, in NumPy."""
    rows, labels = [], []
    for e, l in batches:
        rows.extend(e)
        labels.extend(l)
    memory = np.zeros((size, batches[0][0].shape[1]), "float32")
    memory_labels = np.full(size, -1)
    for i, (e, l) in enumerate(zip(rows, labels)):
        memory[i % size] = e
        memory_labels[i % size] = l
    return memory, memory_labels, min(len(rows), size), len(rows) % size


@pytest.mark.parametrize("batch_sizes", [(3, 3, 3), (5, 2), (9,), (4, 7, 2)])
def test_memory_push_is_a_fifo(batch_sizes):
    size = 6
    memory = memory_module.CrossBatchMemory(size)
    memory.build(2)
    state = memory.state()
    rng = np.random.default_rng(0)
    batches = []
    for b in batch_sizes:
        e = rng.normal(size=(b, 2)).astype("float32")
        l = rng.integers(0, 100, b)
        batches.append((e, l))
        state = memory_module.push(state, e, l)
    expected = fifo_reference(batches, size)
    got = [ops.convert_to_numpy(v) for v in state]
    np.testing.assert_allclose(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert int(got[2]) == expected[2] and int(got[3]) == expected[3]
    valid = ops.convert_to_numpy(memory_module.valid_mask(state))
    np.testing.assert_array_equal(valid, expected[1] >= 0)


def test_memory_is_filled_by_training(trained):
    model, _, x, y = trained
    # 2 epochs × 2 batches of 16 = 64 rows through a memory of 40: the last 40, FIFO.
    state = [ops.convert_to_numpy(v) for v in model.memory.state()]
    assert int(state[2]) == 40 and int(state[3]) == 64 % 40
    expected_labels = fifo_reference([(np.zeros((16, 1)), y[:16]), (np.zeros((16, 1)), y[16:])] * 2, 40)[1]
    np.testing.assert_array_equal(state[1], expected_labels)
    np.testing.assert_allclose(np.linalg.norm(state[0], axis=1), 1.0, atol=1e-4)


def test_memory_enters_the_training_loss(small_batch):
    """With memory, the step's loss is the loss on [B, B + M] (batch ++ memory)."""
    x, y = small_batch
    model = compiled_model(
        memory_size=24, loss=losses.TripletLoss(margin=0.5, miner="batch-all"), run_eagerly=True
    )
    model.build((None, 10))
    rng = np.random.default_rng(1)
    stored = rng.normal(size=(24, 8)).astype("float32")
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    stored_labels = np.where(np.arange(24) < 20, np.arange(24) % 8, -1).astype("int32")
    model.memory.assign((stored, stored_labels, np.int32(20), np.int32(20)))

    emb = model(x[:16])
    loss, stats, new_state = step.batch_loss_and_statistics(
        model.loss, ops.convert_to_tensor(y[:16]), emb, model.memory.state(), training=True
    )
    emb = ops.convert_to_numpy(emb)
    d = pairwise_distances(emb, np.concatenate([emb, stored]))
    ref_labels = np.concatenate([y[:16], stored_labels])
    expected = model.loss.compute_from_distances(
        ops.convert_to_tensor(y[:16]), d, ref_labels=ops.convert_to_tensor(ref_labels)
    )
    np.testing.assert_allclose(ops.convert_to_numpy(loss), float(expected), rtol=1e-5, atol=1e-6)
    assert abs(float(expected) - float(model.loss(y[:16], emb))) > 1e-4  # memory mattered
    new_state = [ops.convert_to_numpy(v) for v in new_state]
    assert int(new_state[2]) == 24 and int(new_state[3]) == (20 + 16) % 24
    np.testing.assert_allclose(new_state[0][20:24], emb[:4], atol=1e-6)
    np.testing.assert_allclose(new_state[0][:12], emb[4:], atol=1e-6)

    # The model's compute_loss (the hook Keras' train_step calls) is that step: the same
    # loss, and the memory pushed after the loss read it.
    hook_loss = model.compute_loss(x[:16], ops.convert_to_tensor(y[:16]), model(x[:16]), training=True)
    np.testing.assert_allclose(ops.convert_to_numpy(hook_loss), float(expected), rtol=1e-5, atol=1e-6)
    for pushed, value in zip(new_state, model.memory.state()):
        np.testing.assert_allclose(ops.convert_to_numpy(value), pushed, atol=1e-6)
    model.memory.assign((stored, stored_labels, np.int32(20), np.int32(20)))

    # evaluate neither uses nor changes the memory.
    logs = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    np.testing.assert_array_equal(ops.convert_to_numpy(model.memory.labels.value), stored_labels)
    expected = model.loss(y, model.embed(x))
    np.testing.assert_allclose(logs["loss"], float(expected), rtol=1e-4, atol=1e-6)


def test_a_second_fit_does_not_trace_the_step_again(small_batch, monkeypatch):
    # Keras rebuilds the whole step symbolically at every `fit` call while its compiled-loss
    # container is unbuilt; the metric loss bypasses that container, so TripletModel builds
    # it. Compiled backends then run the second `fit` without calling compute_loss in
    # Python at all; eager PyTorch calls it once per step, never once more.
    x, y = small_batch
    model = compiled_model()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    calls = []
    original = TripletModel.compute_loss

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TripletModel, "compute_loss", counting)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert len(calls) == (2 if BACKEND == "torch" else 0)
