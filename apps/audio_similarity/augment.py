"""Training-time augmentation of log-mel spectrograms (NumPy, one example at a time).

Applied in this order to a clip's `[frames, n_mels]` log-mel array (dB):

1. **random crop** to the training window (a short clip is padded at a random offset);
2. **gain**: a random level change, uniform in ±`gain_db` dB (a constant added in dB);
3. **noise mixing** (probability `noise_prob`): coloured noise (a random spectral
   slope, slowly varying over time) added in the *power* domain at a random
   signal-to-noise ratio in `snr_db`;
4. **SpecAugment** (Park et al., Interspeech 2019): `time_masks` bands of up to
   `max_time_mask` frames and `freq_masks` bands of up to `max_freq_mask` mel bands
   set to the window's mean.

Example:

>>> import numpy as np
>>> x = np.random.default_rng(0).normal(-40, 10, size=(150, 64)).astype("float32")
>>> Augmenter(frames=96)(x, np.random.default_rng(1)).shape
(96, 64)
"""

import dataclasses

import numpy as np

from apps.audio_similarity.features import fit_window


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
    enabled: bool = True

    def __call__(self, x, rng):
        x = fit_window(np.asarray(x, np.float32), self.frames, rng=rng).copy()
        if not self.enabled:
            return x
        x += np.float32(rng.uniform(-self.gain_db, self.gain_db))
        if rng.random() < self.noise_prob:
            x = mix_noise(x, rng, rng.uniform(*self.snr_db))
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


def mix_noise(x, rng, snr_db):
    """`x` (dB) with coloured noise added in the power domain at `snr_db` dB SNR."""
    t, m = x.shape
    power = 10.0 ** (x.astype(np.float64) / 10.0)
    slope = rng.uniform(-1.0, 1.0)  # dB per band / 4: white-ish to brown-ish shapes
    shape = 10.0 ** (slope * (np.arange(m) - m / 2) / 40.0)
    wobble = 1.0 + 0.3 * rng.standard_normal((t, 1))
    noise = np.abs(wobble) * shape[None, :] * rng.chisquare(2, size=(t, m)) / 2.0
    scale = power.mean() / (noise.mean() * 10.0 ** (snr_db / 10.0))
    return (10.0 * np.log10(np.maximum(power + scale * noise, 1e-10))).astype(np.float32)
