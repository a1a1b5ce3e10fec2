"""EmbeddingIndex: exact search vs brute force, faiss vs exact, files and their failures."""

import os
import zipfile

import numpy as np
import pytest

from keras_triplet.index import EmbeddingIndex, file_format
from keras_triplet.metrics import pairwise_distances_numpy

METRICS = ("euclidean", "squared_euclidean", "cosine", "angular")


def brute_force(refs, queries, k, metric):
    d = pairwise_distances_numpy(queries, refs.astype(np.float32).astype(np.float64), metric)
    order = np.array([sorted(range(d.shape[1]), key=lambda j: (d[i, j], j)) for i in range(len(d))])
    order = order[:, :k]
    return np.take_along_axis(d, order, axis=1), order


def _data(seed=0, n=300, q=25, dim=8):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)).astype(np.float32), rng.normal(size=(q, dim)).astype(np.float32)


# ------------------------------------------------------------------------------ search


@pytest.mark.parametrize("metric", METRICS)
def test_exact_search_matches_brute_force(metric, monkeypatch):
    refs, queries = _data()
    # Small blocks and chunks, so the running top-k merge across blocks is exercised.
    monkeypatch.setattr("keras_triplet.index.exact._BLOCK_ELEMENTS", 7 * 40)
    index = EmbeddingIndex(metric=metric, chunk_size=7)
    for part in np.array_split(np.arange(300), 3):
        index.add(refs[part], labels=part % 10)
    d, ids, labels = index.search(queries, k=5)
    want_d, want_pos = brute_force(refs, queries, 5, metric)
    np.testing.assert_array_equal(ids, want_pos)
    np.testing.assert_array_equal(labels, want_pos % 10)
    np.testing.assert_allclose(d, want_d, atol=1e-9)
    assert d.shape == (25, 5) and d.dtype == np.float64
    assert np.all(np.diff(d, axis=1) >= 0)


def test_ties_resolve_by_insertion_order(monkeypatch):
    monkeypatch.setattr("keras_triplet.index.exact._BLOCK_ELEMENTS", 6)
    index = EmbeddingIndex(chunk_size=2)
    refs = np.array([[1.0, 0], [0, 1.0], [-1.0, 0], [0, -1.0], [2.0, 0], [0, 0.5]])
    index.add(refs, ids=["e", "n", "w", "s", "far", "near"])
    d, ids, _ = index.search(np.zeros((3, 2)), k=4)
    assert ids.tolist() == [["near", "e", "n", "w"]] * 3
    np.testing.assert_allclose(d[0], [0.5, 1, 1, 1])
    assert index.search(np.zeros(2), k=1)[1].tolist() == [["near"]]  # 1-D query


def test_k_is_capped_at_the_index_size():
    index = EmbeddingIndex()
    index.add(np.eye(3))
    d, ids, labels = index.search(np.eye(3), k=10)
    assert d.shape == ids.shape == (3, 3) and labels is None
    assert ids[:, 0].tolist() == [0, 1, 2]


@pytest.mark.parametrize("metric", METRICS)
def test_faiss_matches_exact(metric):
    refs, queries = _data(seed=1, n=500)
    exact = EmbeddingIndex(metric=metric)
    fast = EmbeddingIndex(metric=metric, backend="faiss")
    for index in (exact, fast):
        index.add(refs[:200], labels=np.arange(200) % 7)
        index.add(refs[200:], labels=np.arange(200, 500) % 7)
    d1, i1, l1 = exact.search(queries, k=10)
    d2, i2, l2 = fast.search(queries, k=10)
    np.testing.assert_allclose(d2, d1, atol=2e-4 if metric.endswith("euclidean") else 1e-5)
    # Random float data: no near-ties, the same neighbours in the same order.
    assert np.mean(i1 == i2) > 0.99
    np.testing.assert_array_equal(l2[i1 == i2], l1[i1 == i2])
    fast.add(refs[:1] + 10, labels=[99])  # adding invalidates the faiss index
    assert fast.search(refs[:1] + 10, k=1)[2].tolist() == [[99]]


