"""Cross-batch memory: a FIFO queue of past embeddings used as extra references.

Wang et al., "Cross-Batch Memory for Embedding Learning", CVPR 2020. Embeddings drift
slowly once training has settled, so the embeddings of the last few batches are still
good stand-ins for the current model's: keeping `M` of them (with their labels) lets each
anchor of a batch of `B` find positives and negatives among `B + M` references instead of
`B`, at the cost of one `[B, M]` distance block per step.

The queue is held in non-trainable variables (saved with the model) and updated with a
pure function (`push`) so that the same code serves the stateful TensorFlow / PyTorch
steps and the stateless JAX step:

- `embeddings` `[M, D]` float32: the stored (detached) embeddings;
- `labels` `[M]` int32: their labels (-1 in slots never written);
- `count` `[]` int32: how many slots hold an embedding (`min(steps · B, M)`);
- `pointer` `[]` int32: the slot the next batch's first row goes to.

Slots fill in order `0, 1, …, M − 1` and then wrap around, so slot `j` is valid exactly
when `j < count`.
"""

import keras
from keras import ops


class CrossBatchMemory(keras.layers.Layer):
    """The non-trainable state of a cross-batch memory of `size` embeddings.

    `TripletModel(embedder, memory_size=M)` creates and builds one; it is not meant to be
    called like an ordinary layer. `state()` returns the current values as a tuple and
    `assign(state)` stores new ones; `push(state, embeddings, labels)` computes the
    queue after enqueuing a batch, without side effects.

    Example:

    >>> import numpy as np
    >>> memory = CrossBatchMemory(4)
    >>> memory.build(2)
    >>> state = push(memory.state(), np.ones((3, 2), "float32"), np.array([0, 1, 2]))
    >>> state = push(state, np.zeros((3, 2), "float32"), np.array([3, 4, 5]))
    >>> [int(v) for v in ops.convert_to_numpy(state[1])], int(state[2]), int(state[3])
    ([4, 5, 2, 3], 4, 2)
    """

    def __init__(self, size, **kwargs):
        kwargs.setdefault("trainable", False)
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        size = int(size)
        if size < 1:
            raise ValueError(f"The cross-batch memory size must be >= 1; got {size}.")
        self.size = size

    def build(self, embedding_dim):
        if isinstance(embedding_dim, (tuple, list)):
            embedding_dim = embedding_dim[-1]
        if embedding_dim is None:
            raise ValueError(
                "The cross-batch memory needs a known embedding dimension; the embedder's "
                "output has shape [batch, None]. Give the embedder a fixed output size."
            )
        dim = int(embedding_dim)
        self.embeddings = self.add_weight(
            shape=(self.size, dim),
            initializer="zeros",
            dtype="float32",
            trainable=False,
            name="embeddings",
        )
        self.labels = self.add_weight(
            shape=(self.size,),
            initializer=keras.initializers.Constant(-1),
            dtype="int32",
            trainable=False,
            name="labels",
        )
        self.count = self.add_weight(
            shape=(), initializer="zeros", dtype="int32", trainable=False, name="count"
        )
        self.pointer = self.add_weight(
            shape=(), initializer="zeros", dtype="int32", trainable=False, name="pointer"
        )
        self.built = True

    @property
    def state_variables(self):
        """The four state variables: `embeddings`, `labels`, `count`, `pointer`."""
        return [self.embeddings, self.labels, self.count, self.pointer]

    def state(self):
        """The current `(embeddings, labels, count, pointer)` values."""
        return tuple(v.value for v in self.state_variables)

    def assign(self, state):
        for variable, value in zip(self.state_variables, state):
            variable.assign(value)

    def reset(self):
        """Empties the memory (e.g. before training on a new data set)."""
        self.assign(
            (
                ops.zeros_like(self.embeddings.value),
                ops.full_like(self.labels.value, -1),
                ops.zeros_like(self.count.value),
                ops.zeros_like(self.pointer.value),
            )
        )

    def get_config(self):
        config = super().get_config()
        config["size"] = self.size
        return config


def valid_mask(state):
    """`[M]` bool: which memory slots hold an embedding."""
    embeddings, _, count, _ = state
    return ops.arange(embeddings.shape[0], dtype="int32") < count


def push(state, embeddings, labels):
    """The memory state after enqueuing a batch (FIFO; the oldest entries are replaced).

    Row `i` of the batch goes to slot `(pointer + i) mod M`; when the batch is larger than
    the memory only its last `M` rows are kept. Written as a gather (no scatter with
    duplicate indices), so it is deterministic, works with a dynamic batch size and
    compiles under XLA / `jax.jit`.

    Args:
        state: `(embeddings [M, D], labels [M], count [], pointer [])`.
        embeddings: `[B, D]` batch embeddings (gradients are stopped here).
        labels: `[B]` integer labels.

    Returns:
        The new `(embeddings, labels, count, pointer)`.
    """
    memory, memory_labels, count, pointer = state
    size = memory.shape[0]
    embeddings = ops.cast(ops.stop_gradient(ops.convert_to_tensor(embeddings)), memory.dtype)
    labels = ops.cast(ops.reshape(ops.convert_to_tensor(labels), (-1,)), "int32")
    batch = ops.cast(ops.shape(embeddings)[0], "int32")
    pointer = ops.cast(pointer, "int32")
    count = ops.cast(count, "int32")

    slots = ops.arange(size, dtype="int32")
    # Offset of each slot after the pointer, in [0, M): rows i ≡ offset (mod M) land there,
    # the last of them (the largest i < B) wins.
    offset = ops.mod(slots - pointer + size, size)
    written = offset < batch
    row = offset + size * ops.floor_divide(ops.maximum(batch - 1 - offset, 0), size)
    row = ops.clip(row, 0, ops.maximum(batch - 1, 0))

    new_memory = ops.where(ops.expand_dims(written, 1), ops.take(embeddings, row, axis=0), memory)
    new_labels = ops.where(written, ops.take(labels, row, axis=0), memory_labels)
    new_count = ops.minimum(count + batch, size)
    new_pointer = ops.mod(pointer + batch, size)
    return (
        new_memory,
        ops.cast(new_labels, "int32"),
        ops.cast(new_count, "int32"),
        ops.cast(new_pointer, "int32"),
    )
