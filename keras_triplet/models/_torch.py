"""TripletModel's train/test steps for the PyTorch backend (zero_grad / backward / apply)."""

import torch
from keras.utils import unpack_x_y_sample_weight


class TorchSteps:
    """Mixin: `train_step` / `test_step` of `TripletModel` on PyTorch."""

    def train_step(self, data):
        if self._metric_loss() is None:
            return super().train_step(data)
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        self._check_sample_weight(sample_weight)
        raw, embeddings = self(x, training=True, return_raw=True)
        memory_state = self._memory_state()
        self.zero_grad()
        loss, stats, new_memory = self._triplet_loss(
            y, raw, embeddings, memory_state, training=True
        )
        extra = self._auxiliary_loss(self.losses)
        if extra is not None:
            loss = loss + extra
        scaled_loss = self.optimizer.scale_loss(loss) if self.optimizer else loss
        trainable = self.trainable_weights[:]
        if trainable:
            scaled_loss.backward()
            gradients = [v.value.grad for v in trainable]
            with torch.no_grad():
                self.optimizer.apply(gradients, trainable)
        with torch.no_grad():
            self._assign_memory(new_memory)
            return self._update_metrics(
                loss.detach(), stats, x, y, embeddings.detach(), training=True
            )

    def test_step(self, data):
        if self._metric_loss() is None:
            return super().test_step(data)
        return self._stateful_test_step(data)
