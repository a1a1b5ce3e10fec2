"""`EmbeddingIndex`: nearest-neighbour search over stored embeddings, with safe files.

Reading order:

- `container.py`: `EmbeddingIndex`, what it holds (embeddings, ids, labels) and the
  checks on what is added; it hands searches and files to the modules below.
- `exact.py`: the default search, exact, by chunks of queries and blocks of stored
  embeddings (NumPy float64) with a running top-`k`, so memory stays bounded.
- `faiss_search.py`: `backend="faiss"`, a faiss flat index (`faiss-cpu` / `faiss-gpu`),
  distances converted to the same metric definitions.
- `file_format.py`: the `.npz` file (`save` / `load`): no pickle, a SHA-256 checksum over
  every stored array, atomic writes, one-line errors for bad files.

Metrics (the definitions of `keras_triplet.distances`, computed in NumPy by
`keras_triplet.metrics.pairwise_distances_numpy`): `"euclidean"` `‖x − y‖₂`,
`"squared_euclidean"` `‖x − y‖₂²`, `"cosine"` `1 − cos(x, y)` (a zero vector has
similarity 0 with everything), `"angular"` `max(1 − cos(x, y), 0)`.
"""

from keras_triplet.index.container import BACKENDS, EmbeddingIndex
from keras_triplet.index.file_format import FORMAT_VERSION

__all__ = ["BACKENDS", "FORMAT_VERSION", "EmbeddingIndex"]
