"""A plain PyTorch training loop with our losses: no `TripletModel`, no `fit`.

On the PyTorch backend the losses take `torch` tensors and return a `torch` scalar that
backpropagates into any `torch.nn.Module` (README: "A plain PyTorch training loop").
"""

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="a plain PyTorch loop needs the PyTorch backend (KERAS_BACKEND=torch)",
)

from keras_triplet import losses  # noqa: E402
from keras_triplet.data import PKSampler  # noqa: E402


def _data(seed=0, classes=20, per_class=8, dim=12):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), per_class)
    x = rng.normal(size=(classes, dim))[y] + 0.8 * rng.normal(size=(len(y), dim))
    return x.astype("float32"), y


@pytest.mark.parametrize(
    "loss_fn",
    [
        losses.TripletLoss(margin=0.2, miner="semi-hard"),
        losses.TripletLoss(margin=0.2, miner="batch-hard"),
        losses.TripletLoss(margin=0.2, miner="batch-all"),
        losses.QuadrupletLoss(margin=0.2, margin2=0.1),
        losses.AngularLoss(alpha=40.0),
    ],
    ids=["triplet-semi-hard", "triplet-batch-hard", "triplet-batch-all", "quadruplet", "angular"],
)
def test_a_torch_loop_trains_with_our_loss(loss_fn):
    import torch

    torch.manual_seed(0)
    x, y = _data()
    net = torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    sampler = PKSampler(y, classes_per_batch=8, samples_per_class=4, seed=0)

    def embed(xb):
        return torch.nn.functional.normalize(net(xb), dim=1)

    def epoch_loss():  # the loss on fixed batches, without gradients
        with torch.no_grad():
            return float(
                np.mean(
                    [
                        loss_fn(torch.from_numpy(y[b]), embed(torch.from_numpy(x[b]))).item()
                        for b in sampler.epoch_indices(0)
                    ]
                )
            )

    before = epoch_loss()
    for step in range(sampler.steps_per_epoch * 8):
        batch = sampler.batch_indices(step)
        loss = loss_fn(torch.from_numpy(y[batch]), embed(torch.from_numpy(x[batch])))
        assert isinstance(loss, torch.Tensor) and loss.ndim == 0 and loss.requires_grad
        optimizer.zero_grad()
        loss.backward()
        grads = [p.grad for p in net.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        if step == 0:
            assert any(g.abs().sum() > 0 for g in grads)
        optimizer.step()
    after = epoch_loss()
    assert after < 0.8 * before, (before, after)


def test_the_loss_matches_the_keras_computation():
    """The loss a torch loop sees is the loss Keras computes (same tensor math)."""
    import torch

    x, y = _data(1)
    loss_fn = losses.TripletLoss(margin=0.3)
    emb = torch.nn.functional.normalize(torch.from_numpy(x[:32]), dim=1).requires_grad_(True)
    value = loss_fn(torch.from_numpy(y[:32]), emb)
    value.backward()
    expected = keras.ops.convert_to_numpy(loss_fn(y[:32], keras.ops.convert_to_tensor(emb.detach().numpy())))
    assert value.item() == pytest.approx(float(expected), rel=1e-6)
    assert emb.grad is not None and torch.isfinite(emb.grad).all()
