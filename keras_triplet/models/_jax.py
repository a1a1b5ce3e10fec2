"""TripletModel's train/test steps for the JAX backend.

Stateless, as JAX requires: the forward pass runs through `stateless_call`, gradients
come from `jax.value_and_grad`, the optimizer through `stateless_apply`, metrics update
inside a `StatelessScope`, and every step returns the new variable values (including
the cross-batch memory, which is part of the non-trainable variables). Works under
`jax.jit` (`jit_compile=True`, the default on JAX).
"""

import jax
import keras
from keras.utils import unpack_x_y_sample_weight


class JAXSteps:
    """Mixin: `train_step` / `test_step` of `TripletModel` on JAX."""

    def _memory_indices(self):
        """Positions of the memory's variables in `self.non_trainable_variables`."""
        if self.memory is None:
            return None
        positions = {id(v): i for i, v in enumerate(self.non_trainable_variables)}
        return [positions[id(v)] for v in self.memory.state_variables]

    def _triplet_loss_and_state(
        self,
        trainable_variables,
        non_trainable_variables,
        x,
        y,
        training=False,
        optimizer_variables=None,
    ):
        """Stateless loss for `jax.value_and_grad`: returns `(scaled_loss, aux)`.

        `aux` is `(loss, stats, embeddings, non_trainable_variables)`, the last with the
        memory already advanced when training with a cross-batch memory.
        """
        indices = self._memory_indices()
        memory_state = (
            tuple(non_trainable_variables[i] for i in indices) if indices else None
        )
        (raw, embeddings), non_trainable_variables, losses = self.stateless_call(
            trainable_variables,
            non_trainable_variables,
            x,
            return_losses=True,
            training=training,
            return_raw=True,
        )
        loss, stats, new_memory = self._triplet_loss(
            y, raw, embeddings, memory_state, training=training
        )
        extra = self._auxiliary_loss(losses)
        if extra is not None:
            loss = loss + extra
        if new_memory is not None:
            non_trainable_variables = list(non_trainable_variables)
            for i, value in zip(indices, new_memory):
                non_trainable_variables[i] = value

        scaled_loss = loss
        if training and self.optimizer is not None:
            # Loss scaling (mixed precision) reads the optimizer's scale variable.
            mapping = list(zip(self.optimizer.variables, optimizer_variables))
            with keras.StatelessScope(state_mapping=mapping):
                scaled_loss = self.optimizer.scale_loss(loss)
        return scaled_loss, (loss, stats, embeddings, non_trainable_variables)

    def _stateless_update_metrics(self, metrics_variables, loss, stats, x, y, embeddings, training):
        mapping = list(zip(self.metrics_variables, metrics_variables))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            logs = self._update_metrics(loss, stats, x, y, embeddings, training=training)
        new_metrics_variables = []
        for ref_v in self.metrics_variables:
            new_v = scope.get_current_value(ref_v)
            new_metrics_variables.append(ref_v.value if new_v is None else new_v)
        return logs, new_metrics_variables

    def train_step(self, state, data):
        if self._metric_loss() is None:
            return super().train_step(state, data)
        (
            trainable_variables,
            non_trainable_variables,
            optimizer_variables,
            metrics_variables,
        ) = state
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        self._check_sample_weight(sample_weight)
        grad_fn = jax.value_and_grad(self._triplet_loss_and_state, has_aux=True)
        (_, aux), grads = grad_fn(
            trainable_variables,
            non_trainable_variables,
            x,
            y,
            training=True,
            optimizer_variables=optimizer_variables,
        )
        loss, stats, embeddings, non_trainable_variables = aux
        trainable_variables, optimizer_variables = self.optimizer.stateless_apply(
            optimizer_variables, grads, trainable_variables
        )
        logs, metrics_variables = self._stateless_update_metrics(
            metrics_variables, loss, stats, x, y, embeddings, training=True
        )
        state = (
            trainable_variables,
            non_trainable_variables,
            optimizer_variables,
            metrics_variables,
        )
        return logs, state

    def test_step(self, state, data):
        if self._metric_loss() is None:
            return super().test_step(state, data)
        trainable_variables, non_trainable_variables, metrics_variables = state
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        self._check_sample_weight(sample_weight)
        _, aux = self._triplet_loss_and_state(
            trainable_variables, non_trainable_variables, x, y, training=False
        )
        loss, stats, embeddings, non_trainable_variables = aux
        logs, metrics_variables = self._stateless_update_metrics(
            metrics_variables, loss, stats, x, y, embeddings, training=False
        )
        return logs, (trainable_variables, non_trainable_variables, metrics_variables)
