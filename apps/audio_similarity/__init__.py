"""Audio similarity search with keras_triplet: sound files -> log-mel -> CNN -> neighbours.

Run `python -m apps.audio_similarity --help`. Modules:

- `data`: folder scanning (`DATA/<class>/<file>`), decoding (soundfile, librosa
  fallback), mono, resampling, checks and the skipped-file report;
- `features`: log-mel spectrograms, the on-disk cache, windows, the MFCC baseline;
- `synth`: the built-in (synthesised, seeded) data set;
- `augment`: random crop, gain, noise mixing, SpecAugment;
- `model`: the compact CNN embedder;
- `commands`: train, evaluate, index, query and demo.

Only the public API of `keras_triplet` is used.
"""
