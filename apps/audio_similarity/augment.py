"""Training-time augmentation of log-mel spectrograms (NumPy, one example at a time).

Applied in this order to a clip's `[T, n_mels]` log-mel array `x` (dB), each step
drawn independently per example (the recording changes that real collections have and
a synthetic or single-source training set lacks):

1. **time stretch** (probability `stretch_prob`): the frame axis resampled by a rate
   `r` drawn log-uniformly in `stretch` (linear interpolation between frames),
   `x'[t] = x[t·r]`, so the clip plays `r` times faster (pitch unchanged);
2. **random crop** to the training window (a short clip is padded at a random offset);
3. **pitch shift** (probability `pitch_prob`): the mel axis warped so that a partial at
   `f` Hz moves to `f·2^(s/12)`, `s` uniform in ±`pitch_semitones`:
   `x'[:, m] = x[:, μ(f_m · 2^(−s/12))]`, where `f_m` is the centre frequency of band
   `m` and `μ` the (fractional) band index of a frequency, interpolated linearly between
   bands. It moves the harmonics and the spectral envelope together (as resampling the
   waveform does: a shorter or longer vocal tract, a transposed sample);
4. **equaliser**: a smooth random gain curve over the bands, `x'[:, m] = x[:, m] +
   Σ_{k=1..3} a_k cos(π k m / M)` dB with `a_k` uniform in ±`eq_db`/k (a different
   microphone, room or soundfont);
5. **gain**: a random level change, uniform in ±`gain_db` dB (a constant added in dB);
6. **reverb** (probability `reverb_prob`): a diffuse tail added in the power domain,
   each band `m` decaying exponentially with its own reverberation time `T_m` (60 dB of
   decay in `T_m` seconds, `T` drawn in `rt60` at the lowest band, falling to half at
   the highest): with `P = 10^(x/10)` and the frame hop `h`,
   `R[t] = a_m R[t−1] + (1 − a_m) P[t]`, `a_m = 10^(−6 h / T_m)`, and
   `P' = P + g R` for a wet level `g` of −12 to 0 dB;
7. **mixing** (probability `mix_prob`, when `__call__` is given a `pool` of clips):
   a random window of another clip added in the power domain at a signal-to-interference
   ratio uniform in `mix_snr_db` (a second source, a background recording);
8. **noise mixing** (probability `noise_prob`): coloured noise (a random spectral
   slope, slowly varying over time) added in the power domain at a random
   signal-to-noise ratio in `snr_db`;
9. **SpecAugment** (Park et al., Interspeech 2019): `time_masks` bands of up to
   `max_time_mask` frames and `freq_masks` bands of up to `max_freq_mask` mel bands
   set to the window's mean.

Steps 1, 3, 4, 6 and 7 are off when their probability or size is 0, as they are by
default (`Augmenter()`: crop, gain, noise, SpecAugment, the `train --augment basic`
default); `Augmenter.recordings()` turns them on (`train --augment full`).

Example:

>>> import numpy as np
>>> x = np.random.default_rng(0).normal(-40, 10, size=(150, 64)).astype("float32")
>>> Augmenter(frames=96)(x, np.random.default_rng(1)).shape
(96, 64)
"""

import dataclasses

import numpy as np

from apps.audio_similarity.features import FeatureSettings, fit_window

_FREQUENCIES = {}
DEFAULT_SETTINGS = FeatureSettings()


