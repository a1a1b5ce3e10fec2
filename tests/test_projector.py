"""keras_triplet.metrics.projector: the files of TensorBoard's embedding projector, read
back by TensorBoard's own projector code and an image library, and the
RetrievalEvaluation option that writes them."""

import os

import keras
import numpy as np
import pytest

from keras_triplet.metrics import RetrievalEvaluation
from keras_triplet.metrics.projector import encode_png, export_projector

RNG = np.random.default_rng(0)
X = RNG.normal(size=(10, 4)).astype("float32")
Y = np.arange(10) % 3


def test_vectors_metadata_and_config(tmp_path):
    names = {0: "cat", 1: "dog\tlarge", 2: "eel"}  # a tab must not break the table
    paths = export_projector(tmp_path, X, Y, class_names=names, tensor_name="val")
    assert paths["sprite"] is None
    rows = [line.split("\t") for line in open(paths["vectors"]).read().splitlines()]
    np.testing.assert_array_equal(np.array(rows, dtype=np.float32), X)  # float32 round trip exact
    meta = open(paths["metadata"]).read().splitlines()
    assert meta[0] == "label\tclass" and meta[1:4] == ["0\tcat", "1\tdog large", "2\teel"]
    assert len(meta) == 11
    projector = pytest.importorskip("tensorboard.plugins.projector.projector_plugin")
    from google.protobuf import text_format
    from tensorboard.plugins.projector import projector_config_pb2

    config = text_format.Parse(open(paths["config"]).read(), projector_config_pb2.ProjectorConfig())
    (emb,) = config.embeddings
    assert (emb.tensor_name, emb.tensor_path, emb.metadata_path) == ("val", "vectors.tsv", "metadata.tsv")
    np.testing.assert_allclose(projector._read_tensor_tsv_file(paths["vectors"]), X, rtol=1e-6)


def test_sprite(tmp_path):
    images = RNG.random((10, 5, 7))  # floats in [0, 1], grey
    paths = export_projector(tmp_path, X, images=images)
    assert paths["metadata"] is None
    image = pytest.importorskip("PIL.Image")
    sprite = np.asarray(image.open(paths["sprite"]))
    assert sprite.shape == (4 * 5, 4 * 7)  # ceil(sqrt(10)) = 4 thumbnails a side
    np.testing.assert_array_equal(
        sprite[5:10, 7:14], np.round(images[5] * 255).astype(np.uint8)
    )  # row 1, column 1
    assert not sprite[15:, 14:].any()  # the empty cells stay black
    config = open(paths["config"]).read()
    assert 'image_path: "sprite.png"' in config and "single_image_dim: 7\n    single_image_dim: 5" in config
    rgb = RNG.integers(0, 256, (2, 3, 4, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(image.open(__import__("io").BytesIO(encode_png(rgb[0])))), rgb[0])


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="one per item"):
        export_projector(tmp_path, X, images=np.zeros((3, 2, 2)))
    with pytest.raises(ValueError, match="channels"):
        export_projector(tmp_path, X, images=np.zeros((10, 2, 2, 2)))
    with pytest.raises(ValueError, match="8192"):
        export_projector(tmp_path, X, images=np.zeros((10, 3000, 10), np.uint8))
    with pytest.raises(ValueError, match="labels"):
        export_projector(tmp_path, X, Y[:3])
    assert not os.listdir(tmp_path)  # nothing half-written


def test_retrieval_evaluation_exports(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss="mse")
    cb = RetrievalEvaluation(
        X, Y, ks=(1,), verification=False, projector_dir=str(tmp_path / "proj"), class_names=["a", "b", "c"]
    )
    model.fit(X, np.zeros((10, 3)), epochs=1, verbose=0, callbacks=[cb])
    files = sorted(os.listdir(tmp_path / "proj"))
    assert files == ["metadata.tsv", "projector_config.pbtxt", "vectors.tsv"]
    vectors = np.loadtxt(tmp_path / "proj" / "vectors.tsv", delimiter="\t", ndmin=2)
    np.testing.assert_allclose(
        vectors, keras.ops.convert_to_numpy(model.predict(X, verbose=0)), rtol=1e-5, atol=1e-6
    )
    assert open(tmp_path / "proj" / "metadata.tsv").read().splitlines()[1] == "0\ta"
