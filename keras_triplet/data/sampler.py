"""P×K class-balanced batches: `PKSampler`, which chooses the indices of every batch.

A P×K batch holds `P` distinct classes with `K` examples each, the `K` examples of a
class next to each other. Every online miner needs such batches: a batch drawn at
random from a data set with many classes seldom holds two examples of the same class,
so it has no positive pair to learn from.

All the randomness lives here, in NumPy, as a pure function of `(seed, epoch)`: the
`tf.data` pipelines (`PKSampler.as_dataset`) and the backend-free
`keras_triplet.data.PKPyDataset` only look up and load the examples whose indices this
module chose. The same seed therefore gives the same batches whatever the parallelism
of the input pipeline, the backend or the number of workers.

This module is that choice, in NumPy and backend-free. The pipelines that load the
chosen examples live apart: `tf_dataset.py` (`PKSampler.as_dataset`, `tf.data`; TensorFlow
is imported only when it is called) and `pydataset.py` (`PKPyDataset`).
"""

import math
import threading
import warnings

import numpy as np

from keras_triplet._validation import check_int, check_label_array
from keras_triplet.data.tf_dataset import make_dataset

_SMALL_CLASSES = ("replace", "drop")
_MAX_LISTED = 10  # how many class labels a warning names


def _some(values):
    """`values` (an array of labels) as a short string: the first few, then '...'."""
    values = [int(v) for v in values[:_MAX_LISTED]]
    text = ", ".join(str(v) for v in values)
    return text + (", ..." if len(values) == _MAX_LISTED else "")


