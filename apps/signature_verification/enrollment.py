"""Enrolment profiles: a writer's reference embeddings and the decision threshold, as
JSON (no pickle), and the verification of a questioned signature against one.

A profile records the model it was made with (path and SHA-256; a fused pair's partner's
SHA-256 too, as its embeddings are half of each reference): embeddings of another model
are not comparable, and `verify` warns when a model file has changed.
"""

import os

import numpy as np

from apps._common import fail, read_json, sha256, write_json
from apps.signature_verification import protocol

PROFILE_FORMAT = "keras-triplet/signature-profile/1"


def make_profile(writer, model_path, hashes, image_size, rule, threshold, files, embeddings):
    """The profile dict of a writer enrolled with `embeddings [R, D]` of `files` by the
    model at `model_path`, whose files' `hashes` are `model_hashes`' (a server computes
    them once, not at every enrolment)."""
    return {
        "format": PROFILE_FORMAT,
        "writer": writer,
        "model": os.path.abspath(model_path),
        **hashes,
        "image_size": list(image_size),
        "rule": rule,
        "threshold": float(threshold),
        "files": list(files),
        "references": [[float(v) for v in row] for row in embeddings],
    }


def model_hashes(model_path, partner_path=None):
    """`{"model_sha256": ...}`, with `"partner_sha256"` for a fused pair: what a profile
    records of the models whose embeddings it holds."""
    hashes = {"model_sha256": sha256(model_path)}
    if partner_path is not None:
        hashes["partner_sha256"] = sha256(partner_path)
    return hashes


def changed_model(profile, hashes):
    """Which model of `hashes` (`model_hashes`) is not the file `profile` was enrolled
    with: "model", "partner" or None. A profile without a partner's hash (one model, or
    written before partners were recorded) is checked on its model alone."""
    if profile.get("model_sha256") != hashes["model_sha256"]:
        return "model"
    recorded = profile.get("partner_sha256")
    if recorded is not None and recorded != hashes.get("partner_sha256"):
        return "partner"
    return None


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
