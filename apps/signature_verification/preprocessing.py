"""Signature image preprocessing (scikit-image and Pillow), the same for every data set.

`preprocess(image, size=(64, 128))` turns a scan into the network's input:

1. **grayscale**, float in [0, 255] (RGB / RGBA / 16-bit images are converted;
   transparent pixels become paper);
2. **background removal** with Otsu's threshold (computed on a lightly smoothed copy so
   paper noise does not split strokes): pixels lighter than the threshold become pure
   white paper, ink keeps its gray level (as in SigNet);
3. **crop to the signature**: the bounding box of the ink mask, after removing specks of
   fewer than `min_speck` pixels (dust, scanner noise), plus a 2-pixel border;
4. **resize preserving the aspect ratio** (anti-aliased) to fit `size = (height, width)`
   and **pad** to exactly that size, centred, with paper;
5. **invert** (paper 0, ink positive) and **normalise** to [0, 1] by dividing by 255.

The default size 64×128 (height × width) is a CPU-friendly stand-in for SigNet's
155×220 (Dey et al., 2017); signatures are wide, so the 1:2 ratio wastes fewer pixels.
Pass another `size` (and train a model with that input) for more detail.

Example:

>>> import numpy as np
>>> scan = np.full((60, 200), 230, np.uint8); scan[20:40, 50:150] = 30
>>> x = preprocess(scan, size=(32, 64))
>>> x.shape, x.dtype.name, float(x.min()), round(float(x.max()), 3)
((32, 64), 'float32', 0.0, 0.882)
"""

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

DEFAULT_SIZE = (64, 128)

# Extensions read as images (anything else in a signature folder is skipped and reported).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".pgm", ".ppm", ".webp")


class UnreadableImageError(ValueError):
    """A file that is not an image Pillow can decode (or an empty / blank image)."""


def read_image(path):
    """Reads a file as a grayscale `uint8 [H, W]` array (transparent pixels -> white).

    Raises `UnreadableImageError` for files Pillow cannot decode.
    """
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                paper = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(paper, im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                a = np.asarray(im, dtype=np.float64)
                hi = a.max() if a.size else 1.0
                return np.clip(a / (hi if hi > 0 else 1.0) * 255.0, 0, 255).astype(np.uint8)
            if im.mode == "1":
                im = im.convert("L")
            return np.asarray(im.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UnreadableImageError(f"{path}: not a readable image ({type(e).__name__}: {e})") from e


def _to_gray(image):
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        rgb = a[..., :3].astype(np.float64)
        if a.dtype.kind == "f" and rgb.max() <= 1.0:
            rgb = rgb * 255.0
        return rgb @ np.array([0.299, 0.587, 0.114])
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise ValueError(
            f"a signature image must be 2-D grayscale [H, W] or [H, W, 1|3|4]; got shape {a.shape}."
        )
    floats = a.dtype.kind == "f"
    a = a.astype(np.float64)
    if floats and a.size and a.max() <= 1.0:
        a = a * 255.0
    return a


def preprocess(image, size=DEFAULT_SIZE, min_speck=8):
    """Preprocesses one signature image (see the module docstring): `float32 [H, W]` in [0, 1].

    Args:
        image: a `uint8` (0-255) or float (0-1) grayscale or RGB(A) array, dark ink on
            light paper.
        size: `(height, width)` of the output.
        min_speck: ink blobs smaller than this (in pixels) are ignored when cropping.
    """
    from skimage.filters import gaussian, threshold_otsu
    from skimage.measure import label, regionprops
    from skimage.transform import resize

    height, width = int(size[0]), int(size[1])
    gray = _to_gray(image)
    if gray.size == 0:
        raise UnreadableImageError("empty image (no pixels)")
    smooth = gaussian(gray, sigma=1.0, preserve_range=True)
    if smooth.max() - smooth.min() < 1e-6:
        raise UnreadableImageError("blank image (a single gray level: no signature)")
    t = threshold_otsu(smooth)
    ink = smooth < t
    cleaned = np.where(gray < t, gray, 255.0)  # background removal

    # Crop to the ink, ignoring specks.
    labelled = label(ink, connectivity=2)
    boxes = [r.bbox for r in regionprops(labelled) if r.area >= min_speck]
    if boxes:
        boxes = np.array(boxes)
        r0, c0 = boxes[:, 0].min(), boxes[:, 1].min()
        r1, c1 = boxes[:, 2].max(), boxes[:, 3].max()
    else:
        rows, cols = np.nonzero(ink)
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    pad = 2
    r0, c0 = max(0, r0 - pad), max(0, c0 - pad)
    r1, c1 = min(gray.shape[0], r1 + pad), min(gray.shape[1], c1 + pad)
    crop = 255.0 - cleaned[r0:r1, c0:c1]  # invert: paper 0, ink positive

    # Resize preserving the aspect ratio, then pad (centred) to the output size.
    h, w = crop.shape
    scale = min(height / h, width / w)
    new_h, new_w = max(1, min(height, int(round(h * scale)))), max(1, min(width, int(round(w * scale))))
    small = resize(crop, (new_h, new_w), order=1, anti_aliasing=scale < 1, preserve_range=True)
    out = np.zeros((height, width), dtype=np.float32)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    out[top : top + new_h, left : left + new_w] = small
    return np.clip(out / 255.0, 0.0, 1.0).astype(np.float32)


def preprocess_batch(images, size=DEFAULT_SIZE):
    """Preprocesses a list of arrays: `float32 [N, H, W, 1]`."""
    out = np.zeros((len(images), int(size[0]), int(size[1]), 1), dtype=np.float32)
    for i, image in enumerate(images):
        out[i, ..., 0] = preprocess(image, size)
    return out


def load_image(path, size=DEFAULT_SIZE):
    """Reads and preprocesses one file: `float32 [H, W, 1]`.

    Raises `UnreadableImageError` if the file is not a readable, non-blank image.
    """
    ext = os.path.splitext(str(path))[1].lower()
    if ext and ext not in IMAGE_EXTENSIONS:
        raise UnreadableImageError(f"{path}: not an image file (extension {ext!r})")
    return preprocess(read_image(path), size)[..., None]


def load_images(paths, size=DEFAULT_SIZE):
    """Reads and preprocesses files; unreadable ones are skipped.

    Returns `(images float32 [N_ok, H, W, 1], kept indices [N_ok], skipped list of
    (path, reason))`.
    """
    images, kept, skipped = [], [], []
    for i, path in enumerate(paths):
        try:
            images.append(load_image(path, size))
            kept.append(i)
        except UnreadableImageError as e:
            skipped.append((str(path), str(e).split(": ", 1)[-1]))
    if images:
        array = np.stack(images).astype(np.float32)
    else:
        array = np.zeros((0, int(size[0]), int(size[1]), 1), np.float32)
    return array, np.asarray(kept, dtype=np.int64), skipped
