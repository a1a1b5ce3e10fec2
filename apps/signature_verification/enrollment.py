"""Enrolment profiles: a writer's reference embeddings and the decision threshold, as
JSON (no pickle), and the verification of a questioned signature against one.

A profile records the model it was made with (path and SHA-256): embeddings of another
model are not comparable, and `verify` warns when the model file has changed.
"""

import os

import numpy as np

from apps._common import fail, read_json, sha256, write_json
from apps.signature_verification import protocol

PROFILE_FORMAT = "keras-triplet/signature-profile/1"


def make_profile(writer, model_path, image_size, rule, threshold, files, embeddings):
    """The profile dict of a writer enrolled with `embeddings [R, D]` of `files`."""
    return {
        "format": PROFILE_FORMAT,
        "writer": writer,
        "model": os.path.abspath(model_path),
        "model_sha256": sha256(model_path),
        "image_size": list(image_size),
        "rule": rule,
        "threshold": float(threshold),
        "files": list(files),
        "references": [[float(v) for v in row] for row in embeddings],
    }


def save_profile(profile, path):
    write_json(path, profile, indent=None)


def load_profile(path):
    """The profile at `path`; a one-line error when it is not one."""
    try:
        profile = read_json(path)
    except ValueError as e:
        fail(f"{path} is not a profile (invalid JSON: {e}).")
    if not isinstance(profile, dict) or profile.get("format") != PROFILE_FORMAT:
        fail(f"{path} is not a signature profile (written by `enroll`).")
    return profile


def verify(embedding, profile, threshold=None, calibration=None):
    """`(accepted, distance, threshold)` of one questioned embedding `[D]` against the
    profile's references (the profile's rule and threshold unless given; the rule
    `"calibrated"` needs the model's `calibration`, `cohort.load_calibration`)."""
    refs = np.asarray(profile["references"], dtype=np.float64)
    rule = profile.get("rule", "mean")
    distance = float(protocol.score_matrix(np.asarray(embedding)[None], refs, rule, calibration)[0])
    threshold = float(profile["threshold"] if threshold is None else threshold)
    return distance <= threshold, distance, threshold
