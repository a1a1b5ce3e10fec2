"""TensorFlow only: a data-dependent choice among branches whose backward pass runs inside
the chosen branch (`switch_with_own_gradients`), as `_jax.py` does on JAX.

Differentiating a `tf.cond` / `tf.switch_case` makes the forward conditional output every
intermediate that any branch's gradient reads (cond_v2 adds them as outputs of the forward
op, each branch filling the others' with zeros), so the largest branch's intermediates are
held from the forward pass to the backward one whatever branch runs. A custom gradient
around the whole choice keeps only its input: the forward switch is never differentiated,
and the backward pass is a second switch whose chosen branch runs its forward pass again
under a `tf.GradientTape`, its intermediates living inside that branch for the backward
pass alone. Keras has no backend-free way to differentiate a function inside a branch,
hence this module.
"""

import tensorflow as tf

# Band miners (batch-all) take the switch too on TensorFlow: its `cond`s' gradients output
# every branch's intermediates, copies of the distances and masks included, so at B = 4096
# the step's extra memory falls from 1 138 to 858 MB through the switch (BENCHMARKS.md).
SWITCH_BAND_SEARCHES = True
# TensorFlow's `cond`s cost no time below the row blocks (B = 1024: 22.5 ms either way):
# the switch only where the searches run by blocks.
SWITCH_MIN_ENTRIES = None


def switch_with_own_gradients(index, branches, x):
    """`branches[index](x)`, differentiable in `x` (a `[B, R]` float tensor) only: each
    branch must read no other differentiated tensor (its gradient would be lost) and no
    variable. The branches return the same nest of tensors. The backward pass computes
    the chosen branch's forward pass again."""
    structure = []

    def flat(branch, x):
        out = branch(x)
        structure[:] = [out]
        return tuple(tf.nest.flatten(out))

    @tf.custom_gradient
    def chosen(x):
        outputs = tf.switch_case(index, [lambda branch=branch: flat(branch, x) for branch in branches])

        def grad(*upstream):
            def rule(branch):
                def gradient():
                    # A tensor of this branch's own to watch: the captured `x` is a
                    # placeholder inside the branch's graph.
                    own = tf.identity(x)
                    with tf.GradientTape() as tape:
                        tape.watch(own)
                        out = tf.nest.flatten(branch(own))
                    # Integer outputs (counts) carry no gradient; an output nothing
                    # downstream read has a None (or no) upstream gradient: zeros.
                    pairs = [
                        (o, tf.zeros_like(o) if g is None else g)
                        for o, g in zip(out, upstream)
                        if o.dtype.is_floating
                    ]
                    if not pairs:
                        return tf.zeros_like(own)
                    return tape.gradient(
                        [o for o, _ in pairs],
                        own,
                        output_gradients=[g for _, g in pairs],
                        unconnected_gradients=tf.UnconnectedGradients.ZERO,
                    )

                return gradient

            return tf.switch_case(index, [rule(branch) for branch in branches])

        return outputs, grad

    outputs = chosen(x)
    return tf.nest.pack_sequence_as(structure[0], tf.nest.flatten(outputs))
