"""TripletModel's train/test steps for the TensorFlow backend (GradientTape)."""

import tensorflow as tf
from keras.utils import unpack_x_y_sample_weight


class TensorFlowSteps:
    """Mixin: `train_step` / `test_step` of `TripletModel` on TensorFlow."""

    def train_step(self, data):
        if self._metric_loss() is None:
            return super().train_step(data)
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        self._check_sample_weight(sample_weight)
        with tf.GradientTape() as tape:
            raw, embeddings = self(x, training=True, return_raw=True)
            memory_state = self._memory_state()  # after the call: it builds the model
            loss, stats, new_memory = self._triplet_loss(
                y, raw, embeddings, memory_state, training=True
            )
            extra = self._auxiliary_loss(self.losses)
            if extra is not None:
                loss = loss + extra
            scaled_loss = self.optimizer.scale_loss(loss) if self.optimizer else loss
        trainable = self.trainable_variables
        if trainable:
            gradients = tape.gradient(scaled_loss, trainable)
            self.optimizer.apply(gradients, trainable)
        self._assign_memory(new_memory)
        return self._update_metrics(loss, stats, x, y, embeddings, training=True)

    def test_step(self, data):
        if self._metric_loss() is None:
            return super().test_step(data)
        return self._stateful_test_step(data)
