"""JAX only: a data-dependent choice among branches whose backward pass runs inside the
chosen branch (`switch_with_own_gradients`).

Differentiating `lax.cond` / `lax.switch` makes the forward pass output every residual
that any branch's backward pass reads (each branch fills the others' with zeros), so the
largest branch's residuals are held from the forward pass to the backward one whatever
branch runs. A custom gradient around the whole choice keeps only its inputs, and its
backward pass runs the chosen branch again under `jax.vjp` inside a second switch:
residuals live inside one branch, for the backward pass alone. Keras has no
backend-free `vjp`, hence this module.
"""

import jax

# Band miners (batch-all) take the switch too: with the direct search by row blocks, the
# switch's branches hold less than the `cond`s' residuals (B = 4096: 524 against 673 MB of
# peak extra memory), and from B = 512 they run faster (BENCHMARKS.md).
SWITCH_BAND_SEARCHES = True
# The smallest static `[B, R]` matrix whose compiled choice takes the switch, below the
# size where the searches run by row blocks: the `lax.cond`s' residuals, written and
# zero-filled whichever branch runs, cost more than running the chosen branch's forward
# pass again from B = 512 (B = 1024: semi-hard 38 → 20 ms, batch-all 43 → 34 ms), and
# less below (B = 256: 1.12 against 1.21 ms; BENCHMARKS.md).
SWITCH_MIN_ENTRIES = 2**18


def switch_with_own_gradients(index, branches, x):
    """`branches[index](x)`, differentiable in `x` (a `[B, R]` float array) only: each
    branch must read no other differentiated array (JAX raises if it does). The backward
    pass computes the chosen branch's forward pass again."""

    @jax.custom_gradient
    def chosen(x):
        def grad(upstream):
            rules = [lambda x, g, branch=branch: jax.vjp(branch, x)[1](g)[0] for branch in branches]
            return jax.lax.switch(index, rules, x, upstream)

        return jax.lax.switch(index, branches, x), grad

    return chosen(x)
