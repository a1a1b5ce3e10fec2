"""Seeded randomness for `load_fn`: one NumPy generator per example of the stream.

A `load_fn` that augments at random cannot take its randomness from a shared generator
or from the order of its calls: both pipelines load examples in parallel (tf.data
`map(num_parallel_calls=...)`, PyDataset workers), so the call order changes from run
to run. A `load_fn` that declares an `rng` argument instead gets a generator seeded by
where the example sits in the stream: `(seed, shard_index, step, position in the
batch)`, where `step = epoch * steps_per_epoch + batch index`. The same run then gets
the same augmentations whatever the parallelism, from either pipeline, and a run
resumed at an epoch gets those of the uninterrupted run.
"""

import inspect

import numpy as np


def wants_rng(load_fn):
    """True when `load_fn` can be called as `load_fn(item, rng=...)`."""
    try:
        parameters = inspect.signature(load_fn).parameters
    except (TypeError, ValueError):  # builtins without a signature (np.load has one)
        return False
    p = parameters.get("rng")
    return p is not None and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)


def example_rng(sampler, step, position):
    """The generator of the example at `position` of batch `step` (counted from the start
    of epoch 0) of `sampler`'s stream."""
    entropy = [sampler.seed, sampler.shard_index, int(step), int(position)]
    return np.random.default_rng(np.random.SeedSequence(entropy))
