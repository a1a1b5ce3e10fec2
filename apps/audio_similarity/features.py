"""Log-mel spectrograms with an on-disk cache, fixed-length windows and the MFCC baseline.

Defaults (`FeatureSettings()`): 16 kHz audio, 25 ms Hann windows (400 samples, FFT size
512), 10 ms hop (160 samples), 64 mel bands from 20 Hz to 8 kHz (librosa's Slaney mel
filters), power in decibels `10·log10(max(mel_power, 1e-10))`. These are the usual
settings of speech and sound-event models (e.g. VGGish / PANNs use 64 bands and 10 ms
hops); a one-second clip gives a `[101, 64]` array (frames × bands).

The cache (`FeatureCache`) stores one `.npy` per file, named by the SHA-256 of the
file's *content* in a folder named by a hash of the settings: renaming or moving files
keeps their features, editing a file or changing a setting recomputes them. Entries are
written atomically (`apps._common.write_bytes`), so an interrupted run
leaves only whole entries, and the next run resumes where it stopped. Files that could
not be used are remembered too (a small `.bad` text file with the reason).
"""

import dataclasses
import hashlib
import io
import json
import os
import sys

import numpy as np

from apps._common import SkipReport, fail, log, write_bytes
from apps.audio_similarity.data import BadAudio, load_audio, scan_folder

CACHE_FORMAT = 1
LOG_FLOOR = 1e-10  # -100 dB


