"""The built-in data set: synthesised sound classes, seeded, so no download is needed.

**Classes.** The default set has 48 classes built from 24 *sound sources*. A source is
one of six families, each with its own randomly drawn (seeded) parameters:

- `harmonic`: a harmonic stack (fundamental 120-1200 Hz, 4-14 partials, spectral tilt,
  odd/even balance);
- `chirp`: a sweep of a few harmonics over a frequency ratio of 1.5-3.5;
- `noiseband`: noise shaped around a centre frequency, 0.3-1.2 octaves wide;
- `vibrato`: a frequency-modulated tone (rate 4-9 Hz, depth 1-5 %);
- `bell`: inharmonic decaying partials at source-specific ratios;
- `breathy`: a harmonic tone mixed with band-limited noise.

Each source gives **two sibling classes that differ only in temporal structure**, the
way real classes often do (a knock and a footstep on the same floor, a rising and a
falling siren): a decay vs. its time-reversed swell, long-short vs. short-long, two vs.
three hits, steady vs. tremolo, and for chirps a rising vs. a falling sweep. Summary
statistics that ignore time order (the MFCC mean/std baseline) cannot separate siblings;
a convolutional network over the spectrogram can.

**Members of a class** vary as recordings do: pitch (±2 semitones), loudness (peak -30
to -3 dBFS), duration (×0.8-1.25 around the source's 0.6-1.0 s), timbre detail
(partial amplitudes ±2 dB, random phases, slight inharmonicity), onset and offset
silences (0-0.15 s) and background noise (white, pink or brown, 8-30 dB SNR).

**Split.** Six of the 24 sources (12 classes, covering every family and every kind of
temporal contrast) are *held out*: `make_dataset` writes them under `heldout/`, the
other 36 classes under `train/`, so evaluation on `heldout/` is open-set (classes never
seen in training).

Everything is a function of `seed`: clip `i` of class `c` uses
`numpy.random.default_rng([seed, c, i])`; files are written atomically and existing
ones are kept, so an interrupted generation resumes; `dataset.json` (written last)
records the parameters.
"""

import json
import os
import sys

import numpy as np

from apps._common import atomic_path, write_json

FAMILIES = ("harmonic", "chirp", "noiseband", "vibrato", "bell", "breathy")
# Sibling contrasts, by contrast type: (variant a, variant b).
CONTRASTS = (
    ("decay", "swell"),
    ("longshort", "shortlong"),
    ("double", "triple"),
    ("steady", "tremolo"),
)
DEFAULTS = dict(num_sources=24, clips_per_class=50, sample_rate=16000, seed=0)
MANIFEST = "dataset.json"


