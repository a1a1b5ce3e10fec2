"""`serve`: a web page and a JSON API to enrol writers from uploaded signatures and verify
a questioned signature against a profile: the distance, the threshold and the decision.

`python -m apps.signature_verification serve --model MODEL [--profiles DIR] [--port 8000]`
loads the model once, then answers:

| request | reply |
|---|---|
| `GET /` | the page |
| `GET /info` | `{"model", "threshold", "rule", "image_size", "writers"}` |
| `POST /enroll` | fields `writer` (a name) and `images` (genuine signatures, one or more files): `{"writer", "references", "skipped": [{"file", "reason"}], "threshold", "rule"}` |
| `GET /profiles` | `{"profiles": [{"writer", "references", "threshold"}]}` |
| `GET /profiles/<writer>` | the profile (the JSON `enroll` writes; `verify --profile` reads it) |
| `POST /verify` | fields `image` (the questioned signature) and `writer` (an enrolled name) or `profile` (a profile file): `{"writer", "accepted", "decision", "distance", "threshold", "rule"}` |

Profiles live in memory and, with `--profiles DIR`, in `DIR/<writer>.json` (read at
start, written at each enrolment). The decision is the command line's:
`distance <= threshold` accepts (`enrollment.verify`). A bad upload (empty, not an image,
blank, over the size limit) is answered with a 4xx and `{"error": "..."}`.
"""

import html
import io
import json
import os
import re
import threading
import urllib.parse

import numpy as np

from apps import _web
from apps._common import log
from apps.signature_verification import enrollment
from apps.signature_verification.cohort import load_calibration
from apps.signature_verification.preprocessing import (
    IMAGE_EXTENSIONS,
    UnreadableImageError,
    preprocess,
    read_image,
)
from apps.signature_verification.training import load_model, partner_of

MAX_IMAGES = 50  # references per enrolment
WRITER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")