@dataclasses.dataclass(frozen=True)
class FeatureSettings:
    """How a clip becomes a log-mel spectrogram (see the module docstring)."""

    sample_rate: int = 16000
    n_mels: int = 64
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 512
    fmin: float = 20.0
    fmax: float = None  # None: sample_rate / 2
    min_duration: float = 0.1

    @property
    def win_length(self):
        return int(round(self.sample_rate * self.win_ms / 1000.0))

    @property
    def hop_length(self):
        return int(round(self.sample_rate * self.hop_ms / 1000.0))

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def key(self):
        """A short hash of the settings (and the cache format): the cache folder name."""
        text = json.dumps({"format": CACHE_FORMAT, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


_MEL_BASIS = {}


def _mel_basis(settings):
    import librosa

    key = (settings.sample_rate, settings.n_fft, settings.n_mels, settings.fmin, settings.fmax)
    if key not in _MEL_BASIS:
        _MEL_BASIS[key] = librosa.filters.mel(
            sr=settings.sample_rate,
            n_fft=settings.n_fft,
            n_mels=settings.n_mels,
            fmin=settings.fmin,
            fmax=settings.fmax,
        ).astype(np.float32)
    return _MEL_BASIS[key]


def log_mel(y, settings=FeatureSettings()):
    """Log-mel spectrogram `[frames, n_mels]` (float32, dB) of mono samples `y`.

    Example:

    >>> y = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype("float32")
    >>> log_mel(y).shape
    (101, 64)
    """
    import librosa

    y = np.asarray(y, dtype=np.float32)
    spec = librosa.stft(
        y,
        n_fft=settings.n_fft,
        hop_length=settings.hop_length,
        win_length=settings.win_length,
        window="hann",
        center=True,
    )
    power = spec.real**2 + spec.imag**2
    mel = _mel_basis(settings) @ power
    return (10.0 * np.log10(np.maximum(mel, LOG_FLOOR))).T.astype(np.float32)


class FeatureCache:
    """Log-mel features on disk, keyed by file content and settings (see module docstring).

    Example:

    >>> import tempfile
    >>> cache = FeatureCache(tempfile.mkdtemp())
    >>> cache.get(b"some bytes") is None
    True
    """

    def __init__(self, root, settings=FeatureSettings()):
        self.settings = settings
        self.root = os.path.join(os.fspath(root), settings.key())
        os.makedirs(self.root, exist_ok=True)
        info = os.path.join(self.root, "settings.json")
        if not os.path.exists(info):
            write_bytes(info, json.dumps(settings.to_dict(), indent=2, sort_keys=True).encode())

    @staticmethod
    def content_key(data):
        return hashlib.sha256(data).hexdigest()

    def _path(self, key, suffix):
        return os.path.join(self.root, key[:2], key + suffix)

    def get(self, data_or_key):
        """`(features, None)`, `(None, reason)` for a known bad file, or None if absent."""
        key = data_or_key if isinstance(data_or_key, str) else self.content_key(data_or_key)
        path = self._path(key, ".npy")
        if os.path.exists(path):
            try:
                return np.load(path, allow_pickle=False).astype(np.float32), None
            except Exception:  # noqa: BLE001 - a damaged entry is recomputed
                return None
        bad = self._path(key, ".bad")
        if os.path.exists(bad):
            with open(bad, encoding="utf-8") as f:
                return None, f.read()
        return None

    def put(self, key, features):
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(features, dtype=np.float16), allow_pickle=False)
        write_bytes(self._path(key, ".npy"), buffer.getvalue())

    def put_bad(self, key, reason):
        write_bytes(self._path(key, ".bad"), str(reason).encode("utf-8"))


@dataclasses.dataclass
class FeatureSet:
    """The usable clips of a data set: features, labels and where they came from."""

    features: list  # of float32 [frames, n_mels]
    labels: np.ndarray  # int64 [N], indices into class_names
    class_names: list
    paths: list
    report: SkipReport
    computed: int = 0  # how many were extracted in this run (the rest came from the cache)

    def __len__(self):
        return len(self.features)

    def label_names(self):
        return [self.class_names[i] for i in self.labels]


def extract_features(
    paths,
    names,
    settings=FeatureSettings(),
    cache_dir=None,
    progress=True,
    description="log-mel",
):
    """Log-mel features of `paths` (class names `names`), from the cache where possible.

    Files that cannot be used are skipped and listed in the returned set's `report`.
    Returns a `FeatureSet` whose `labels` index the sorted class names that kept at
    least one file.
    """
    from tqdm.auto import tqdm

    cache = FeatureCache(cache_dir, settings) if cache_dir else None
    report = SkipReport()
    kept_feats, kept_names, kept_paths = [], [], []
    computed = 0
    bar = tqdm(
        list(zip(paths, names)),
        desc=description,
        unit="file",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    for path, name in bar:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            report.add(path, f"cannot read: {e.strerror or e}")
            continue
        key = FeatureCache.content_key(data)
        hit = cache.get(key) if cache is not None else None
        if hit is not None:
            feats, reason = hit
            if reason is not None:
                report.add(path, reason)
                continue
        else:
            try:
                y = load_audio(path, settings.sample_rate, settings.min_duration, data=data)
                feats = log_mel(y, settings)
            except BadAudio as e:
                report.add(path, str(e))
                if cache is not None:
                    cache.put_bad(key, str(e))
                continue
            except Exception as e:  # noqa: BLE001 - never stop a run on one file
                report.add(path, f"could not process ({type(e).__name__}: {e})")
                continue
            computed += 1
            if cache is not None:
                cache.put(key, feats)
            feats = feats.astype(np.float16).astype(np.float32)  # same values as cached
        kept_feats.append(feats)
        kept_names.append(name)
        kept_paths.append(path)
    class_names = sorted(set(kept_names))
    lookup = {n: i for i, n in enumerate(class_names)}
    labels = np.array([lookup[n] for n in kept_names], dtype=np.int64)
    return FeatureSet(kept_feats, labels, class_names, kept_paths, report, computed)


def load_folder(data_dir, settings=FeatureSettings(), cache_dir=None, progress=True, report_path=None):
    """`extract_features` of every file of a `DATA/<class>/<file>` folder; writes the
    skipped-file report to `report_path` and says on stderr what was used."""
    paths, names = scan_folder(data_dir)
    if not paths:
        fail(
            f"no audio files found under {data_dir!r}. Expected DATA/<class>/<file> "
            "with .wav/.flac/.ogg/.mp3 files (one sub-folder per class)."
        )
    fs = extract_features(
        paths,
        names,
        settings,
        cache_dir=cache_dir,
        progress=progress,
        description=f"log-mel {os.path.basename(os.path.normpath(data_dir))}",
    )
    if report_path:
        fs.report.write(report_path)
    log(
        f"{data_dir}: {fs.report.summary(len(fs), report_path)}; "
        f"{len(fs.class_names)} classes; {fs.computed} extracted, {len(fs) - fs.computed} "
        "from the cache"
    )
    return fs


# ------------------------------------------------------------------------------ windows


def fit_window(x, frames, offset=None, rng=None):
    """A `[frames, n_mels]` window of `x`: a crop of a long clip, a padded short one.

    `offset` is where the window starts in a long clip (or where a short clip starts in
    the window); `None` centres it, unless `rng` is given (then it is random). Padding
    uses the clip's minimum (its quietest level), not an artificial floor.
    """
    n = x.shape[0]
    if n == frames:
        return x
    span = abs(n - frames)
    if offset is None:
        offset = int(rng.integers(0, span + 1)) if rng is not None else span // 2
    offset = int(min(max(offset, 0), span))
    if n > frames:
        return x[offset : offset + frames]
    out = np.full((frames, x.shape[1]), x.min(), dtype=x.dtype)
    out[offset : offset + n] = x
    return out


def eval_windows(x, frames):
    """Windows covering a whole clip for evaluation: `[n_windows, frames, n_mels]`.

    A clip up to `frames` long gives one centred, padded window; a longer one is tiled
    with windows every `frames // 2` frames, the last one ending at the clip's end.
    """
    n = x.shape[0]
    if n <= frames:
        return fit_window(x, frames)[None]
    hop = max(frames // 2, 1)
    starts = list(range(0, n - frames + 1, hop))
    if starts[-1] != n - frames:
        starts.append(n - frames)
    return np.stack([x[s : s + frames] for s in starts])


def embed_clips(model, features, frames, batch_size=256):
    """One embedding per clip: the mean of its windows' embeddings, L2-normalised."""
    windows, owner = [], []
    for i, x in enumerate(features):
        w = eval_windows(x, frames)
        windows.append(w)
        owner.extend([i] * len(w))
    owner = np.asarray(owner)
    stacked = np.concatenate(windows)[..., None].astype(np.float32)
    emb = model.embed(_pad_rows(stacked, batch_size), batch_size=batch_size)[: len(stacked)]
    dim = emb.shape[1]
    out = np.zeros((len(features), dim), dtype=np.float64)
    np.add.at(out, owner, emb.astype(np.float64))
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out.astype(np.float32)


def _pad_rows(x, batch_size):
    """`x` padded (with copies of its last row) to a power of two below `batch_size`, or to
    a multiple of it: compiled backends (JAX, TensorFlow with XLA) trace one graph per
    batch shape, so a few shapes are reused instead of a new one for every call (a query,
    an index chunk)."""
    n = len(x)
    size = 1 << max(n - 1, 0).bit_length() if n < batch_size else -(-n // batch_size) * batch_size
    if size == n:
        return x
    return np.concatenate([x, np.repeat(x[-1:], size - n, axis=0)])


# ------------------------------------------------------------------------- MFCC baseline


def mfcc_stats(features, n_mfcc=20, standardize=True):
    """The non-learned baseline: mean and standard deviation over time of `n_mfcc` MFCCs.

    The MFCCs are the DCT-II of the same log-mel spectrograms the network sees
    (`librosa.feature.mfcc(S=...)`), so the baseline and the network share every
    decoding and framing choice. With `standardize=True` each of the `2 · n_mfcc`
    dimensions is z-scored over the set (otherwise the energy coefficient dominates the
    cosine). Compare with `metric="cosine"`.
    """
    import librosa

    rows = []
    for x in features:
        m = librosa.feature.mfcc(S=np.asarray(x, np.float32).T, n_mfcc=n_mfcc)
        rows.append(np.concatenate([m.mean(axis=1), m.std(axis=1)]))
    stats = np.asarray(rows, dtype=np.float64)
    if standardize and len(stats) > 1:
        stats = (stats - stats.mean(axis=0)) / np.maximum(stats.std(axis=0), 1e-8)
    return stats.astype(np.float32)