def test_unknown_backend_and_metric():
    with pytest.raises(ValueError, match="backend"):
        EmbeddingIndex(backend="annoy")
    with pytest.raises(ValueError, match="metric"):
        EmbeddingIndex(metric="manhattan")


# ------------------------------------------------------------------- add / validation


def test_add_validates_dimension_ids_and_labels():
    index = EmbeddingIndex()
    index.add(np.zeros((2, 4)), labels=["cat", "dog"], ids=[10, 11])
    with pytest.raises(ValueError, match="dimension 3 .* dimension 4"):
        index.add(np.zeros((1, 3)), labels=["x"], ids=[12])
    with pytest.raises(ValueError, match="dimension 5 .* dimension 4"):
        index.search(np.zeros((1, 5)), k=1)
    with pytest.raises(ValueError, match="has labels"):
        index.add(np.zeros((1, 4)), ids=[12])
    with pytest.raises(ValueError, match="unique"):
        index.add(np.zeros((1, 4)), labels=["x"], ids=[11])
    with pytest.raises(ValueError, match="strings"):
        index.add(np.zeros((1, 4)), labels=["x"], ids=["twelve"])
    with pytest.raises(ValueError, match="one entry per embedding"):
        index.add(np.zeros((2, 4)), labels=["x"], ids=[12, 13])
    with pytest.raises(ValueError, match="NaN"):
        index.add(np.full((1, 4), np.nan), labels=["x"], ids=[12])
    with pytest.raises(ValueError, match="integers or strings"):
        index.add(np.zeros((1, 4)), labels=[object()], ids=[12])
    assert len(index) == 2  # failed adds changed nothing
    with pytest.raises(ValueError, match="empty"):
        EmbeddingIndex().search(np.zeros((1, 4)), k=1)
    with pytest.raises(ValueError, match="k"):
        index.search(np.zeros((1, 4)), k=0)


# ------------------------------------------------------------------------------ files


def _saved(tmp_path, metric="cosine", string_ids=True):
    refs, _ = _data(seed=2, n=50)
    index = EmbeddingIndex(metric=metric)
    ids = [f"item-{i}" for i in range(50)] if string_ids else None
    index.add(refs, labels=np.arange(50) % 5, ids=ids)
    path = tmp_path / "index.npz"
    index.save(path)
    return index, path


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("string_ids", [True, False])
def test_save_load_round_trip(tmp_path, metric, string_ids):
    index, path = _saved(tmp_path, metric, string_ids)
    loaded = EmbeddingIndex.load(path)
    assert (loaded.metric, loaded.dim, len(loaded)) == (metric, 8, 50)
    np.testing.assert_array_equal(loaded.embeddings, index.embeddings)
    np.testing.assert_array_equal(loaded.ids, index.ids)
    np.testing.assert_array_equal(loaded.labels, index.labels)
    queries = _data(seed=3)[1]
    for a, b in zip(index.search(queries, 4), loaded.search(queries, 4)):
        np.testing.assert_array_equal(a, b)
    # Nothing in the file needs pickle.
    with np.load(path, allow_pickle=False) as archive:
        assert all(archive[name].dtype != object for name in archive.files)
    # The loaded index keeps growing, with the same checks.
    loaded.add(np.ones((1, 8)), labels=[1], ids=["new"] if string_ids else None)
    with pytest.raises(ValueError, match="dimension"):
        loaded.add(np.ones((1, 9)), labels=[1], ids=["new2"] if string_ids else None)


def test_round_trip_without_labels_empty_and_compressed(tmp_path):
    index = EmbeddingIndex(metric="euclidean")
    index.add(np.eye(4))
    index.save(tmp_path / "plain", compress=True)  # the path is used as given
    loaded = EmbeddingIndex.load(tmp_path / "plain")
    assert loaded.labels is None and loaded.ids.tolist() == [0, 1, 2, 3]
    EmbeddingIndex().save(tmp_path / "empty.npz")
    empty = EmbeddingIndex.load(tmp_path / "empty.npz")
    assert len(empty) == 0 and empty.dim is None
    empty.add(np.eye(2))
    assert empty.dim == 2


