"""A TripletModel saved on this backend loads on the other two and embeds the same."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np

from keras_triplet import losses
from keras_triplet.models import TripletModel

BACKENDS = ("tensorflow", "jax", "torch")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LOAD_AND_EMBED = textwrap.dedent(
    """
    import sys
    import numpy as np
    import keras
    from keras_triplet import TripletModel  # registers TripletModel (and the losses)
    model = keras.saving.load_model(sys.argv[1], safe_mode=True)
    assert type(model).__name__ == "TripletModel", type(model)
    assert keras.backend.backend() == sys.argv[4], keras.backend.backend()
    np.save(sys.argv[3], model.embed(np.load(sys.argv[2]), batch_size=16))
    """
)


def test_saved_model_loads_on_every_backend(tmp_path):
    keras.utils.set_random_seed(0)
    embedder = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(6),
        ]
    )
    model = TripletModel(embedder, memory_size=16)
    model.compile(optimizer="adam", loss=losses.TripletLoss(margin=0.2))
    model.build((None, 8, 8, 1))
    rng = np.random.default_rng(0)
    # Random values in every float variable (BatchNorm statistics and memory included),
    # instead of a fit: compiling a train step is the slow part of a test.
    for variable in model.variables:
        if "float" in str(variable.dtype):
            shape = tuple(variable.shape)
            variable.assign(rng.uniform(0.5, 1.5, size=shape).astype(variable.dtype))
    x = rng.normal(size=(32, 8, 8, 1)).astype("float32")
    expected = model.embed(x)

    path = str(tmp_path / "model.keras")
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    script = tmp_path / "load_and_embed.py"
    script.write_text(LOAD_AND_EMBED)

    others = [b for b in BACKENDS if b != keras.backend.backend()]
    procs = {}
    for backend in others:
        env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES="")
        env.pop("PYTHONHASHSEED", None)
        out = str(tmp_path / f"{backend}.npy")
        procs[backend] = (
            subprocess.Popen(
                [sys.executable, str(script), path, str(tmp_path / "x.npy"), out, backend],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
            out,
        )
    for backend, (proc, out) in procs.items():
        output, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, f"loading on {backend} failed:\n{output[-3000:]}"
        np.testing.assert_allclose(np.load(out), expected, atol=1e-5, err_msg=backend)
