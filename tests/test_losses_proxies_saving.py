"""A TripletModel trained with a loss that has class weights, saved on this backend, loads on
another backend with the same weights (PML layout) and the same embeddings."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np

from keras_triplet import TripletModel, losses

BACKENDS = ("tensorflow", "jax", "torch")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LOAD = textwrap.dedent(
    """
    import sys
    import numpy as np
    import keras
    import keras_triplet  # registers the model and the losses
    model = keras.saving.load_model(sys.argv[1], safe_mode=True)
    assert keras.backend.backend() == sys.argv[4], keras.backend.backend()
    assert type(model.loss).__name__ == "SubCenterArcFaceLoss", type(model.loss)
    assert any(v is model.loss.variable for v in model.trainable_variables)
    np.savez(sys.argv[3], W=model.loss.get_weights()[0], emb=model.embed(np.load(sys.argv[2])))
    """
)


def test_loss_weights_load_on_another_backend(tmp_path):
    keras.utils.set_random_seed(0)
    model = TripletModel(keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)]))
    loss = losses.SubCenterArcFaceLoss(num_classes=3, embedding_size=4, sub_centers=2)
    model.compile(optimizer="adam", loss=loss)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 5)).astype("float32")
    model.train_on_batch(x, np.arange(12) % 3)
    path = str(tmp_path / "model.keras")
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    script = tmp_path / "load.py"
    script.write_text(LOAD)
    # One other backend (the next one in BACKENDS): each run of the suite on one backend
    # covers one pair; the three runs of CI cover a cycle.
    other = BACKENDS[(BACKENDS.index(keras.backend.backend()) + 1) % len(BACKENDS)]
    env = dict(os.environ, KERAS_BACKEND=other, PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES="")
    out = str(tmp_path / "out.npz")
    proc = subprocess.run(
        [sys.executable, str(script), path, str(tmp_path / "x.npy"), out, other],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, f"loading on {other} failed:\n{(proc.stdout + proc.stderr)[-3000:]}"
    loaded = np.load(out)
    np.testing.assert_array_equal(loaded["W"], loss.get_weights()[0])
    assert loaded["W"].shape == (4, 6)  # PML's W: [embedding_size, num_classes * sub_centers]
    np.testing.assert_allclose(loaded["emb"], model.embed(x), atol=1e-6)
