"""Export embeddings for TensorBoard's embedding projector (no TensorBoard import needed).

`export_projector(log_dir, embeddings, labels, class_names=..., images=...)` writes into
`log_dir`:

| file | contents |
|---|---|
| `vectors.tsv` | one embedding per line, tab-separated |
| `metadata.tsv` | a header `label<TAB>class`, then each item's label and class name (only with labels) |
| `sprite.png` | the items' thumbnails in one square grid, row by row (only with `images`) |
| `projector_config.pbtxt` | the projector's configuration, pointing at the files above |

Then `tensorboard --logdir LOG_DIR` shows them in the "Projector" tab (PCA, t-SNE,
UMAP; colour and search by class). Every file is written atomically
(`keras_triplet._io.atomic_write`); the PNG is encoded here (zlib), so neither
TensorBoard, TensorFlow nor an image library is needed.
"""

import os
import struct
import zlib

import numpy as np

from keras_triplet._io import atomic_write
from keras_triplet._validation import check_embedding_array, check_label_array

VECTORS_FILE = "vectors.tsv"
METADATA_FILE = "metadata.tsv"
SPRITE_FILE = "sprite.png"
CONFIG_FILE = "projector_config.pbtxt"
# TensorBoard's projector reads sprites up to 8192 × 8192 pixels.
MAX_SPRITE_SIZE = 8192


def _cell(text):
    """One TSV cell: tabs and line breaks would break the table, so they become spaces."""
    return " ".join(str(text).split()) or " "


def _class_name(label, class_names):
    if class_names is None:
        return str(label)
    if isinstance(class_names, dict):
        return str(class_names.get(label, label))
    if isinstance(label, (int, np.integer)) and 0 <= label < len(class_names):
        return str(class_names[label])
    return str(label)


def _sprite(images):
    """The `[N, H, W(, C)]` thumbnails as one uint8 grid image `[S·H, S·W, C]`, `S = ceil(√N)`."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise ValueError(
            "`images` must be [N, height, width] or [N, height, width, channels] with 1, 3 or 4 "
            f"channels; got shape {images.shape}."
        )
    if images.dtype.kind == "f":
        if not np.all(np.isfinite(images)):
            raise ValueError("`images` contains NaN or infinity.")
        lo, hi = float(images.min()), float(images.max())
        # Floats in [0, 1] are intensities; anything else is rescaled to [0, 255].
        scale = (
            (lambda a: a * 255.0)
            if lo >= 0 and hi <= 1
            else (lambda a: (a - lo) / max(hi - lo, 1e-12) * 255.0)
        )
        images = np.round(scale(images.astype(np.float64))).astype(np.uint8)
    elif images.dtype != np.uint8:
        images = np.clip(images, 0, 255).astype(np.uint8)
    n, h, w, c = images.shape
    side = int(np.ceil(np.sqrt(n)))
    if side * max(h, w) > MAX_SPRITE_SIZE:
        raise ValueError(
            f"A sprite of {n} thumbnails of {h}×{w} pixels would be {side * h}×{side * w} pixels; "
            f"TensorBoard reads at most {MAX_SPRITE_SIZE}×{MAX_SPRITE_SIZE}. Pass smaller thumbnails."
        )
    grid = np.zeros((side * side, h, w, c), np.uint8)
    grid[:n] = images
    return grid.reshape(side, side, h, w, c).transpose(0, 2, 1, 3, 4).reshape(side * h, side * w, c), (h, w)


def encode_png(image):
    """A uint8 `[H, W, C]` image (C = 1, 3 or 4) as PNG bytes (8 bits per channel).

    >>> encode_png(np.zeros((2, 3, 1), np.uint8))[:8]
    b'\\x89PNG\\r\\n\\x1a\\n'
    """
    h, w, c = image.shape
    color_type = {1: 0, 3: 2, 4: 6}[c]

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    rows = np.concatenate([np.zeros((h, 1), np.uint8), image.reshape(h, w * c)], axis=1)  # filter 0 per row
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def export_projector(
    log_dir, embeddings, labels=None, class_names=None, images=None, tensor_name="embeddings"
):
    """Writes embeddings, their classes and thumbnails for TensorBoard's projector.

    Args:
        log_dir: the folder (created if needed) to point `tensorboard --logdir` at.
        embeddings: `[N, D]` array.
        labels: `[N]` integer or string labels, or None (no metadata file).
        class_names: names shown for the labels: a sequence indexed by integer label, or a
            dict `{label: name}`; labels without a name show as themselves.
        images: `[N, H, W]` or `[N, H, W, C]` thumbnails (uint8, or floats: in [0, 1] as
            intensities, else rescaled), or None (no sprite).
        tensor_name: the name the projector shows.

    Returns the paths written, a dict `{"vectors", "metadata", "sprite", "config"}` (None
    for a file not written).

    Example:

    >>> import os, tempfile
    >>> log_dir = tempfile.mkdtemp()
    >>> paths = export_projector(log_dir, np.eye(3), labels=[0, 1, 1], class_names=["cat", "dog"])
    >>> sorted(os.listdir(log_dir))
    ['metadata.tsv', 'projector_config.pbtxt', 'vectors.tsv']
    >>> open(paths["metadata"]).read().splitlines()
    ['label\\tclass', '0\\tcat', '1\\tdog', '1\\tdog']
    """
    x = check_embedding_array(embeddings, "`embeddings`", dtype=np.float64)
    n = x.shape[0]
    if labels is not None:
        labels = check_label_array(labels, n, name="`labels`", items="`embeddings`", strings=True)
    sprite = None
    if images is not None:
        if np.shape(images)[0] != n:
            raise ValueError(
                f"`images` holds {np.shape(images)[0]} thumbnails for {n} embeddings; give one per item."
            )
        sprite, (h, w) = _sprite(images)
    os.makedirs(log_dir, exist_ok=True)
    paths = {name: None for name in ("vectors", "metadata", "sprite", "config")}

    paths["vectors"] = os.path.join(log_dir, VECTORS_FILE)
    with atomic_write(paths["vectors"], "w") as f:
        for row in x:
            f.write("\t".join(repr(float(v)) for v in row) + "\n")
    config = [
        "embeddings {",
        f'  tensor_name: "{_cell(tensor_name).replace(chr(34), chr(39))}"',
        f'  tensor_path: "{VECTORS_FILE}"',
    ]
    if labels is not None:
        paths["metadata"] = os.path.join(log_dir, METADATA_FILE)
        with atomic_write(paths["metadata"], "w") as f:
            f.write("label\tclass\n")
            for label in labels.tolist():
                f.write(f"{_cell(label)}\t{_cell(_class_name(label, class_names))}\n")
        config.append(f'  metadata_path: "{METADATA_FILE}"')
    if sprite is not None:
        paths["sprite"] = os.path.join(log_dir, SPRITE_FILE)
        with atomic_write(paths["sprite"], "wb") as f:
            f.write(encode_png(sprite))
        config += [
            "  sprite {",
            f'    image_path: "{SPRITE_FILE}"',
            f"    single_image_dim: {w}",
            f"    single_image_dim: {h}",
            "  }",
        ]
    config.append("}")
    paths["config"] = os.path.join(log_dir, CONFIG_FILE)
    with atomic_write(paths["config"], "w") as f:
        f.write("\n".join(config) + "\n")
    return paths