@dataclasses.dataclass
class Augmenter:
    frames: int = 96
    gain_db: float = 10.0
    noise_prob: float = 0.5
    snr_db: tuple = (5.0, 30.0)
    time_masks: int = 2
    max_time_mask: int = 12
    freq_masks: int = 2
    max_freq_mask: int = 8
    stretch_prob: float = 0.0
    stretch: tuple = (0.8, 1.25)
    pitch_prob: float = 0.0
    pitch_semitones: float = 2.0
    eq_db: float = 0.0
    reverb_prob: float = 0.0
    rt60: tuple = (0.2, 1.2)
    mix_prob: float = 0.0
    mix_snr_db: tuple = (6.0, 20.0)
    settings: FeatureSettings = FeatureSettings()
    enabled: bool = True

    @classmethod
    def recordings(cls, **kwargs):
        """Every step on: stretch and pitch shift half the time, EQ always, reverb and
        mixing 30 % of the time (`train --augment full`)."""
        on = dict(stretch_prob=0.5, pitch_prob=0.5, eq_db=6.0, reverb_prob=0.3, mix_prob=0.3)
        return cls(**{**on, **kwargs})

    def __call__(self, x, rng, pool=None):
        """A training window of `x` `[T, n_mels]`; `pool`: clips to mix in (a list of
        `[T_i, n_mels]` arrays), or None."""
        x = np.asarray(x, np.float32)
        if not self.enabled:
            return fit_window(x, self.frames, rng=rng).copy()
        if self.stretch_prob and rng.random() < self.stretch_prob:
            lo, hi = np.log(self.stretch)
            x = time_stretch(x, float(np.exp(rng.uniform(lo, hi))))
        x = fit_window(x, self.frames, rng=rng).copy()
        if self.pitch_prob and rng.random() < self.pitch_prob:
            s = rng.uniform(-self.pitch_semitones, self.pitch_semitones)
            x = pitch_shift(x, s, self.settings)
        if self.eq_db:
            x = equalize(x, rng.uniform(-self.eq_db, self.eq_db, 3) / np.arange(1, 4))
        x += np.float32(rng.uniform(-self.gain_db, self.gain_db))
        # Steps 6-8 add sounds: in the power domain, converted once.
        power = None
        if self.reverb_prob and rng.random() < self.reverb_prob:
            power = add_reverb(
                to_power(x), rng.uniform(*self.rt60), 10 ** (rng.uniform(-12.0, 0.0) / 10), self.settings
            )
        if pool is not None and len(pool) and self.mix_prob and rng.random() < self.mix_prob:
            other = fit_window(
                np.asarray(pool[int(rng.integers(len(pool)))], np.float32), self.frames, rng=rng
            )
            power = add_scaled(
                to_power(x) if power is None else power, to_power(other), rng.uniform(*self.mix_snr_db)
            )
        if rng.random() < self.noise_prob:
            power = add_noise(to_power(x) if power is None else power, rng, rng.uniform(*self.snr_db))
        if power is not None:
            x = to_db(power)
        fill = np.float32(x.mean())
        t, m = x.shape
        for _ in range(self.time_masks):
            w = int(rng.integers(0, self.max_time_mask + 1))
            if w:
                s = int(rng.integers(0, max(t - w, 0) + 1))
                x[s : s + w] = fill
        for _ in range(self.freq_masks):
            w = int(rng.integers(0, self.max_freq_mask + 1))
            if w:
                s = int(rng.integers(0, max(m - w, 0) + 1))
                x[:, s : s + w] = fill
        return x