class PKSampler:
    """Draws class-balanced batches: `P` classes × `K` examples, each class contiguous.

    The sampler only chooses indices (in NumPy, from `seed`); `as_dataset` turns them
    into an endless `tf.data.Dataset` of `(x_batch, y_batch)` that Keras accepts as
    input on TensorFlow, JAX and PyTorch, and `keras_triplet.data.PKPyDataset` turns
    them into a `keras.utils.PyDataset` for users without TensorFlow.

    **How an epoch is drawn.** Each class's examples are shuffled and cut into chunks of
    `K` (the last chunk is topped up with the first examples of the shuffled order, so
    a chunk never repeats an example when the class has at least `K`). A class with
    fewer than `K` examples gives one chunk: all its examples, then draws with
    replacement (`small_classes="replace"`), or it is left out (`"drop"`). The chunks of
    all classes are interleaved at random, each class spread evenly over the epoch, and
    taken `P` at a time into batches, a chunk whose class is already in the batch
    waiting for the next batch. When fewer than `P` classes have chunks left (the end
    of the epoch), fresh random chunks of other classes fill the batch.

    **`steps_per_epoch`** `= ceil(M / P)` where `M = Σ_c max(1, ceil(n_c / K))` is the
    number of chunks over the usable classes (`n_c` examples in class `c`). So one
    epoch shows each example about once; a class holding more than about `1/P` of the
    data cannot be shown fully (at most one chunk of it per batch), and its extra
    chunks are skipped that epoch. Epochs are independent: epoch `e` is a function of
    `(seed, e)` only.

    **Shards (multi-host or per-device input).** `classes_per_batch` is always the
    *global* `P`. With `num_shards=S`, shard `shard_index` gets classes
    `[shard_index · P/S, (shard_index + 1) · P/S)` of every global batch (so `P` must
    be a multiple of `S`): each shard's batch is `(P/S)·K` examples, whole classes
    only, and all shards together see exactly the global batch, because every shard
    computes the same global sequence from the same seed. Typical uses:

    - one host, `tf.distribute.MirroredStrategy` (or Keras' JAX `DataParallel`): keep
      `num_shards=1` and make `P` a multiple of the number of replicas; Keras splits the
      global batch of `P·K` into equal consecutive slices, so each replica gets
      `P/replicas` whole classes.
    - several processes, each feeding its own devices (Keras' JAX `DataParallel` over
      several hosts, or `tf.distribute`'s `distribute_datasets_from_function` with one
      replica per input pipeline): on process `h` of `H`,
      `PKSampler(..., num_shards=H, shard_index=h)` with the same seed everywhere (for
      `distribute_datasets_from_function`, `H = context.num_input_pipelines` and
      `h = context.input_pipeline_id`). Each process's `(P/H)·K` batch is split among
      its local devices, so make `P` a multiple of the total number of devices.

    Args:
        labels: integer class label of each example, shape `[N]` (or `[N, 1]`).
        classes_per_batch: `P`, the number of distinct classes in a (global) batch,
            at least 2 (a batch with one class has no negatives).
        samples_per_class: `K`, the number of examples of each class in a batch,
            at least 2 (a class with one example in the batch has no positive pair).
        seed: integer seed of the whole sequence of batches (`None`: a random seed,
            stored in `self.seed` so the run can be repeated).
        small_classes: what to do with classes that have fewer than `K` examples:
            `"replace"` (default) samples them with replacement (every example once,
            then random repeats), `"drop"` leaves them out (listed in
            `dropped_classes`).
        num_shards: the number of shards the global batch is split into (see above).
        shard_index: which shard this sampler feeds, in `[0, num_shards)`.

    Attributes:
        classes: the usable class labels (sorted), `[C]`.
        class_counts: the number of examples of each usable class, `[C]`.
        singleton_classes: the labels of the classes with a single example (a
            `UserWarning` reports them too): with `"replace"` their `K` samples are
            copies of one example, i.e. positive pairs at distance 0.
        dropped_classes: the labels left out by `small_classes="drop"`.
        num_examples: the number of examples in the usable classes.
        steps_per_epoch: see above.
        batch_size: the size of this shard's batches, `(P / num_shards) · K`.
        global_batch_size: `P · K`.

    Example:

    >>> import numpy as np
    >>> labels = np.repeat(np.arange(10), 6)          # 10 classes, 6 examples each
    >>> sampler = PKSampler(labels, classes_per_batch=4, samples_per_class=3, seed=1)
    >>> sampler.steps_per_epoch, sampler.batch_size   # 20 chunks of 3, 4 per batch
    (5, 12)
    >>> batch = sampler.batch_indices(0)              # indices into the data set
    >>> len(np.unique(labels[batch]))                 # 4 distinct classes ...
    4
    >>> bool(np.all(labels[batch].reshape(4, 3) == labels[batch][::3, None]))  # ... 3 each
    True

    With TensorFlow installed, `as_dataset` gives the input for `model.fit`:

    >>> x = np.random.default_rng(0).normal(size=(60, 8)).astype("float32")
    >>> ds = sampler.as_dataset(x)                    # endless (x_batch, y_batch)
    >>> xb, yb = next(iter(ds))
    >>> tuple(xb.shape), yb.dtype.name
    ((12, 8), 'int32')
    >>> # model.fit(ds, steps_per_epoch=sampler.steps_per_epoch, epochs=...)
    """

    def __init__(
        self,
        labels,
        classes_per_batch,
        samples_per_class,
        seed=0,
        small_classes="replace",
        num_shards=1,
        shard_index=0,
        *,
        _warn_stacklevel=2,
    ):
        labels = check_label_array(labels, strings=False, int32=True)
        if labels.size == 0:
            raise ValueError("`labels` is empty: the sampler needs at least one example.")
        P = check_int(
            "classes_per_batch",
            classes_per_batch,
            2,
            "a batch with a single class has no negatives",
        )
        K = check_int(
            "samples_per_class",
            samples_per_class,
            2,
            "each class needs at least 2 examples in a batch to form a positive pair",
        )
        if small_classes not in _SMALL_CLASSES:
            raise ValueError(f"`small_classes` must be one of {_SMALL_CLASSES}, got {small_classes!r}.")
        num_shards = check_int("num_shards", num_shards, 1, "the number of shards")
        shard_index = check_int("shard_index", shard_index, 0, "a shard number")
        if shard_index >= num_shards:
            raise ValueError(
                f"`shard_index` must be in [0, num_shards) = [0, {num_shards}), got {shard_index}."
            )
        if P % num_shards:
            raise ValueError(
                f"`classes_per_batch` ({P}) is the global number of classes per batch and "
                f"must be a multiple of `num_shards` ({num_shards}) so that every shard "
                "gets whole classes. Use e.g. "
                f"classes_per_batch={max(num_shards, P // num_shards * num_shards)}."
            )
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, np.uint32)[0])
        seed = check_int("seed", seed, 0, "NumPy seeds are non-negative")

        classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        self.singleton_classes = classes[counts == 1]
        usable = counts >= (K if small_classes == "drop" else 1)
        self.dropped_classes = classes[~usable]
        if self.singleton_classes.size:
            n = self.singleton_classes.size
            fate = (
                "they are dropped (small_classes='drop')"
                if small_classes == "drop"
                else f"each is sampled as {K} copies of its one example, giving positive "
                "pairs at distance 0 (pass small_classes='drop' to leave them out)"
            )
            warnings.warn(
                f"PKSampler: {n} class{'es' if n > 1 else ''} ha{'ve' if n > 1 else 's'} a "
                f"single example (labels {_some(self.singleton_classes)}); {fate}. The "
                "full list is in `sampler.singleton_classes`.",
                UserWarning,
                stacklevel=_warn_stacklevel,
            )
        C = int(usable.sum())
        if C < P:
            reason = ""
            if self.dropped_classes.size:
                reason = (
                    f" ({self.dropped_classes.size} of the {classes.size} classes have fewer "
                    f"than samples_per_class={K} examples and small_classes='drop' leaves "
                    "them out)"
                )
            fixes = [f"lower classes_per_batch to at most {C}" if C >= 2 else "add classes"]
            if self.dropped_classes.size:
                fixes.append("use small_classes='replace'")
                fixes.append("lower samples_per_class")
            raise ValueError(
                f"classes_per_batch={P} is larger than the number of usable classes, "
                f"{C}{reason}: a batch needs {P} distinct classes. To fix it, " + " or ".join(fixes) + "."
            )

        self.labels = labels
        self.classes_per_batch = P
        self.samples_per_class = K
        self.seed = seed
        self.small_classes = small_classes
        self.num_shards = num_shards
        self.shard_index = shard_index
        self.classes = classes[usable]
        self.class_counts = counts[usable]
        self.num_examples = int(self.class_counts.sum())
        self.global_batch_size = P * K
        self.batch_size = P // num_shards * K

        # The members of the usable classes, grouped by class (ascending label), each
        # group in ascending example index.
        order = np.argsort(inverse, kind="stable")
        keep = usable[inverse[order]]
        self._members = order[keep].astype(np.int64)
        self._member_class = np.repeat(np.arange(C), self.class_counts)
        self._offsets = np.cumsum(self.class_counts) - self.class_counts
        self._chunks = np.maximum(1, -(-self.class_counts // K))  # ceil(n_c / K), >= 1
        self.num_chunks = int(self._chunks.sum())
        self.steps_per_epoch = math.ceil(self.num_chunks / P)

        self._labels32 = labels.astype(np.int32)
        self._cache = {}
        self._lock = threading.Lock()

    def __repr__(self):
        return (
            f"PKSampler(classes_per_batch={self.classes_per_batch}, "
            f"samples_per_class={self.samples_per_class}, seed={self.seed}, "
            f"small_classes={self.small_classes!r}, num_shards={self.num_shards}, "
            f"shard_index={self.shard_index}; {self.classes.size} classes, "
            f"{self.num_examples} examples, steps_per_epoch={self.steps_per_epoch})"
        )

    # Pickling (PyDataset workers with use_multiprocessing=True): the lock and the cache
    # stay behind.
    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"] = {}
        state.pop("_lock")
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ index generation

    def _fresh_chunk(self, rng, c):
        """`K` random member positions of class `c` (distinct when the class allows)."""
        n, K = int(self.class_counts[c]), self.samples_per_class
        if n >= K:
            ranks = rng.choice(n, size=K, replace=False)
        else:
            ranks = np.concatenate([rng.permutation(n), rng.integers(0, n, size=K - n)])
        return self._members[self._offsets[c] + ranks]

    def _draw_epoch(self, epoch):
        """The global batches of `epoch`: int64 `[steps_per_epoch, P·K]` indices."""
        P, K = self.classes_per_batch, self.samples_per_class
        C, M, S = self.classes.size, self.num_chunks, self.steps_per_epoch
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch]))

        # 1. Shuffle within each class: members sorted by (class, random key).
        keys = (self._member_class.astype(np.uint64) << np.uint64(32)) | rng.integers(
            0, 2**32, size=self._members.size, dtype=np.uint64
        )
        shuffled = self._members[np.argsort(keys)]

        # 2. Cut each class into chunks of K (rank = position in the class's shuffle).
        chunk_class = np.repeat(np.arange(C), self._chunks)
        chunk_j = np.arange(M) - np.repeat(np.cumsum(self._chunks) - self._chunks, self._chunks)
        n = self.class_counts[chunk_class][:, None]
        ranks = chunk_j[:, None] * K + np.arange(K)
        # n >= K: wrap around to the first ranks (not in the last chunk, so distinct);
        # n < K (one chunk): every example once, then random repeats.
        repeats = rng.integers(0, np.broadcast_to(n, ranks.shape))
        ranks = np.where(ranks < n, ranks, np.where(n >= K, ranks % n, repeats))
        chunk_members = shuffled[self._offsets[chunk_class][:, None] + ranks]

        # 3. Interleave the chunks: chunk j of class c at a random point of the j-th of
        # its m_c equal strata of [0, 1), so each class is spread evenly over the epoch.
        position = (chunk_j + rng.random(M)) / self._chunks[chunk_class]
        stream = np.argsort(position, kind="stable").tolist()
        stream_class = chunk_class.tolist()

        # 4. Take P chunks of distinct classes per batch; a chunk whose class is already
        # in the batch waits (in `pending`) for the next batch. Chunks are ids here
        # (fresh chunks get ids M, M+1, ...); the members are gathered once at the end.
        chosen = []
        fresh = []
        pending = {}  # class -> list of waiting chunks (insertion-ordered)
        pos = 0
        for _ in range(S):
            row = []
            used = set()
            for c in list(pending)[:P]:
                waiting = pending[c]
                row.append(waiting.pop(0))
                used.add(c)
                if not waiting:
                    del pending[c]
            while len(row) < P and pos < M:
                chunk = stream[pos]
                pos += 1
                c = stream_class[chunk]
                if c in used:
                    pending.setdefault(c, []).append(chunk)
                else:
                    row.append(chunk)
                    used.add(c)
            if len(row) < P:  # end of the epoch: fresh chunks of other classes
                others = np.setdiff1d(np.arange(C), np.fromiter(used, dtype=np.int64))
                for c in rng.choice(others, size=P - len(row), replace=False):
                    row.append(M + len(fresh))
                    fresh.append(self._fresh_chunk(rng, int(c)))
            chosen.append(row)
        if fresh:
            chunk_members = np.concatenate([chunk_members, np.stack(fresh)])
        return chunk_members[np.asarray(chosen, dtype=np.int64)].reshape(S, P * K)

    def _global_epoch(self, epoch):
        with self._lock:
            batches = self._cache.get(epoch)
            if batches is None:
                batches = self._draw_epoch(epoch)
                if len(self._cache) >= 2:  # the current and the next epoch
                    self._cache.pop(min(self._cache))
                self._cache[epoch] = batches
            return batches

    def epoch_indices(self, epoch):
        """This shard's batches of `epoch`, int64 `[steps_per_epoch, batch_size]`.

        Row `i` lists the example indices of batch `i` of the epoch, the `K` examples
        of each class contiguous. A pure function of `(seed, epoch)` and the shard.

        >>> s = PKSampler([0, 0, 1, 1, 2, 2], classes_per_batch=2, samples_per_class=2)
        >>> s.epoch_indices(0).shape
        (2, 4)
        """
        epoch = check_int("epoch", epoch, 0, "epochs count from 0")
        width = self.batch_size
        start = self.shard_index * width
        return self._global_epoch(epoch)[:, start : start + width]

    def batch_indices(self, step):
        """This shard's example indices for global step `step` (counting from 0 across
        epochs: step `s` is batch `s % steps_per_epoch` of epoch `s // steps_per_epoch`),
        int64 `[batch_size]`.

        >>> s = PKSampler([0, 0, 1, 1, 2, 2], classes_per_batch=2, samples_per_class=2)
        >>> s.batch_indices(3).shape
        (4,)
        """
        step = check_int("step", step, 0, "steps count from 0")
        epoch, i = divmod(step, self.steps_per_epoch)
        return self.epoch_indices(epoch)[i]

    def batch_labels(self, step):
        """The int32 labels of `batch_indices(step)`."""
        return self._labels32[self.batch_indices(step)]

    # ----------------------------------------------------------------- tf.data pipelines
    def as_dataset(
        self,
        x,
        load_fn=None,
        *,
        output_shape=None,
        output_dtype=None,
        element_spec=None,
        initial_epoch=0,
        num_parallel_calls=None,
        items_per_call=None,
    ):
        """An endless `tf.data.Dataset` of `(x_batch, y_batch)` P×K batches.

        `y_batch` is int32 `[batch_size]`; batches come in the order of
        `batch_indices(0), batch_indices(1), ...` (from `initial_epoch`), whatever the
        parallelism. Use it as `model.fit(ds, steps_per_epoch=sampler.steps_per_epoch)`
        on any backend.

        Two ways to give the data:

        - **In-memory arrays** (`load_fn=None`): `x` is a NumPy array, or a tuple or
          dict of arrays, with first dimension `N = len(labels)`. Each batch is
          gathered in NumPy (the arrays are not copied into the TensorFlow graph, so
          their size is not limited by the 2 GB graph limit).
        - **Items loaded one by one** (`load_fn` given): `x` is a sequence of `N` items
          (file paths, ids, ...) and `load_fn(item)` returns the example as a NumPy
          array (or a tuple / dict of arrays) of fixed shape. Items are loaded in
          parallel (`tf.numpy_function` calls, each loading `items_per_call` items, in
          `map(num_parallel_calls=AUTOTUNE)`, order kept), batched and prefetched;
          only the batches in flight are in memory.
          **Random augmentation** belongs in a `load_fn` with an `rng` argument:
          it is called as `load_fn(item, rng=generator)`, with a NumPy generator
          seeded by the example's place in the stream (`seed`, shard, step, position
          in the batch), so the same run gets the same augmentations whatever the
          parallelism and after resuming at `initial_epoch` (a generator shared by
          the calls would follow their order, which parallel loading changes).
          The shape and dtype are found by loading `x[0]` once, unless given by
          `output_shape` / `output_dtype`, or by `element_spec` (a `tf.TensorSpec`, or
          a tuple / dict of them, for structured examples).

        Args:
            x: the arrays or the items (see above).
            load_fn: `load_fn(item) -> np.ndarray` (or `load_fn(item, rng)`: see
                above), or `None` for arrays.
            output_shape: the shape of one loaded example (items only).
            output_dtype: its dtype (items only; default: the dtype of `x[0]` loaded,
                or float32 when only `output_shape` is given).
            element_spec: the `tf.TensorSpec` (structure) of one example (items only);
                replaces `output_shape`/`output_dtype`.
            initial_epoch: start at the first batch of this epoch (to resume).
            num_parallel_calls: parallelism of the gather / load map
                (default `tf.data.AUTOTUNE`).
            items_per_call: items only: how many consecutive items of a batch one
                `tf.numpy_function` call loads (one after the other), the calls running
                in parallel. Larger groups cut the per-call overhead of
                `tf.numpy_function`; smaller ones give more parallelism. Default 16;
                rounded down to a divisor of the batch size.

        Example (items, here `.npy` files):

        >>> import os, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> paths = []
        >>> for i in range(12):
        ...     paths.append(os.path.join(folder, f"{i}.npy"))
        ...     np.save(paths[-1], np.full((2, 3), i, dtype="float32"))
        >>> sampler = PKSampler(np.arange(12) // 3, classes_per_batch=2, samples_per_class=3)
        >>> ds = sampler.as_dataset(paths, load_fn=np.load)
        >>> xb, yb = next(iter(ds))
        >>> tuple(xb.shape), bool(np.all(xb.numpy()[:, 0, 0] // 3 == yb.numpy()))
        ((6, 2, 3), True)
        """
        return make_dataset(
            self,
            x,
            load_fn,
            output_shape=output_shape,
            output_dtype=output_dtype,
            element_spec=element_spec,
            initial_epoch=initial_epoch,
            num_parallel_calls=num_parallel_calls,
            items_per_call=items_per_call,
        )
