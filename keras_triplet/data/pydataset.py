"""`PKPyDataset`: P×K batches as a `keras.utils.PyDataset` (no TensorFlow needed)."""

import keras
import numpy as np

from keras_triplet.data._example_rng import example_rng, wants_rng
from keras_triplet.data._structure import flatten, pack
from keras_triplet.data.sampler import PKSampler


class PKPyDataset(keras.utils.PyDataset):
    """P×K class-balanced batches as a `keras.utils.PyDataset`, on any backend.

    The same batches as `PKSampler(labels, ...).as_dataset(x)` (the indices come from
    the same `PKSampler`), without TensorFlow. `len(dataset)` is
    `sampler.steps_per_epoch`; `dataset[i]` is batch `i` of the current epoch, a pure
    function of `(seed, epoch, i)`, so workers (threads or processes) do not change the
    batches. The epoch moves on after each pass Keras makes over the data
    (`on_epoch_begin` then `on_epoch_end`), so every training epoch gets fresh batches;
    note that on some backends the first `fit` of an unbuilt model makes one extra short
    pass to build it, which uses up epoch 0. Set `dataset.epoch` to pick an epoch by
    hand.

    `model.fit` shuffles the order of a PyDataset's batches by default (with Python's
    `random`); the batches are already in random order, so pass `shuffle=False` to get
    exactly the same run from the same seed.

    Args:
        x: in-memory data (a NumPy array, or a tuple / dict of arrays, first dimension
            `N = len(labels)`), or, with `load_fn`, a sequence of `N` items (file paths).
        labels: integer class labels, `[N]`.
        classes_per_batch, samples_per_class, seed, small_classes, num_shards,
            shard_index: as in `PKSampler`.
        load_fn: `load_fn(item) -> np.ndarray` (or a tuple / dict of arrays) of fixed
            shape; the examples of a batch are loaded one after the other and stacked.
            Use `workers=` to load several batches at once. A `load_fn` with an `rng`
            argument is called as `load_fn(item, rng=generator)`, with the same seeded
            generator per example as `PKSampler.as_dataset` gives (for random
            augmentation that repeats exactly).
        initial_epoch: the epoch to start from (to resume a run).
        workers, use_multiprocessing, max_queue_size: as in `keras.utils.PyDataset`.

    Attributes:
        sampler: the `PKSampler` that chooses the indices.
        epoch: the current epoch.

    Example:

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(60, 8)).astype("float32")
    >>> labels = np.repeat(np.arange(10), 6)
    >>> ds = PKPyDataset(x, labels, classes_per_batch=4, samples_per_class=3, seed=1)
    >>> len(ds)
    5
    >>> xb, yb = ds[0]
    >>> xb.shape, yb.dtype.name
    ((12, 8), 'int32')
    >>> # model.fit(ds, epochs=..., shuffle=False)
    """

    def __init__(
        self,
        x,
        labels,
        classes_per_batch,
        samples_per_class,
        seed=0,
        small_classes="replace",
        num_shards=1,
        shard_index=0,
        load_fn=None,
        initial_epoch=0,
        workers=1,
        use_multiprocessing=False,
        max_queue_size=10,
    ):
        super().__init__(
            workers=workers,
            use_multiprocessing=use_multiprocessing,
            max_queue_size=max_queue_size,
        )
        self.sampler = PKSampler(
            labels,
            classes_per_batch,
            samples_per_class,
            seed=seed,
            small_classes=small_classes,
            num_shards=num_shards,
            shard_index=shard_index,
            _warn_stacklevel=3,
        )
        N = self.sampler.labels.size
        if (
            isinstance(initial_epoch, bool)
            or not isinstance(initial_epoch, (int, np.integer))
            or initial_epoch < 0
        ):
            raise ValueError(f"`initial_epoch` must be an integer >= 0, got {initial_epoch!r}.")
        self.epoch = int(initial_epoch)
        self.load_fn = load_fn
        if load_fn is None:
            self._kind, self._keys, arrays = flatten(x, "x")
            self._arrays = [np.asarray(a) for a in arrays]
            for a in self._arrays:
                if a.ndim == 0 or a.shape[0] != N:
                    raise ValueError(
                        f"`x` must have first dimension {N} = len(labels), got shape "
                        f"{a.shape}. If `x` is a list of file paths or other items, pass "
                        "`load_fn=` to load them one by one."
                    )
        else:
            if not callable(load_fn):
                raise TypeError(f"`load_fn` must be callable, got {load_fn!r}.")
            if len(x) != N:
                raise ValueError(f"`x` has {len(x)} items but `labels` has {N}: give one label per item.")
            self._items = x

    def __len__(self):
        return self.sampler.steps_per_epoch

    def __getitem__(self, index):
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"Batch index must be an integer, got {index!r}.")
        if not 0 <= index < len(self):
            raise IndexError(f"Batch index {index} out of range [0, {len(self)}).")
        idx = self.sampler.epoch_indices(self.epoch)[int(index)]
        y = self.sampler._labels32[idx]
        if self.load_fn is None:
            return pack(self._kind, self._keys, [a[idx] for a in self._arrays]), y
        if wants_rng(self.load_fn):
            step = self.epoch * len(self) + int(index)
            examples = [
                self.load_fn(self._items[i], rng=example_rng(self.sampler, step, position))
                for position, i in enumerate(idx)
            ]
        else:
            examples = [self.load_fn(self._items[i]) for i in idx]
        kind, keys, first = flatten(examples[0], "load_fn")
        columns = [[] for _ in first]
        for example in examples:
            _, _, values = flatten(example, "load_fn")
            for column, v in zip(columns, values):
                column.append(np.asarray(v))
        stacked = []
        for column in columns:
            try:
                stacked.append(np.stack(column))
            except ValueError:
                shapes = sorted({c.shape for c in column})
                raise ValueError(
                    f"load_fn returned examples of different shapes in batch {index} of "
                    f"epoch {self.epoch} ({shapes}); every example must have the same "
                    "shape. Resize, crop or pad inside load_fn."
                ) from None
        return pack(kind, keys, stacked), y

    def on_epoch_begin(self):
        self._in_epoch = True

    def on_epoch_end(self):
        # `model.fit` also calls `on_epoch_end` when it resets its data iterator before
        # the first epoch; only a pass that began moves on to the next epoch. (Advancing
        # here, not in `on_epoch_begin`, matters: Keras starts the workers of the next
        # pass, which take a copy of this object, before it calls `on_epoch_begin`.)
        if getattr(self, "_in_epoch", False):
            self.epoch += 1
            self._in_epoch = False
