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

# Band miners (batch-all) keep the `ops.cond`s on JAX: their blocked sorted branch holds
# its `[B, R]` pair mask, counts and band sums inside the switch, and at B = 4096 the step's
# temporaries are 456 MB through the switch against 435 MB through the `cond`s (the
# process's RSS is 30 MB lower through the switch, its compiled code smaller, but that part
# does not grow with B) for a forward pass run twice (BENCHMARKS.md).
SWITCH_BAND_SEARCHES = False


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
