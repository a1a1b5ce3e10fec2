"""The `tf.data` pipelines of `PKSampler.as_dataset`: P×K batches as an endless dataset.

The indices of every batch come from the sampler (NumPy, `keras_triplet.data.sampler`);
here they only become a `tf.data.Dataset` of `(x_batch, y_batch)`:

- in-memory arrays: a `tf.numpy_function` gathers each batch's rows (the arrays stay
  out of the TensorFlow graph, so their size is not limited by its 2 GB);
- items loaded one by one (`load_fn`): each batch's indices are split into groups of
  `items_per_call`, loaded in parallel (`map(num_parallel_calls=...)`, order kept) and
  merged back into the batch.

TensorFlow is imported only when a pipeline is built.
"""

import numpy as np

from keras_triplet._validation import check_int
from keras_triplet.data._example_rng import example_rng, wants_rng
from keras_triplet.data._structure import flatten, pack
from keras_triplet.data._tensorflow_exit import ACTIVITY


def import_tensorflow():
    try:
        import tensorflow as tf
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "PKSampler.as_dataset builds a tf.data pipeline and needs TensorFlow "
            "(`pip install tensorflow` or `tensorflow-cpu`). Without TensorFlow use "
            "`keras_triplet.data.PKPyDataset`, which gives the same batches as a "
            "keras.utils.PyDataset."
        ) from error
    return tf


