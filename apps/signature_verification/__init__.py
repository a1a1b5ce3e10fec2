"""Writer-independent offline signature verification with a CNN trained by triplet loss.

A prototype built on `keras_triplet`: a person enrols a writer with a few genuine
signatures, then asks whether a new image is genuine; an evaluator measures FAR, FRR and
EER against skilled and random forgeries on writers never seen in training.

Modules:

- `synthetic`: a seeded generator of signatures (sigma-lognormal pen trajectories,
  genuine variation, skilled forgeries) rendered as scans; writes the CEDAR layout; a
  second configuration (`transfer`) for a held-out population.
- `loaders`: CEDAR, BHSig260 and a generic `<writer>/genuine|forged/` layout.
- `preprocessing`: grayscale, Otsu background removal, crop, aspect-preserving resize
  and pad, invert, normalise (scikit-image / Pillow).
- `features`: HOG descriptors (scikit-image), the `--baseline hog` embeddings and the
  input of the learned HOG metric.
- `model`: the SigNet-style CNN embedder (Dey et al., 2017), scaled down for CPUs, and the
  learned HOG metric (a residual MLP on HOG descriptors, `train`'s default network), and
  `FusedModel`, a model pair (the shipped default: the HOG metric with the CNN).
- `training`: writer-independent training with `TripletModel`, `PKSampler` and
  `TripletLoss`, skilled forgeries as hard negatives; the model and its side file.
- `protocol`: writer splits, the decision rule (smallest, mean or writer-normalised
  distance to the references), the threshold chosen on validation writers,
  FAR / FRR / EER / AUC.
- `cohort`: the `calibrated` rule, cohort score normalisation (Z / T-norm and the
  references' spread combined by a logistic regression), fitted by `calibrate`; one
  calibration of a fused pair's two embeddings (`calibrate --fuse`).
- `evaluation`: the protocol run on a data folder with a saved model.
- `enrollment`: enrolment profiles and the verification of one signature.
- `plots`: ROC / DET curves and score histograms.
- `commands`: generate, train, calibrate, evaluate, enroll, verify and demo, one function each.
- `serve`: the web page and JSON API to enrol and verify (`serve` command).
- `__main__`: the command line (the parser only), `python -m apps.signature_verification --help`.

The helpers both apps share are in `apps/_common.py` (web plumbing: `apps/_web.py`). See
`apps/signature_verification/README.md`.
"""