def test_faiss_index_loads_from_a_file(tmp_path):
    index, path = _saved(tmp_path, "euclidean")
    fast = EmbeddingIndex.load(path, backend="faiss")
    queries = _data(seed=3)[1]
    assert np.mean(fast.search(queries, 3)[1] == index.search(queries, 3)[1]) > 0.99


def test_truncated_file_is_rejected(tmp_path):
    _, path = _saved(tmp_path)
    data = path.read_bytes()
    for size in (0, 10, len(data) // 2, len(data) - 30):
        path.write_bytes(data[:size])
        with pytest.raises(ValueError, match="truncated|not an .npz|Cannot read"):
            EmbeddingIndex.load(path)


def test_flipped_byte_is_rejected(tmp_path):
    _, path = _saved(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside the embeddings array
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupted|checksum"):
        EmbeddingIndex.load(path)


def _rewrite(path, **changes):
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays.update(changes)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)  # a valid archive whose checksum was not recomputed


def test_tampered_arrays_fail_the_checksum(tmp_path):
    index, path = _saved(tmp_path)
    _rewrite(path, embeddings=index.embeddings + np.float32(1e-3))
    with pytest.raises(ValueError, match="checksum"):
        EmbeddingIndex.load(path)
    index.save(path)
    _rewrite(path, labels=np.roll(index.labels, 1))
    with pytest.raises(ValueError, match="checksum"):
        EmbeddingIndex.load(path)
    index.save(path)
    _rewrite(path, metric=np.array("euclidean"))
    with pytest.raises(ValueError, match="checksum"):
        EmbeddingIndex.load(path)


# One way to tamper each stored field (the checksum itself aside): each must fail the
# checksum. The list must name every array of the file (checked below), so a field added
# to the format gets its own tamper test.
TAMPERED = {
    "embeddings": lambda a: a["embeddings"] + np.float32(1e-3),
    "ids": lambda a: a["ids"][np.r_[1, 0, 2 : a["ids"].size]],  # two ids swapped
    "labels": lambda a: np.roll(a["labels"], 1),
    "dim": lambda a: np.array(-1, dtype=np.int64),  # would load as "no dimension"
    "metric": lambda a: np.array("euclidean"),
    "format_version": lambda a: np.array(0, dtype=np.int64),  # an older version
}


def test_the_tamper_tests_cover_every_stored_field(tmp_path):
    _, path = _saved(tmp_path)
    with np.load(path, allow_pickle=False) as archive:
        assert set(archive.files) == set(TAMPERED) | {"checksum"}


@pytest.mark.parametrize("field", sorted(TAMPERED))
def test_tampering_any_field_fails_the_checksum(tmp_path, field):
    """Had the checksum skipped `field`, the tampered file would load (or fail later
    with another message): checked by removing each field from `file_format.checksum`."""
    _, path = _saved(tmp_path)
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    tampered = TAMPERED[field](arrays)
    assert tampered.shape == arrays[field].shape and not np.array_equal(tampered, arrays[field])
    _rewrite(path, **{field: tampered})
    with pytest.raises(ValueError, match="failed its SHA-256 checksum") as info:
        EmbeddingIndex.load(path)
    assert "\n" not in str(info.value) and info.value.__cause__ is None


def test_removing_or_adding_an_array_fails_the_checksum(tmp_path):
    _, path = _saved(tmp_path)
    _rewrite(path, labels=None)  # an index with labels, made to look like one without
    with pytest.raises(ValueError, match="checksum"):
        EmbeddingIndex.load(path)
    _, path = _saved(tmp_path)
    _rewrite(path, extra=np.zeros(3))
    with pytest.raises(ValueError, match="checksum"):
        EmbeddingIndex.load(path)
    _, path = _saved(tmp_path)
    _rewrite(path, checksum=np.array("0" * 64))
    with pytest.raises(ValueError, match="checksum"):
        EmbeddingIndex.load(path)


def test_bad_files_give_one_line_errors(tmp_path):
    _, path = _saved(tmp_path)
    data = path.read_bytes()
    (tmp_path / "text.npz").write_text("not an index")
    cases = {"text.npz": "not an .npz archive"}
    for size in (0, 10, len(data) // 2):
        (tmp_path / f"cut{size}.npz").write_bytes(data[:size])
        cases[f"cut{size}.npz"] = "truncated"
    for name, match in cases.items():
        with pytest.raises(ValueError, match=match) as info:
            EmbeddingIndex.load(tmp_path / name)
        message = str(info.value)
        assert "\n" not in message and "pickle" not in message, message
        assert (
            info.value.__cause__ is None and info.value.__suppress_context__ or info.value.__context__ is None
        ), "no chained traceback"


def test_other_archives_are_rejected(tmp_path):
    index, path = _saved(tmp_path)
    _rewrite(path, checksum=None)
    with pytest.raises(ValueError, match="missing array"):
        EmbeddingIndex.load(path)
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(ValueError, match="single .npy"):
        EmbeddingIndex.load(tmp_path / "single.npy")
    np.savez(tmp_path / "objects.npz", ids=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        EmbeddingIndex.load(tmp_path / "objects.npz")
    (tmp_path / "text.npz").write_text("not an index")
    with pytest.raises(ValueError):
        EmbeddingIndex.load(tmp_path / "text.npz")
    with pytest.raises(FileNotFoundError):
        EmbeddingIndex.load(tmp_path / "missing.npz")


def _forge(path, index, **changes):
    """Writes `index` with `changes` and a checksum recomputed over them (a consistent
    file that other code could have written)."""
    arrays = file_format.to_arrays(index)
    arrays.pop("checksum")
    arrays.update(changes)
    arrays["checksum"] = np.array(file_format.checksum(arrays))
    np.savez(path, **arrays)


def test_newer_format_and_inconsistent_shapes(tmp_path):
    index, path = _saved(tmp_path)
    _forge(path, index, format_version=np.array(99, dtype=np.int64))
    with pytest.raises(ValueError, match="format version 99"):
        EmbeddingIndex.load(path)
    _forge(path, index, dim=np.array(7, dtype=np.int64))  # a consistent checksum, wrong dim
    with pytest.raises(ValueError, match="dimension 7"):
        EmbeddingIndex.load(path)
    _forge(path, index, dim=np.array(-1, dtype=np.int64))  # "no embeddings yet", but 50
    with pytest.raises(ValueError, match="dimension -1"):
        EmbeddingIndex.load(path)
    _forge(path, index, ids=np.array(["same"] * 50))
    with pytest.raises(ValueError, match="not unique"):
        EmbeddingIndex.load(path)
    _forge(path, index, labels=np.zeros(49, dtype=np.int64))
    with pytest.raises(ValueError, match="do not match 50 embeddings"):
        EmbeddingIndex.load(path)
    _forge(path, index, metric=np.array("manhattan"))
    with pytest.raises(ValueError, match="unknown metric"):
        EmbeddingIndex.load(path)


def test_crash_mid_save_leaves_the_previous_file(tmp_path, monkeypatch):
    index, path = _saved(tmp_path)
    before = path.read_bytes()
    bigger = EmbeddingIndex(metric="cosine")
    bigger.add(np.ones((80, 8)), labels=np.zeros(80, dtype=int))

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("power cut")

    # A crash while writing the archive...
    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        bigger.save(path)
    monkeypatch.undo()
    # ...and one just before the rename.
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        bigger.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.npz"]  # no temp file left
    assert len(EmbeddingIndex.load(path)) == 50
    bigger.save(path)
    assert len(EmbeddingIndex.load(path)) == 80


def test_saved_file_is_a_plain_zip(tmp_path):
    _, path = _saved(tmp_path)
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == sorted(
            f"{n}.npy" for n in ("format_version", "metric", "dim", "embeddings", "ids", "labels", "checksum")
        )
    # The file gets the usual permissions (0o666 minus the umask), not mkstemp's 0o600.
    umask = os.umask(0o022)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