def make_dataset(
    sampler,
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
    """`sampler.as_dataset(x, ...)`: see `PKSampler.as_dataset` for the arguments."""
    tf = import_tensorflow()
    initial_epoch = check_int("initial_epoch", initial_epoch, 0, "epochs count from 0")
    if num_parallel_calls is None:
        num_parallel_calls = tf.data.AUTOTUNE
    steps = tf.data.Dataset.counter(start=initial_epoch * sampler.steps_per_epoch)
    if load_fn is None:
        if any(a is not None for a in (output_shape, output_dtype, element_spec, items_per_call)):
            raise ValueError(
                "`output_shape`, `output_dtype`, `element_spec` and `items_per_call` "
                "are about items loaded with `load_fn`; without `load_fn` the arrays' "
                "own shapes are used. Drop them, or pass `load_fn`."
            )
        return _array_pipeline(tf, sampler, steps, x, num_parallel_calls)
    return _item_pipeline(
        tf,
        sampler,
        steps,
        x,
        load_fn,
        output_shape,
        output_dtype,
        element_spec,
        num_parallel_calls,
        items_per_call,
    )


def _array_pipeline(tf, sampler, steps, x, num_parallel_calls):
    """In-memory arrays: one `tf.numpy_function` gathers each batch's rows."""
    N = sampler.labels.size
    kind, keys, arrays = flatten(x, "x")
    arrays = [np.asarray(a) for a in arrays]
    for name, a in zip(keys or range(len(arrays)), arrays):
        if a.ndim == 0 or a.shape[0] != N:
            where = "" if kind == "array" else f" (entry {name!r})"
            raise ValueError(
                f"`x`{where} must have first dimension {N} = len(labels), got "
                f"shape {a.shape}. If `x` is a list of file paths or other items, "
                "pass `load_fn=` to load them one by one."
            )
        if a.dtype == object:
            raise TypeError(
                f"`x`{'' if kind == 'array' else f' (entry {name!r})'} has dtype "
                "object; pass numeric arrays, or items with a `load_fn`."
            )
    labels32 = sampler._labels32
    batch = sampler.batch_size

    @ACTIVITY.wrap
    def gather(step):
        idx = sampler.batch_indices(int(step))
        return [a[idx] for a in arrays] + [labels32[idx]]

    tout = [tf.as_dtype(a.dtype) for a in arrays] + [tf.int32]

    def fetch(step):
        *values, y = tf.numpy_function(gather, [step], tout, name="pk_gather")
        for v, a in zip(values, arrays):
            v.set_shape((batch,) + a.shape[1:])
        y.set_shape((batch,))
        return pack(kind, keys, values), y

    ds = steps.map(fetch, num_parallel_calls=num_parallel_calls, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def _item_pipeline(
    tf,
    sampler,
    steps,
    items,
    load_fn,
    output_shape,
    output_dtype,
    element_spec,
    num_parallel_calls,
    items_per_call,
):
    """Items loaded by `load_fn`, in parallel groups of `items_per_call`, order kept."""
    N = sampler.labels.size
    if not callable(load_fn):
        raise TypeError(f"`load_fn` must be callable, got {load_fn!r}.")
    try:
        n_items = len(items)
    except TypeError:
        raise TypeError(
            "With `load_fn`, `x` must be a sequence of items (e.g. a list of file "
            f"paths) with len(x) == len(labels) == {N}; got {type(items).__name__}."
        ) from None
    if n_items != N:
        raise ValueError(f"`x` has {n_items} items but `labels` has {N}: give one label per item.")
    seeded = wants_rng(load_fn)
    # The shape probe's randomness does not matter: it only reads the shape.
    probe = (lambda item: load_fn(item, rng=np.random.default_rng(0))) if seeded else load_fn
    kind, keys, specs = _item_specs(tf, items, probe, output_shape, output_dtype, element_spec)
    shapes = [tuple(s.shape.as_list()) for s in specs]
    dtypes = [s.dtype.as_numpy_dtype for s in specs]
    labels32 = sampler._labels32

    @ACTIVITY.wrap
    def indices(step):
        idx = sampler.batch_indices(int(step))
        return idx, labels32[idx]

    B = sampler.batch_size
    if items_per_call is None:
        items_per_call = 16
    g = check_int("items_per_call", items_per_call, 1, "items loaded per call")
    g = max(d for d in range(1, min(g, B) + 1) if B % d == 0)  # a divisor of B

    def load_one(i, step, position):
        if seeded:
            out = load_fn(items[i], rng=example_rng(sampler, step, position))
        else:
            out = load_fn(items[i])
        k, _, values = flatten(out, "load_fn")
        if k != kind or len(values) != len(shapes) or (kind == "dict" and list(out) != keys):
            raise ValueError(
                f"load_fn returned a different structure for item {i} ({items[i]!r}) "
                "than for the first item / element_spec."
            )
        result = []
        for v, shape, dtype in zip(values, shapes, dtypes):
            v = np.asarray(v)
            if v.shape != shape:
                raise ValueError(
                    f"load_fn returned shape {v.shape} for item {i} ({items[i]!r}) but "
                    f"every example must have shape {shape} (the shape of the first "
                    "item, or output_shape / element_spec). Resize, crop or pad inside "
                    "load_fn."
                )
            result.append(v.astype(dtype, copy=False))
        return result

    @ACTIVITY.wrap
    def load_group(group, step, first):
        loaded = [load_one(int(i), int(step), int(first) + j) for j, i in enumerate(group)]
        return [np.stack(column) for column in zip(*loaded)]

    tout = [s.dtype for s in specs]

    def index_batch(step):
        idx, y = tf.numpy_function(indices, [step], [tf.int64, tf.int32], name="pk_indices")
        idx.set_shape((B,))
        y.set_shape((B,))
        # Each group carries its step and the position of its first item in the batch
        # (for `load_fn(item, rng=...)`).
        steps_of_groups = tf.fill((B // g,), step)
        firsts = tf.range(0, B, g, dtype=tf.int64)
        groups = (tf.reshape(idx, (B // g, g)), tf.reshape(y, (B // g, g)), steps_of_groups, firsts)
        return tf.data.Dataset.from_tensor_slices(groups)

    def load(group, y, step, first):
        values = tf.numpy_function(load_group, [group, step, first], tout, name="pk_load")
        for v, shape in zip(values, shapes):
            v.set_shape((g,) + shape)
        return tuple(values), y

    def merge(values, y):
        values = [tf.reshape(v, (B,) + shape) for v, shape in zip(values, shapes)]
        return pack(kind, keys, values), tf.reshape(y, (B,))

    # Steps -> groups of g indices (in order) -> loaded in parallel, order kept ->
    # B / g groups make one batch.
    ds = steps.flat_map(index_batch)
    ds = ds.map(load, num_parallel_calls=num_parallel_calls, deterministic=True)
    ds = ds.batch(B // g, drop_remainder=True).map(merge)
    return ds.prefetch(tf.data.AUTOTUNE)


def _item_specs(tf, items, load_fn, output_shape, output_dtype, element_spec):
    if element_spec is not None:
        if output_shape is not None or output_dtype is not None:
            raise ValueError("Pass either `element_spec` or `output_shape`/`output_dtype`.")
        kind, keys, specs = flatten(element_spec, "element_spec")
        for s in specs:
            if not isinstance(s, tf.TensorSpec) or not s.shape.is_fully_defined():
                raise ValueError(
                    "`element_spec` must be a tf.TensorSpec (or a tuple / dict of them) "
                    f"with a fully known shape, got {s!r}."
                )
        return kind, keys, specs
    if output_shape is not None:
        shape = tuple(int(d) for d in output_shape)
        dtype = tf.as_dtype(output_dtype if output_dtype is not None else "float32")
        return "array", None, [tf.TensorSpec(shape, dtype)]
    first = load_fn(items[0])
    kind, keys, values = flatten(first, "load_fn")
    specs = []
    for v in values:
        v = np.asarray(v)
        if v.dtype == object:
            raise TypeError(
                f"load_fn({items[0]!r}) returned an array of dtype object; it must return numeric arrays."
            )
        dtype = output_dtype if (output_dtype is not None and kind == "array") else v.dtype
        specs.append(tf.TensorSpec(v.shape, tf.as_dtype(dtype)))
    return kind, keys, specs