class SignatureService:
    """The model (loaded once) and the enrolled profiles."""

    def __init__(self, model_path, profiles_dir=None, threshold=None):
        try:
            self.model, meta = load_model(model_path)
        except FileNotFoundError as e:
            raise SystemExit(f"error: {e}") from None
        self.model_path = os.path.abspath(model_path)
        self.partner_path = partner_of(self.model_path, meta)
        self.image_size = tuple(int(v) for v in meta["image_size"])
        self.rule = meta.get("rule", "mean")
        try:
            self.calibration = load_calibration(model_path)  # the "calibrated" rule's cohort
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
        if self.rule == "calibrated" and self.calibration is None:
            raise SystemExit(f"error: {model_path} has rule 'calibrated' but no cohort file beside it.")
        self.threshold = threshold if threshold is not None else meta.get("threshold")
        if self.threshold is None:
            raise SystemExit(f"error: {model_path} has no threshold in its metadata; pass --threshold.")
        # Each batch shape compiles on its first call (JAX, XLA): here, not on the first
        # request. Verification embeds one image; enrolment pads to a power of two.
        for n in (1, 2, 4, 8):
            self.embed(np.zeros((n, *self.image_size, 1), np.float32))
        self.profiles_dir = profiles_dir
        self.profiles = {}
        self.profiles_lock = threading.Lock()
        if profiles_dir:
            os.makedirs(profiles_dir, exist_ok=True)
            for name in sorted(os.listdir(profiles_dir)):
                if name.endswith(".json") and not name.startswith("."):
                    self._load_stored(os.path.join(profiles_dir, name))

    def _load_stored(self, path):
        try:
            with open(path, encoding="utf-8") as f:
                profile = json.load(f)
            self.check_profile(profile, path)
        except (ValueError, OSError, _web.HTTPError) as e:
            log(f"warning: {path} skipped ({getattr(e, 'message', e)})")
            return
        self.profiles[profile["writer"]] = profile

    def check_profile(self, profile, name):
        """A 400 unless `profile` is a profile made with this model."""
        if not isinstance(profile, dict) or profile.get("format") != enrollment.PROFILE_FORMAT:
            raise _web.HTTPError(400, f"{name} is not a signature profile (written by `enroll`).")
        if enrollment.changed_model(profile, self.model_hashes):
            raise _web.HTTPError(
                400,
                f"{name} was enrolled with another model ({os.path.basename(profile.get('model', '?'))}); "
                "its distances are not comparable: enrol the writer again here.",
            )

    @property
    def model_hashes(self):
        """`enrollment.model_hashes` of the model (and its partner), read once."""
        if not hasattr(self, "_hashes"):
            self._hashes = enrollment.model_hashes(self.model_path, self.partner_path)
        return self._hashes

    def embed(self, images):
        """Embeddings of `images` `[N, H, W, 1]`, the batch padded to a power of two
        (up to 64) so that only a few batch shapes are ever compiled."""
        n = len(images)
        size = min(1 << max(n - 1, 0).bit_length(), -(-n // 64) * 64)
        padded = np.concatenate([images, np.zeros((size - n, *images.shape[1:]), images.dtype)])
        return self.model.embed(padded, batch_size=64)[:n]

    def info(self):
        return {
            "model": self.model_path,
            "threshold": float(self.threshold),
            "rule": self.rule,
            "image_size": list(self.image_size),
            "writers": sorted(self.profiles),
        }

    def summary(self, profile):
        return {
            "writer": profile["writer"],
            "references": len(profile["references"]),
            "threshold": profile["threshold"],
            "rule": profile.get("rule", "mean"),
        }

    def image(self, upload):
        """The preprocessed `[H, W, 1]` image of an upload; `HTTPError` 400 when unusable."""
        name = upload.filename or "the upload"
        if not upload.data:
            raise _web.HTTPError(400, f"{name}: empty file.")
        ext = os.path.splitext(upload.filename or "")[1].lower()
        if ext and ext not in IMAGE_EXTENSIONS:
            raise _web.HTTPError(
                400,
                f"{name}: not an image file (extension {ext!r}; expected one of {', '.join(IMAGE_EXTENSIONS)}).",
            )
        buffer = io.BytesIO(upload.data)
        try:
            return preprocess(read_image(buffer), self.image_size)[..., None]
        except UnreadableImageError as e:
            # Pillow names the buffer ("<_io.BytesIO object at 0x...>"): say the file's name.
            reason = str(e).replace(f"{buffer!r}: ", "").replace(repr(buffer), repr(name))
            raise _web.HTTPError(400, f"{name}: {reason}.") from None
        except Exception as e:  # noqa: BLE001 - e.g. Pillow's decompression-bomb guard
            raise _web.HTTPError(400, f"{name}: not a usable image ({type(e).__name__}: {e}).") from None

    def enroll(self, writer, uploads, lock):
        if not writer or not WRITER_NAME.match(writer):
            raise _web.HTTPError(
                400, "writer must be a name of 1 to 64 letters, digits, spaces, '_', '.' or '-'."
            )
        if not uploads:
            raise _web.HTTPError(400, "send the writer's genuine signatures (field 'images').")
        if len(uploads) > MAX_IMAGES:
            raise _web.HTTPError(400, f"at most {MAX_IMAGES} reference signatures; got {len(uploads)}.")
        images, files, skipped = [], [], []
        for upload in uploads:
            try:
                images.append(self.image(upload))
                files.append(upload.filename)
            except _web.HTTPError as e:
                skipped.append({"file": upload.filename, "reason": e.message})
        if not images:
            raise _web.HTTPError(400, "no usable signature image: " + "; ".join(s["reason"] for s in skipped))
        with lock:
            embeddings = self.embed(np.stack(images))
        profile = enrollment.make_profile(
            writer=writer,
            model_path=self.model_path,
            hashes=self.model_hashes,
            image_size=self.image_size,
            rule=self.rule,
            threshold=self.threshold,
            files=files,
            embeddings=embeddings,
        )
        with self.profiles_lock:
            self.profiles[writer] = profile
            if self.profiles_dir:
                enrollment.save_profile(profile, os.path.join(self.profiles_dir, f"{writer}.json"))
        return {**self.summary(profile), "skipped": skipped}

    def verify(self, upload, profile, lock):
        x = self.image(upload)
        with lock:
            embedding = self.embed(x[None])[0]
        try:
            accepted, distance, threshold = enrollment.verify(
                embedding, profile, calibration=self.calibration
            )
        except ValueError as e:  # a profile of the calibrated rule, this model without a cohort
            raise _web.HTTPError(400, str(e)) from None
        return {
            "image": upload.filename,
            "writer": profile["writer"],
            "accepted": bool(accepted),
            "decision": "genuine" if accepted else "forgery",
            "distance": distance,
            "threshold": threshold,
            "rule": profile.get("rule", "mean"),
            "references": len(profile["references"]),
        }

    def profile_of(self, request):
        """The profile a verify request names: field `writer` or an uploaded `profile`."""
        uploads = request.files("profile")
        if uploads:
            try:
                profile = json.loads(uploads[0].data)
            except ValueError:
                raise _web.HTTPError(400, f"{uploads[0].filename}: not a profile (invalid JSON).") from None
            self.check_profile(profile, uploads[0].filename or "the profile")
            return profile
        writer = request.field("writer")
        if not writer:
            raise _web.HTTPError(400, "name an enrolled writer (field 'writer') or send a profile file.")
        if writer not in self.profiles:
            raise _web.HTTPError(404, f"no enrolled writer {writer!r}; enrol them first.")
        return self.profiles[writer]


def make_app(model_path, profiles_dir=None, threshold=None, max_upload=_web.DEFAULT_MAX_BODY):
    """The `WebApp` of `serve`: the model is loaded here, once."""
    service = SignatureService(model_path, profiles_dir, threshold)
    app = _web.WebApp("signature_verification", max_body=max_upload)
    app.service = service

    @app.route("GET", "/")
    def index_page(request):
        return _page(service)

    @app.route("GET", "/info")
    def info(request):
        return service.info()

    @app.route("POST", "/enroll")
    def enroll(request):
        return service.enroll((request.field("writer") or "").strip(), request.files("images"), app.lock)

    @app.route("GET", "/profiles")
    def profiles(request):
        return {"profiles": [service.summary(p) for _, p in sorted(service.profiles.items())]}

    @app.route("GET", "/profiles/<writer>")
    def profile(request, writer):
        writer = urllib.parse.unquote(writer)
        if writer not in service.profiles:
            raise _web.HTTPError(404, f"no enrolled writer {writer!r}.")
        return service.profiles[writer]

    @app.route("POST", "/verify")
    def verify(request):
        uploads = request.files("image")
        if not uploads:
            raise _web.HTTPError(400, "send the questioned signature (field 'image').")
        return service.verify(uploads[0], service.profile_of(request), app.lock)

    return app


def serve(args):
    """The `serve` command."""
    app = make_app(args.model, args.profiles, args.threshold, max_upload=int(args.max_upload_mb * 1e6))
    info = app.service.info()
    log(
        f"model {info['model']}: threshold {info['threshold']:.4f}, rule {info['rule']}; "
        f"{len(info['writers'])} enrolled writer(s)"
        + (
            f" in {args.profiles}"
            if args.profiles
            else " (profiles kept in memory: --profiles DIR keeps them)"
        )
    )
    return _web.run(app, args.host, args.port)


def _page(service):
    info = service.info()
    body = f"""
<p class="muted" id="summary">Model <code>{html.escape(os.path.basename(info["model"]))}</code>:
threshold {info["threshold"]:.4f} ({html.escape(info["rule"])} distance to the references); a questioned
signature closer than the threshold is accepted as genuine.</p>
<h2>1. Enrol a writer</h2>
<form id="enroll-form">
  <label>Writer <input type="text" name="writer" id="writer" required maxlength="64"></label>
  <label>Genuine signatures <input type="file" name="images" id="images" accept="image/*" multiple></label>
  <button type="submit" id="enroll">Enrol</button>
</form>
<div id="enroll-result"></div>
<h2>2. Verify a signature</h2>
<form id="verify-form">
  <label>Writer <select name="writer" id="verify-writer"></select></label>
  <label>Questioned signature <input type="file" name="image" id="image" accept="image/*"></label>
  <button type="submit" id="verify">Verify</button>
</form>
<div id="verify-result"></div>
"""
    script = """
const enrollResult = document.getElementById("enroll-result");
const verifyResult = document.getElementById("verify-result");
async function writers(selected) {
  const reply = await (await fetch("/profiles")).json();
  const select = document.getElementById("verify-writer");
  select.innerHTML = reply.profiles.map(p => '<option' + (p.writer === selected ? ' selected' : '') + '>' +
    esc(p.writer) + '</option>').join("");
}
document.getElementById("enroll-form").addEventListener("submit", async e => {
  e.preventDefault();
  enrollResult.innerHTML = '<p class="muted">enrolling...</p>';
  try {
    const r = await post("/enroll", new FormData(e.target));
    let h = '<p id="enrolled">Enrolled <b>' + esc(r.writer) + '</b> with ' + r.references +
      ' reference signature(s); threshold ' + r.threshold.toFixed(4) +
      '. <a href="/profiles/' + encodeURIComponent(r.writer) + '" download="' + esc(r.writer) +
      '.json">profile</a></p>';
    for (const s of r.skipped) h += '<p class="error">skipped ' + esc(s.file) + ': ' + esc(s.reason) + '</p>';
    enrollResult.innerHTML = h;
    await writers(r.writer);
  } catch (err) { showError(enrollResult, err); }
});
document.getElementById("verify-form").addEventListener("submit", async e => {
  e.preventDefault();
  const file = document.getElementById("image").files[0];
  if (!file) { showError(verifyResult, "choose the questioned signature first"); return; }
  verifyResult.innerHTML = '<p class="muted">verifying...</p>';
  try {
    const r = await post("/verify", new FormData(e.target));
    verifyResult.innerHTML =
      '<p><img src="' + URL.createObjectURL(file) + '" alt="questioned signature" ' +
      'style="max-height: 6rem; border: 1px solid #ccc"></p>' +
      '<p id="decision" class="' + (r.accepted ? 'accept' : 'reject') + '">' +
      (r.accepted ? 'ACCEPT: genuine' : 'REJECT: forgery') + '</p>' +
      '<table><tr><th>writer</th><th>distance</th><th></th><th>threshold</th><th>references</th></tr>' +
      '<tr><td>' + esc(r.writer) + '</td><td class="num" id="distance">' + r.distance.toFixed(4) +
      '</td><td>' + (r.accepted ? '&le;' : '&gt;') + '</td><td class="num" id="threshold">' +
      r.threshold.toFixed(4) + '</td><td>' + r.references + '</td></tr></table>';
  } catch (err) { showError(verifyResult, err); }
});
writers();
"""
    return _web.page("Signature verification", body, script)
