"""The mining part of a TensorFlow step that XLA does not compile, compiled by XLA alone.

Why it is per backend: a TensorFlow graph without XLA (Keras' `jit_compile=False`, which
`"auto"` picks on a CPU-only machine) runs the mining op by op: the distance matrix, the
loss with its miner and the statistics are dozens of `[B, B]`-sized kernels, forward and
backward, each a pass over memory. XLA fuses those passes. On TensorFlow a
`tf.function(jit_compile=True)` called inside the non-XLA `tf.function` step is compiled
as its own XLA cluster, and so is its gradient (TensorFlow's backward function of a
function call inherits the forward's attributes, `_XlaMustCompile` included): only the
mining is compiled, the rest of the step stays as the user asked. It is TensorFlow's
counterpart of "`torch.compile` of the mining function alone", which does not pay on
eager PyTorch (BENCHMARKS.md); there, and on JAX (whose steps XLA always compiles),
`compiled_mining` calls the function as it is.

Where TensorFlow does not compile it either: small batches, below `MIN_ENTRIES` entries
of the `[B, B]` matrix (B < 128), whose op-by-op mining costs little while XLA's compile
of it (2–3 s of CPU per traced step) would not pay back in a short fit (nor in a test
suite's hundreds of small models); eagerly (`run_eagerly=True`, a debugging
mode: op by op, as asked; a `tf.function` would also be traced again at every step), and
where a shape is not static (Keras' step relaxed to a dynamic batch size after a short
last batch: XLA would compile again for every size).
"""

import keras

# The smallest `x.shape[0]²` (a batch's `[B, B]` distance matrix) compiled alone: B ≥ 128.
MIN_ENTRIES = 2**14


def compiled_mining(fn, x, *tensors, gradient=True):
    """`fn(compiled, x, *tensors)`, a `(loss, aux)` pair, compiled by XLA where the
    backend compiles the mining part alone (`compiled` True: `fn` is traced inside the
    XLA function and must treat its step as fused), else called as it is (`compiled`
    False).

    `loss`: a scalar, differentiable in `x` (a float tensor) when `gradient`; `aux`: a
    nest of tensors with gradients stopped (statistics, the distances). `tensors`: the
    other tensors `fn` reads (labels, a boolean flag); Python values belong in `fn`'s
    closure. Compiled, the gradient of `loss` with respect to `x` is computed in the
    same XLA function as the loss (see below) and handed to the caller's backward pass
    as `dloss · ∂loss/∂x`; with `gradient` False (evaluation) neither output carries a
    gradient."""
    if x.shape[0] is not None and x.shape[0] ** 2 >= MIN_ENTRIES and _compiles((x,) + tensors):
        return _xla_call(fn, x, tensors, gradient)
    return fn(False, x, *tensors)


if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

    def _compiles(tensors):
        return not tf.executing_eagerly() and all(
            tf.convert_to_tensor(t).shape.is_fully_defined() for t in tensors
        )

    def _xla_call(fn, x, tensors, gradient):
        # The gradient is taken inside the XLA function, with the loss, not by the
        # caller's tape: TensorFlow builds the gradient of a function call outside the
        # function's XLA context, and the `tf.cond`s of the search then hand their
        # intermediates to the backward pass as optionals, which XLA cannot compile.
        # Forward and backward in one XLA function also fuse with each other. A new
        # function per traced step (a step is traced once per input signature): its
        # closure holds that step's loss and flags.
        def forward(x, *tensors):
            if not gradient:
                return fn(True, x, *tensors)
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss, aux = fn(True, x, *tensors)
            dx = tape.gradient(loss, x)
            return loss, aux, tf.zeros_like(x) if dx is None else dx

        compiled = tf.function(forward, jit_compile=True, autograph=False)
        if not gradient:
            loss, aux = compiled(x, *tensors)
            return tf.stop_gradient(loss), tf.nest.map_structure(tf.stop_gradient, aux)

        structure = []  # the nest of `aux`, known once `call` has run

        @tf.custom_gradient
        def call(x):
            loss, aux, dx = compiled(x, *tensors)
            structure.append(aux)

            def backward(dloss, *_):  # `aux`'s upstream gradients: unused (stopped)
                return tf.cast(dloss, dx.dtype) * dx

            return [loss] + tf.nest.flatten(aux), backward

        outputs = call(x)
        return outputs[0], tf.nest.pack_sequence_as(structure[0], outputs[1:])

else:

    def _compiles(tensors):
        return False

    def _xla_call(fn, x, tensors, gradient):
        raise NotImplementedError  # never called: `_compiles` is False