def _is_heldout(source):
    family, contrast = source % len(FAMILIES), (source // len(FAMILIES)) % len(CONTRASTS)
    return (family + contrast) % 4 == 3


def source_params(source, seed=0):
    """The parameters shared by both classes of a source (a dict)."""
    rng = np.random.default_rng([seed, 10_000 + source])
    family = FAMILIES[source % len(FAMILIES)]
    contrast = CONTRASTS[(source // len(FAMILIES)) % len(CONTRASTS)]
    p = {
        "family": family,
        "contrast": list(contrast),
        "f0": float(np.exp(rng.uniform(np.log(120.0), np.log(1200.0)))),
        "duration": float(rng.uniform(0.6, 1.0)),
        "partials": int(rng.integers(4, 15)),
        "tilt": float(rng.uniform(0.5, 2.0)),
        "odd_gain": float(rng.uniform(0.3, 1.0)),
        "sweep_ratio": float(rng.uniform(1.5, 3.5)),
        "band_octaves": float(rng.uniform(0.3, 1.2)),
        "band_center": float(np.exp(rng.uniform(np.log(400.0), np.log(5000.0)))),
        "vibrato_rate": float(rng.uniform(4.0, 9.0)),
        "vibrato_depth": float(rng.uniform(0.01, 0.05)),
        "bell_ratios": sorted(float(r) for r in rng.uniform(1.2, 7.0, size=4)),
        "breath_mix": float(rng.uniform(0.3, 0.7)),
        "tremolo_rate": float(rng.uniform(8.0, 14.0)),
    }
    return p


def class_list(num_sources=24, seed=0):
    """`[(class_index, source, variant, name, heldout)]` for every class."""
    out = []
    for s in range(num_sources):
        p = source_params(s, seed)
        for v, variant in enumerate(_variants(p)):
            c = 2 * s + v
            name = f"{s:02d}{'ab'[v]}_{p['family']}_{variant}"
            out.append((c, s, v, name, _is_heldout(s)))
    return out


def _variants(p):
    if p["family"] == "chirp":
        return ("rising", "falling")
    return tuple(p["contrast"])


# ------------------------------------------------------------------------------ signals


def _phase(freq, sr):
    """Phase of an oscillator with instantaneous frequency `freq` (Hz, per sample)."""
    return 2 * np.pi * np.cumsum(freq) / sr


def _shaped_noise(rng, n, sr, center, octaves):
    spec = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    logf = np.log2(np.maximum(f, 1.0) / center)
    spec *= np.exp(-0.5 * (logf / max(octaves / 2.0, 1e-3)) ** 2)
    y = np.fft.irfft(spec, n)
    return y / (np.std(y) + 1e-12)


def _colored_noise(rng, n, sr, color):
    spec = np.fft.rfft(rng.normal(size=n))
    f = np.maximum(np.fft.rfftfreq(n, 1.0 / sr), 20.0)
    spec /= f ** {"white": 0.0, "pink": 0.5, "brown": 1.0}[color]
    y = np.fft.irfft(spec, n)
    return y / (np.std(y) + 1e-12)


def _source(p, variant, rng, n, sr, pitch):
    t = np.arange(n) / sr
    family = p["family"]
    f0 = p["f0"] * pitch
    jitter = lambda size: 10 ** (rng.normal(0.0, 2.0, size) / 20)  # noqa: E731 - ±2 dB
    if family in ("harmonic", "breathy"):
        k = np.arange(1, p["partials"] + 1)
        k = k[k * f0 < 0.45 * sr]
        amp = k ** -p["tilt"] * np.where(k % 2 == 1, 1.0, p["odd_gain"]) * jitter(len(k))
        detune = 1 + rng.normal(0, 0.002, len(k))  # slight inharmonicity
        y = sum(
            a * np.sin(2 * np.pi * kk * d * f0 * t + rng.uniform(0, 2 * np.pi))
            for a, kk, d in zip(amp, k, detune)
        )
        if family == "breathy":
            noise = _shaped_noise(rng, n, sr, min(f0 * 4, 0.4 * sr), 1.5)
            y = (1 - p["breath_mix"]) * y / (np.std(y) + 1e-12) + p["breath_mix"] * noise
        return y
    if family == "chirp":
        ratio = p["sweep_ratio"]
        lo = f0
        curve = lo * ratio ** (t / t[-1])
        if variant == "falling":
            curve = curve[::-1]
        phase = _phase(curve, sr)
        amp = np.array([1.0, 0.5, 0.25]) * jitter(3)
        return sum(a * np.sin(h * phase) for a, h in zip(amp, (1, 2, 3)) if h * lo * ratio < 0.45 * sr)
    if family == "noiseband":
        center = min(p["band_center"] * pitch, 0.4 * sr)
        return _shaped_noise(rng, n, sr, center, p["band_octaves"] * rng.uniform(0.9, 1.1))
    if family == "vibrato":
        rate = p["vibrato_rate"] * rng.uniform(0.9, 1.1)
        freq = f0 * (1 + p["vibrato_depth"] * np.sin(2 * np.pi * rate * t + rng.uniform(0, 6.3)))
        phase = _phase(freq, sr)
        amp = np.array([1.0, 0.6, 0.3]) * jitter(3)
        return sum(a * np.sin(h * phase) for a, h in zip(amp, (1, 2, 3)))
    if family == "bell":
        ratios = np.array([1.0] + p["bell_ratios"]) * (1 + rng.normal(0, 0.003, 5))
        amps = np.array([1.0, 0.7, 0.5, 0.35, 0.25]) * jitter(5)
        y = np.zeros(n)
        for i, (r, a) in enumerate(zip(ratios, amps)):
            if r * f0 < 0.45 * sr:
                decay = np.exp(-t * (1.5 + 2.0 * i) / max(t[-1], 1e-3))
                y += a * decay * np.sin(2 * np.pi * r * f0 * t + rng.uniform(0, 6.3))
        return y
    raise ValueError(f"unknown family {family!r}")


def _gate(t, start, stop, attack=0.005, release=0.02):
    up = np.clip((t - start) / attack, 0, 1)
    down = np.clip((stop - t) / release, 0, 1)
    return np.minimum(up, down)


def _hit(t, start, length):
    x = (t - start) / max(length, 1e-3)
    env = np.where(x >= 0, np.exp(-5.0 * np.maximum(x, 0)), 0.0)
    return env * np.clip((t - start) / 0.003, 0, 1) * (x < 1.5)


def _envelope(variant, t, dur, p, rng):
    if variant in ("decay", "rising", "falling", "steady"):
        if variant == "decay":
            return _hit(t, 0.0, dur * 0.35)
        return _gate(t, 0.0, dur, attack=0.01, release=0.05)
    if variant == "swell":
        return _hit(dur - t, 0.0, dur * 0.35)  # the exact time reversal of "decay"
    if variant == "tremolo":
        rate = p["tremolo_rate"] * rng.uniform(0.9, 1.1)
        return _gate(t, 0.0, dur, 0.01, 0.05) * (0.55 + 0.45 * np.sin(2 * np.pi * rate * t))
    if variant == "longshort":
        return _gate(t, 0.0, 0.55 * dur) + _gate(t, 0.75 * dur, 0.9 * dur)
    if variant == "shortlong":
        return _gate(t, 0.1 * dur, 0.25 * dur) + _gate(t, 0.45 * dur, dur)
    if variant == "double":
        return _hit(t, 0.0, 0.2 * dur) + _hit(t, 0.5 * dur, 0.2 * dur)
    if variant == "triple":
        return sum(_hit(t, s * dur, 0.12 * dur) for s in (0.0, 1 / 3, 2 / 3))
    raise ValueError(f"unknown variant {variant!r}")


def synthesize(source, variant_index, clip, seed=0, sample_rate=16000):
    """One clip (float32 mono samples) of class `2 * source + variant_index`."""
    p = source_params(source, seed)
    variant = _variants(p)[variant_index]
    rng = np.random.default_rng([seed, 2 * source + variant_index, clip])
    sr = sample_rate
    pitch = 2 ** (rng.uniform(-2, 2) / 12)
    dur = p["duration"] * rng.uniform(0.8, 1.25)
    n = max(int(dur * sr), 1)
    t = np.arange(n) / sr
    y = _source(p, variant, rng, n, sr, pitch) * _envelope(variant, t, dur, p, rng)
    y = y / (np.sqrt(np.mean(y**2)) + 1e-12)
    lead, tail = (int(rng.uniform(0, 0.15) * sr) for _ in range(2))
    y = np.concatenate([np.zeros(lead), y, np.zeros(tail)])
    color = ("white", "pink", "brown")[rng.integers(3)]
    snr_db = rng.uniform(8, 30)
    y = y + _colored_noise(rng, len(y), sr, color) * 10 ** (-snr_db / 20)
    peak_db = rng.uniform(-30, -3)
    y = y / (np.max(np.abs(y)) + 1e-12) * 10 ** (peak_db / 20)
    return y.astype(np.float32)


def make_dataset(
    root,
    num_sources=DEFAULTS["num_sources"],
    clips_per_class=DEFAULTS["clips_per_class"],
    seed=DEFAULTS["seed"],
    sample_rate=DEFAULTS["sample_rate"],
    progress=True,
):
    """Writes the data set under `root` (`train/<class>/*.wav`, `heldout/<class>/*.wav`).

    Returns the manifest (a dict, also written to `root/dataset.json`). A complete data
    set with the same parameters is left as it is; a partial one is completed.

    Example:

    >>> import tempfile
    >>> m = make_dataset(tempfile.mkdtemp(), num_sources=2, clips_per_class=2, progress=False)
    >>> m["num_classes"], m["num_clips"]
    (4, 8)
    """
    import soundfile
    from tqdm.auto import tqdm

    root = os.fspath(root)
    params = dict(
        num_sources=num_sources, clips_per_class=clips_per_class, seed=seed, sample_rate=sample_rate
    )
    manifest_path = os.path.join(root, MANIFEST)
    if os.path.exists(manifest_path):
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
        if manifest.get("params") == params:
            return manifest
    classes = class_list(num_sources, seed)
    jobs = [(c, s, v, name, held, i) for c, s, v, name, held in classes for i in range(clips_per_class)]
    for _c, s, v, name, held, i in tqdm(
        jobs, desc="built-in data", unit="clip", disable=not progress, file=sys.stderr
    ):
        folder = os.path.join(root, "heldout" if held else "train", name)
        path = os.path.join(folder, f"{name}_{i:03d}.wav")
        if os.path.exists(path):
            continue
        y = synthesize(s, v, i, seed, sample_rate)
        with atomic_path(path) as tmp:  # a hidden name: never scanned as a clip
            soundfile.write(tmp, y, sample_rate, subtype="PCM_16", format="WAV")
    manifest = {
        "params": params,
        "num_classes": len(classes),
        "num_clips": len(jobs),
        "train_classes": [n for _, _, _, n, h in classes if not h],
        "heldout_classes": [n for _, _, _, n, h in classes if h],
        "description": "synthesised sound classes; see apps/audio_similarity/synth.py",
    }
    write_json(manifest_path, manifest)
    return manifest
