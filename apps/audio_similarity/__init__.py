"""Audio similarity search with keras_triplet: sound files -> log-mel -> CNN -> neighbours.

Run `python -m apps.audio_similarity --help`. Modules:

- `data`: folder scanning (`DATA/<class>/<file>`), decoding (soundfile, librosa
  fallback), mono, resampling, checks and the skipped-file report;
- `features`: log-mel spectrograms, the on-disk cache, windows, the MFCC baseline;
- `synth`: the built-in (synthesised, seeded) data set;
- `augment`: time stretch, random crop, pitch shift, EQ, gain, reverb, mixing another
  clip, noise, SpecAugment;
- `model`: the compact CNN embedder, loading a model with its feature settings;
- `training`: prepare, resume or build, fit, export;
- `evaluation`: leave-one-out metrics beside the MFCC baseline;
- `search`: the index of a collection (by resumable chunks) and its queries;
- `plots`: training curves and the held-out figures;
- `commands`: train, evaluate, index, query and demo, one function each;
- `serve`: the web page and JSON API over an index (`serve` command);
- `__main__`: the command line (the parser only).

The helpers both apps share (messages, atomic writes, skipped-file reports, the backend
switch) are in `apps/_common.py`; the web plumbing of `serve` in `apps/_web.py`. See `apps/audio_similarity/README.md`.

Only the public API of `keras_triplet` is used.
"""
