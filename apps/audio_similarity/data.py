"""Finding and loading sound files: folder scanning, decoding, checks, the skipped-file report.

Layout of a data set: one folder per class, the files inside it (any depth below the
class folder)::

    DATA/
      dog_bark/  a.wav  b.flac ...
      siren/     c.ogg  d.mp3 ...

Decoding: `soundfile` (libsndfile: wav, flac, ogg/vorbis, opus, mp3 with libsndfile >=
1.1) first, then `librosa.load` (audioread / ffmpeg, when the platform has a decoder).
Every clip is mixed down to mono (mean of the channels) and resampled to one rate
(`librosa.resample`, soxr).

Bad input never stops a run: `load_audio` raises `BadAudio` with a short reason
("empty file", "not an audio file or corrupt: ...", "silent", "too short: ...", ...)
and the callers collect those in a `SkipReport` (`apps._common`), written as a
tab-separated file with columns `file` and `reason`.
"""

import io
import os
import warnings

import numpy as np

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au")

# A clip whose peak amplitude is below this (about -80 dBFS) counts as silent.
SILENCE_PEAK = 1e-4
# Clips shorter than this many seconds are skipped (a 25 ms window needs something to see).
MIN_DURATION = 0.1


class BadAudio(Exception):
    """A file that cannot be used; `str(error)` is the reason written to the report."""


def scan_folder(root, extensions=AUDIO_EXTENSIONS):
    """Files and class names of a `DATA/<class>/<file>` folder.

    Returns `(paths, class_names)`: `paths` sorted, `class_names[i]` the name of the
    top-level folder holding `paths[i]`. Files directly under `root`, hidden files and
    folders, and files whose extension is not in `extensions` are ignored (pass
    `extensions=None` to take every file: the unreadable ones then go to the report).

    Example:

    >>> import os, tempfile
    >>> root = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(root, "bird"))
    >>> open(os.path.join(root, "bird", "a.wav"), "wb").close()
    >>> paths, names = scan_folder(root)
    >>> [os.path.basename(p) for p in paths], names
    (['a.wav'], ['bird'])
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"{root!r} is not a folder. Expected a data folder laid out as DATA/<class>/<file> "
            "(one sub-folder per class)."
        )
    exts = None if extensions is None else tuple(e.lower() for e in extensions)
    paths, names = [], []
    for cls in sorted(os.listdir(root)):
        class_dir = os.path.join(root, cls)
        if cls.startswith(".") or not os.path.isdir(class_dir):
            continue
        for dirpath, dirnames, filenames in os.walk(class_dir):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                if exts is not None and not name.lower().endswith(exts):
                    continue
                paths.append(os.path.join(dirpath, name))
                names.append(cls)
    order = np.argsort(np.array(paths, dtype=str), kind="stable") if paths else []
    return [paths[i] for i in order], [names[i] for i in order]


def _decode(data, path):
    """(samples [n, channels] float32, rate) from the bytes of a file (or its path)."""
    import soundfile

    try:
        y, sr = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
        return y, int(sr)
    except Exception as sf_error:  # noqa: BLE001 - any decoder failure is a bad file
        first = f"{type(sf_error).__name__}: {sf_error}"
    try:  # librosa / audioread may decode what libsndfile cannot (e.g. mp3 on old libsndfile)
        import librosa

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y, sr = librosa.load(path, sr=None, mono=False)
        y = np.asarray(y, dtype=np.float32)
        y = y[:, None] if y.ndim == 1 else y.T
        return y, int(sr)
    except Exception:  # noqa: BLE001
        pass
    first = first.replace("\n", " ")
    if len(first) > 160:
        first = first[:157] + "..."
    raise BadAudio(f"not an audio file or corrupt ({first})")


def load_audio(path, sample_rate=16000, min_duration=MIN_DURATION, data=None):
    """The clip at `path` as mono float32 samples at `sample_rate` Hz.

    `data` (the file's bytes) may be given when the caller has read them already.

    Raises:
        BadAudio: with the reason, when the file is empty, cannot be decoded (corrupt,
            truncated header, not audio), holds no samples or non-finite samples, is
            silent (peak below `SILENCE_PEAK`) or shorter than `min_duration` seconds.

    Example:

    >>> import os, tempfile, soundfile
    >>> path = os.path.join(tempfile.mkdtemp(), "tone.wav")
    >>> t = np.arange(8000) / 8000
    >>> soundfile.write(path, 0.5 * np.sin(2 * np.pi * 440 * t), 8000)
    >>> load_audio(path, sample_rate=16000).shape
    (16000,)
    """
    if data is None:
        with open(path, "rb") as f:
            data = f.read()
    if len(data) == 0:
        raise BadAudio("empty file")
    y, sr = _decode(data, path)
    if y.size == 0 or y.shape[0] == 0:
        raise BadAudio("no audio samples (truncated or empty audio stream)")
    y = y.mean(axis=1) if y.shape[1] > 1 else y[:, 0]
    if not np.all(np.isfinite(y)):
        raise BadAudio("non-finite samples (NaN or infinity)")
    duration = y.shape[0] / sr
    if duration < min_duration:
        raise BadAudio(f"too short: {duration:.3f} s < {min_duration} s")
    if float(np.max(np.abs(y))) < SILENCE_PEAK:
        raise BadAudio(f"silent (peak amplitude below {SILENCE_PEAK:g})")
    if sr != sample_rate:
        import librosa

        y = librosa.resample(y, orig_sr=sr, target_sr=sample_rate)
    return np.ascontiguousarray(y, dtype=np.float32)