def time_stretch(x, rate):
    """`x` `[T, n_mels]` played `rate` times faster: `x'[t] = x[t·rate]`, about
    `T / rate` frames, linear interpolation between frames.

    >>> time_stretch(np.zeros((100, 4), "float32"), 1.25).shape
    (80, 4)
    """
    n = x.shape[0]
    length = max(int(round(n / rate)), 1)
    pos = np.minimum(np.arange(length) * rate, n - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (pos - i0).astype(np.float32)[:, None]
    return (x[i0] * (1 - w) + x[i1] * w).astype(np.float32)


def band_frequencies(settings):
    """Centre frequencies (Hz) of the mel bands of `settings` (librosa's Slaney scale)."""
    key = (settings.n_mels, settings.fmin, settings.fmax, settings.sample_rate)
    if key not in _FREQUENCIES:
        import librosa

        fmax = settings.fmax or settings.sample_rate / 2
        _FREQUENCIES[key] = librosa.mel_frequencies(settings.n_mels + 2, fmin=settings.fmin, fmax=fmax)[1:-1]
    return _FREQUENCIES[key]


def pitch_shift(x, semitones, settings=DEFAULT_SETTINGS):
    """`x` `[T, n_mels]` with every partial moved from `f` to `f·2^(semitones/12)`: band
    `m` takes the value at the fractional band of `f_m·2^(−semitones/12)` (the edge bands
    repeat beyond the range).

    >>> x = np.tile(np.arange(64, dtype="float32"), (3, 1))
    >>> bool(pitch_shift(x, 2.0)[0, 40] < 40)  # higher pitch: band 40 shows a lower band
    True
    """
    f = band_frequencies(settings)
    if len(f) != x.shape[1]:
        f = band_frequencies(dataclasses.replace(settings, n_mels=x.shape[1]))
    source = np.interp(f * 2.0 ** (-semitones / 12.0), f, np.arange(len(f), dtype=np.float64))
    i0 = np.floor(source).astype(np.int64)
    i1 = np.minimum(i0 + 1, len(f) - 1)
    w = (source - i0).astype(np.float32)
    return (x[:, i0] * (1 - w) + x[:, i1] * w).astype(np.float32)


def equalize(x, coefficients):
    """`x` (dB) plus the smooth curve `Σ_k a_k cos(π k m / M)` over its `M` bands."""
    m = x.shape[1]
    k = np.arange(1, len(coefficients) + 1)[:, None]
    curve = (np.asarray(coefficients)[:, None] * np.cos(np.pi * k * np.arange(m)[None, :] / m)).sum(0)
    return (x + curve[None, :]).astype(np.float32)


def to_power(x):
    """`10^(x/10)`: dB to power (float64: the sums below span many decades)."""
    return 10.0 ** (np.asarray(x).astype(np.float64) / 10.0)


def to_db(power):
    """`10·log10(max(power, 1e-10))` (float32)."""
    return (10.0 * np.log10(np.maximum(power, 1e-10))).astype(np.float32)


def add_reverb(power, rt60, wet, settings=DEFAULT_SETTINGS):
    """`power` `[T, n_mels]` plus `wet` times its exponentially decaying tail (the module
    docstring's step 6): reverberation time `rt60` s at the lowest band, half of it at the
    highest. The recursion `R[t] = a R[t−1] + (1 − a) P[t]` is the convolution of `P` with
    `(1 − a) a^k`, done with FFTs (the kernel cut at `T` frames)."""
    t, m = power.shape
    t60 = rt60 * np.linspace(1.0, 0.5, m)
    a = 10.0 ** (-6.0 * (settings.hop_ms / 1000.0) / t60)
    kernel = (1.0 - a)[None, :] * a[None, :] ** np.arange(t)[:, None]
    n = 2 * t
    tail = np.fft.irfft(np.fft.rfft(power, n, axis=0) * np.fft.rfft(kernel, n, axis=0), n, axis=0)[:t]
    return power + wet * np.maximum(tail, 0.0)


def add_scaled(power, other, snr_db):
    """`power` plus `other` (same shape) scaled to a mean power `snr_db` dB below it."""
    scale = power.mean() / (max(other.mean(), 1e-20) * 10.0 ** (snr_db / 10.0))
    return power + scale * other


def add_noise(power, rng, snr_db):
    """`power` plus coloured noise (a random spectral slope, slowly varying over time)
    `snr_db` dB below its mean."""
    t, m = power.shape
    slope = rng.uniform(-1.0, 1.0)  # dB per band / 4: white-ish to brown-ish shapes
    shape = 10.0 ** (slope * (np.arange(m) - m / 2) / 40.0)
    wobble = 1.0 + 0.3 * rng.standard_normal((t, 1))
    noise = np.abs(wobble) * shape[None, :] * rng.chisquare(2, size=(t, m)) / 2.0
    return add_scaled(power, noise, snr_db)


def reverb(x, rt60, wet, settings=DEFAULT_SETTINGS):
    """`x` (dB) with a reverberant tail (`add_reverb` in dB)."""
    return to_db(add_reverb(to_power(x), rt60, wet, settings))


def mix(x, other, snr_db):
    """`x` (dB) with `other` (dB, same shape) added in the power domain, `snr_db` dB below."""
    return to_db(add_scaled(to_power(x), to_power(other), snr_db))


def mix_noise(x, rng, snr_db):
    """`x` (dB) with coloured noise added in the power domain at `snr_db` dB SNR."""
    return to_db(add_noise(to_power(x), rng, snr_db))
