"""A seeded generator of synthetic offline signatures: genuine ones and skilled forgeries.

So that the demo, the notebook and the tests need no download, this module draws
signature images from a small model of handwriting.

**Pen trajectories (sigma-lognormal model).** Following Plamondon's kinematic theory of
rapid movements (R. Plamondon, "A kinematic theory of rapid human movements", Biol.
Cybern. 1995; the Sigma-Lognormal model of O'Reilly & Plamondon, Pattern Recognition
2009), a pen trajectory is the time integral of a sum of *strokes*; stroke `j` has a
lognormal speed profile and a direction that turns smoothly from `θs_j` to `θe_j`:

    |v_j(t)| = D_j / (σ_j √(2π) (t − t0_j)) · exp(−(ln(t − t0_j) − μ_j)² / (2σ_j²))
    φ_j(t)   = θs_j + (θe_j − θs_j) · ½ (1 + erf((ln(t − t0_j) − μ_j) / (σ_j √2)))

A *writer* is a fixed set of such parameters: one to three pen-down components (a
first name / initials and a surname, say), each a train of alternating up / down
strokes with writer-specific amplitudes, curvatures (loops) and timing over a steady
rightward drift, sometimes a final flourish; plus a writer-specific slant, size, pen
width and ink darkness.

**Genuine signatures** re-draw the writer's parameters with the small variations of a
person signing again: amplitudes ±4 %, directions ±0.04 rad, timing (stroke onsets,
`μ`, `σ`) a few percent, a small affine change of the whole signature (rotation ±2°,
scale ±4 %, shear ±0.03), pen width ±8 % and a slight jitter of the trajectory.

**Skilled forgeries** are made by *forgers* (3 per writer by default), each imitating
the writer's shape with his own persistent deviations: a different slant (shear
0.08–0.22 more or less), different proportions (height / width ratio ×0.8–0.9 or
×1.1–1.25, stroke amplitudes ±12 %, directions ±0.12 rad), slower and more regular
writing (sharper, less overlapping strokes; a heavier, more uniform line, 1.3–1.7× the
writer's pen width), tremor (a 6–11 Hz wobble of the pen) and hesitations (the pen lifted every 0.35–0.7 s and put down again
slightly off the line, leaving a small gap and a blob): the classic cues of forensic
document examiners. Each forgery adds 1.5× the genuine sample-to-sample
variation on top. `forgery_skill` (default 1.0) scales the forgers' deviations down
(higher skill, harder forgeries) or up. **Random forgeries** are not generated: they
are other writers' genuine signatures, as in the usual protocol.

**Rendering.** The trajectory is drawn with round-capped lines whose width grows where
the pen moves slowly, at 2× resolution, then downsampled (anti-aliasing) and composed
as ink over a paper-like background (a smooth uneven tone plus pixel noise), giving
8-bit grayscale images of varying size, dark ink on light paper, like scans.

Everything is a function of `seed` and the writer's index: writer `w` is the same image
set whatever the number of writers generated.

**Three configurations** (`GENERATORS`, `generator=` / `generate --generator`): `"default"`,
everything above; `"transfer"`, a differently parameterised population that no model
is trained on (other resolution, pens, hands, forgers and paper; see `GENERATORS`), so that
transfer to writers, forgers and scans a model never saw can be measured honestly; and
`"varied"`, for training: each writer draws its own resolution, pen, hand, forgers and
paper from ranges around the default that stop short of `"transfer"`'s values.

Example:

>>> data = generate_signatures(num_writers=2, genuine_per_writer=2, forgeries_per_writer=2, seed=0)
>>> [(s.writer, s.genuine, s.image.dtype.name) for s in data][:3]
[('1', True, 'uint8'), ('1', True, 'uint8'), ('1', False, 'uint8')]
"""

import math
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

_DT = 0.005  # seconds per trajectory sample (200 Hz)
_SUPERSAMPLE = 2
PX_PER_UNIT = 2.0  # default scan resolution: pixels per trajectory unit (about a millimetre)
WRITTEN_LAYOUTS = ("cedar", "generic", "bhsig260")  # what `write_signatures` writes

# Generator configurations (`generate --generator`). "default" is the generator the shipped
# models and every figure of the README were made with; "transfer" is a differently
# parameterised population that training never sees, to measure transfer honestly: other
# pens (widths from a fine ballpoint to a felt tip), rounder and more slanted hands that
# vary more from one signature to the next, forgers who copy more closely with a light
# hand (no heavier line, little tremor, rare pen lifts), a higher scan resolution, and
# noisier, darker paper with a slight blur. Each value is a factor or range applied on top
# of the default draws (see `_vary_writer`, `_vary_forger`), so "default" is unchanged.
GENERATORS = {
    "default": {},
    "transfer": {
        "px_per_unit": 3.0,  # scan resolution (default 2.0)
        "variation": 1.35,  # genuine signature-to-signature variation (x default)
        "pen_width": (0.45, 1.7),  # factor on the writer's pen width
        "curvature": 1.35,  # rounder strokes, more loops
        "extra_slant": 0.2,  # sd of a slant added to the writer's
        "forger_skill": (1.2, 1.8),  # per forger: smaller persistent deviations (harder)
        "forger_pressure": (0.85, 1.2),  # pen width factor of forgers (default 1.3-1.7)
        "forger_tremor": 0.4,  # factor on tremor amplitude
        "forger_lifts": 2.0,  # factor on the time between hesitations (rarer lifts)
        "paper_noise": 6.0,  # pixel noise sd (default 3)
        "paper": (175.0, 235.0),  # paper tone
        "blur": 0.8,  # Gaussian blur of the scan (pixels)
    },
    # "varied": for training. Every writer draws its own configuration from "per_writer"
    # (uniform ranges around the default: 1.0 for the factors, 2.0 pixels per unit, paper
    # noise 3, no blur) plus the per-writer / per-forger ranges below, so that a model sees
    # many pens, scans, hands, forgers and papers. The ranges stop short of "transfer":
    # its resolution, variation, curvature, slant spread, tremor, pen lifts, paper noise
    # and blur all lie outside them; only its pen widths, paper tones, forgers' skill and
    # pressure overlap (README.md, "A varied training population").
    "varied": {
        "per_writer": {
            "px_per_unit": (1.5, 2.6),
            "variation": (0.8, 1.25),
            "curvature": (0.8, 1.25),
            "extra_slant": (0.0, 0.12),
            "forger_tremor": (0.6, 1.5),
            "forger_lifts": (0.6, 1.6),
            "paper_noise": (1.0, 5.0),
            "blur": (0.0, 0.6),
        },
        "pen_width": (0.65, 1.45),
        "paper": (195.0, 250.0),
        "forger_skill": (0.75, 1.4),
        "forger_pressure": (1.0, 1.7),
    },
}


@dataclass
class GeneratedSignature:
    """One generated image: `writer` (a string id "1", "2", ...), `genuine`, `index`
    (1-based, per writer and kind), `forger` (0-based forger id, -1 for genuine) and
    `image` (`uint8 [H, W]`, dark ink on light paper)."""

    writer: str
    genuine: bool
    index: int
    forger: int
    image: np.ndarray


def _erf(x):
    # Abramowitz & Stegun 7.1.26, |error| < 1.5e-7: NumPy has no vectorised erf.
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-x * x))


def _writer_model(rng):
    """The characteristic parameters of one writer (a dict of arrays)."""
    components = []
    n_components = int(rng.choice([1, 2, 2, 3]))
    for c in range(n_components):
        n = int(rng.integers(6, 12)) if n_components > 1 else int(rng.integers(10, 17))
        up = np.pi / 2 + rng.normal(0.0, 0.35, n)
        sign = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
        theta_s = np.where(sign > 0, up, up - np.pi)
        curvature = rng.normal(0.0, 1.1, n)
        loops = rng.random(n) < 0.25
        curvature = np.where(loops, np.sign(curvature + 1e-9) * rng.uniform(2.0, 3.4, n), curvature)
        strokes = {
            "D": rng.uniform(6.0, 20.0, n) * rng.uniform(0.8, 1.2),
            "t0": np.cumsum(rng.uniform(0.08, 0.14, n)) - 0.08,
            "mu": rng.uniform(-2.4, -2.0, n),
            "sigma": rng.uniform(0.18, 0.3, n),
            "theta_s": theta_s,
            "theta_e": theta_s + curvature,
        }
        if rng.random() < (0.5 if c == n_components - 1 else 0.1):  # a flourish
            for key, value in (
                ("D", rng.uniform(25.0, 45.0)),
                ("t0", strokes["t0"][-1] + rng.uniform(0.08, 0.15)),
                ("mu", rng.uniform(-1.8, -1.4)),
                ("sigma", rng.uniform(0.2, 0.3)),
                ("theta_s", rng.choice([np.pi + 0.3, -0.3]) + rng.normal(0, 0.2)),
            ):
                strokes[key] = np.append(strokes[key], value)
            strokes["theta_e"] = np.append(strokes["theta_e"], strokes["theta_s"][-1] + rng.normal(0, 1.2))
        components.append(
            {
                "strokes": strokes,
                "drift": rng.uniform(8.0, 20.0),
                "gap": rng.uniform(4.0, 14.0),
                "dy": rng.normal(0.0, 4.0),
            }
        )
    return {
        "components": components,
        "slant": rng.normal(0.0, 0.25),
        "aspect": rng.uniform(0.8, 1.25),
        "size": rng.uniform(0.8, 1.2),
        "width": rng.uniform(1.1, 2.2),
        "ink": rng.uniform(20.0, 80.0),
        "paper": rng.uniform(215.0, 245.0),
    }


def _forger_model(rng, skill):
    """A forger's persistent deviations from the writer he imitates."""
    s = 1.0 / max(float(skill), 1e-3)
    return {
        "slant": rng.choice([-1.0, 1.0]) * rng.uniform(0.08, 0.22) * s,
        "aspect": float(np.exp(rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 0.22) * s)),
        "D": 0.12 * s,
        "theta": 0.12 * s,
        "sharpness": rng.uniform(0.75, 0.9),  # sigma factor: slower, more separated strokes
        "tempo": rng.uniform(1.1, 1.35),  # onsets spread out
        "tremor": rng.uniform(0.7, 1.2) * s,  # trajectory units
        "pressure": rng.uniform(1.3, 1.7),  # pen width factor: slow writing, pressing harder
        "lift_every": rng.uniform(0.35, 0.7),  # seconds between hesitations
        "tremor_hz": rng.uniform(6.0, 11.0),
        "drift": float(np.exp(rng.normal(0.0, 0.1 * s))),
        "seed": int(rng.integers(2**31)),
    }


def _perturbed_strokes(strokes, rng, scale, forger=None):
    n = strokes["D"].size
    d_bias = np.ones(n)
    theta_bias = np.zeros(n)
    sigma_f, tempo = 1.0, 1.0
    if forger is not None:
        bias_rng = np.random.default_rng(forger["seed"] + n)
        d_bias = np.exp(bias_rng.normal(0.0, forger["D"], n))
        theta_bias = bias_rng.normal(0.0, forger["theta"], n)
        sigma_f, tempo = forger["sharpness"], forger["tempo"]
    return {
        "D": strokes["D"] * d_bias * np.exp(rng.normal(0.0, 0.04 * scale, n)),
        "t0": strokes["t0"] * tempo + rng.normal(0.0, 0.006 * scale, n),
        "mu": strokes["mu"] + rng.normal(0.0, 0.03 * scale, n),
        "sigma": strokes["sigma"] * sigma_f * np.exp(rng.normal(0.0, 0.03 * scale, n)),
        "theta_s": strokes["theta_s"] + theta_bias + rng.normal(0.0, 0.04 * scale, n),
        "theta_e": strokes["theta_e"] + theta_bias + rng.normal(0.0, 0.04 * scale, n),
    }


def _trajectory(strokes, drift):
    """Pen positions `[T, 2]` and speeds `[T]` of one component."""
    t_end = float(np.max(strokes["t0"] + np.exp(strokes["mu"] + 3.0 * strokes["sigma"])))
    t = np.arange(0.0, t_end + _DT, _DT)
    vx = np.full_like(t, drift)
    vy = np.zeros_like(t)
    for D, t0, mu, sigma, ts, te in zip(
        strokes["D"], strokes["t0"], strokes["mu"], strokes["sigma"], strokes["theta_s"], strokes["theta_e"]
    ):
        dt = t - t0
        live = dt > 1e-6
        lt = np.log(np.where(live, dt, 1.0))
        speed = np.where(
            live,
            D
            / (sigma * math.sqrt(2 * math.pi) * np.where(live, dt, 1.0))
            * np.exp(-((lt - mu) ** 2) / (2 * sigma**2)),
            0.0,
        )
        phi = ts + (te - ts) * 0.5 * (1.0 + _erf((lt - mu) / (sigma * math.sqrt(2.0))))
        vx += speed * np.cos(phi)
        vy += speed * np.sin(phi)
    pos = np.cumsum(np.stack([vx, vy], axis=1) * _DT, axis=0)
    return pos, np.hypot(vx, vy)


def _sample(writer, rng, forger=None, px_per_unit=PX_PER_UNIT, variation=1.0):
    """The pen-down pieces of one signature: a list of (points [T, 2] in pixels, widths [T])."""
    scale = (1.5 if forger is not None else 1.0) * variation
    pieces = []
    x0 = 0.0
    for comp in writer["components"]:
        strokes = _perturbed_strokes(comp["strokes"], rng, scale, forger)
        drift = comp["drift"] * np.exp(rng.normal(0.0, 0.03 * scale))
        if forger is not None:
            drift *= forger["drift"]
        pos, speed = _trajectory(strokes, drift)
        pos = pos - pos[0] + np.array([x0, comp["dy"] + rng.normal(0.0, 0.8 * scale)])
        x0 = pos[:, 0].max() + comp["gap"] * np.exp(rng.normal(0.0, 0.08 * scale))
        pieces.append((pos, speed))

    slant = writer["slant"] + rng.normal(0.0, 0.03 * scale)
    aspect = writer["aspect"] * np.exp(rng.normal(0.0, 0.03 * scale))
    angle = rng.normal(0.0, math.radians(2.0) * scale)
    size = writer["size"] * np.exp(rng.normal(0.0, 0.04 * scale))
    width = writer["width"] * np.exp(rng.normal(0.0, 0.08))
    if forger is not None:
        slant += forger["slant"]
        aspect *= forger["aspect"]
    cos, sin = math.cos(angle), math.sin(angle)
    affine = size * np.array([[cos, -sin], [sin, cos]]) @ np.array([[1.0, slant], [0.0, aspect]])

    out = []
    jitter_scale = 0.12 * scale
    for k, (pos, speed) in enumerate(pieces):
        pos = pos + _smooth_noise(rng, len(pos), jitter_scale, 25)
        if forger is not None:
            t = np.arange(len(pos)) * _DT
            trem_rng = np.random.default_rng(forger["seed"] + 7919 * (k + 1))
            phase = trem_rng.uniform(0, 2 * np.pi, 2) + rng.uniform(0, 2 * np.pi, 2)
            hz = forger["tremor_hz"] * np.exp(rng.normal(0.0, 0.05))
            amp = forger["tremor"] * (0.6 + 0.4 * np.abs(np.sin(2 * np.pi * 0.7 * t)))[:, None]
            pos = pos + amp * np.sin(2 * np.pi * hz * t[:, None] + phase[None, :])
        pts = pos @ affine.T * px_per_unit
        rel = speed / (np.percentile(speed, 90) + 1e-6)
        if forger is not None:
            rel = 0.5 + 0.5 * rel  # slow, careful writing: a more uniform, heavier line
        widths = width * np.clip(1.35 - 0.5 * rel, 0.55, 1.4) * (forger["pressure"] if forger else 1.0)
        if forger is None:
            out.append((pts, widths))
            continue
        # Hesitations: the forger stops to look at the model, lifts the pen and starts
        # again a little off the line, leaving a gap and a blob where the pen lands.
        cuts = []
        i = int(rng.integers(20, 60))
        while i < len(pts) - 10:
            cuts.append(i)
            i += int(rng.uniform(0.5, 1.5) * forger["lift_every"] / _DT)
        start = 0
        for c in cuts + [len(pts)]:
            seg_pts, seg_w = pts[start:c].copy(), widths[start:c].copy()
            if start > 0:
                seg_pts += rng.normal(0.0, 0.35 * px_per_unit, 2)
                seg_w[:3] *= 1.6
            if len(seg_pts) >= 2:
                out.append((seg_pts, seg_w))
            start = c + int(rng.integers(2, 5))
    return out


def _smooth_noise(rng, n, sigma, correlation):
    """`[n, 2]` Gaussian noise smoothed over about `correlation` samples."""
    if n < 2:
        return np.zeros((n, 2))
    knots = max(2, n // correlation + 2)
    values = rng.normal(0.0, sigma, (knots, 2))
    xs = np.linspace(0, knots - 1, n)
    return np.stack([np.interp(xs, np.arange(knots), values[:, i]) for i in range(2)], axis=1)


def _render(pieces, writer, rng, preset=None):
    """Draws the pieces as an anti-aliased grayscale scan, `uint8 [H, W]`."""
    preset = preset or {}
    allpts = np.concatenate([p for p, _ in pieces])
    lo, hi = allpts.min(axis=0), allpts.max(axis=0)
    margin = rng.uniform(6, 20, 4) * (1 + 0.5 * rng.random())
    wpx = int(math.ceil(hi[0] - lo[0] + margin[0] + margin[1]))
    hpx = int(math.ceil(hi[1] - lo[1] + margin[2] + margin[3]))
    S = _SUPERSAMPLE
    canvas = Image.new("L", (wpx * S, hpx * S), 0)
    draw = ImageDraw.Draw(canvas)
    for pts, widths in pieces:
        # x right, y up (trajectory) -> column, row (image, y down).
        cols = (pts[:, 0] - lo[0] + margin[0]) * S
        rows = (hi[1] - pts[:, 1] + margin[2]) * S
        # Polylines of 8 samples at a time, each with its mean width, round joints and caps.
        chunk = 8
        for i in range(0, max(1, len(cols) - 1), chunk):
            j = min(i + chunk, len(cols) - 1)
            w = float(np.mean(widths[i : j + 1])) * S
            seg = list(zip(cols[i : j + 1].tolist(), rows[i : j + 1].tolist()))
            draw.line(seg, fill=255, width=max(1, int(round(w))), joint="curve")
            r = w / 2.0
            draw.ellipse([cols[j] - r, rows[j] - r, cols[j] + r, rows[j] + r], fill=255)
    alpha = np.asarray(canvas.resize((wpx, hpx), Image.Resampling.BOX), dtype=np.float32)
    alpha *= np.float32(1.0 / 255.0)

    # Paper: a smooth uneven tone, fibres (pixel noise); ink: a darkness with a little noise.
    paper = writer["paper"] + rng.normal(0.0, 2.0)
    coarse = rng.normal(0.0, 5.0, (4, 6)).astype(np.float32)
    tone = np.asarray(Image.fromarray(coarse, mode="F").resize((wpx, hpx), Image.Resampling.BICUBIC))
    noise = rng.standard_normal((hpx, wpx), dtype=np.float32)
    background = tone + np.float32(paper) + np.float32(preset.get("paper_noise", 3.0)) * noise
    ink = np.float32(writer["ink"] + rng.normal(0.0, 6.0)) + np.float32(4.0) * noise[::-1, ::-1]
    image = background + (ink - background) * alpha
    if preset.get("blur"):
        from skimage.filters import gaussian

        image = gaussian(image, sigma=preset["blur"], preserve_range=True)
    return np.clip(image + np.float32(0.5), 0, 255).astype(np.uint8)


def generate_writer(
    writer_index,
    genuine_per_writer=12,
    forgeries_per_writer=12,
    seed=0,
    forgers_per_writer=3,
    forgery_skill=1.0,
    px_per_unit=None,
    generator="default",
):
    """The images of writer `writer_index` (0-based): a list of `GeneratedSignature`.

    Genuine signatures first (`index` 1..G), then skilled forgeries (1..F) made by
    `forgers_per_writer` forgers in turn. Deterministic in `(seed, writer_index,
    generator)`. `px_per_unit` is the scan resolution (default: the generator's; 2.0
    gives images of roughly 100×250 pixels). `generator` names a configuration of
    `GENERATORS`.
    """
    preset = _preset(generator)
    root = np.random.SeedSequence([int(seed), int(writer_index)])
    model_seq, genuine_seq, forgery_seq = root.spawn(3)
    writer = _writer_model(np.random.default_rng(model_seq))
    if "per_writer" in preset:
        # This writer's own configuration, from a stream of its own (default and transfer
        # spawn no such stream, so their images are unchanged).
        draw = np.random.default_rng(root.spawn(1)[0])
        preset = {k: v for k, v in preset.items() if k != "per_writer"} | {
            k: float(draw.uniform(lo, hi)) for k, (lo, hi) in preset["per_writer"].items()
        }
    if px_per_unit is None:
        px_per_unit = preset.get("px_per_unit", PX_PER_UNIT)
    if preset:
        # A stream of its own (spawned after the default three), so "default" is untouched.
        writer = _vary_writer(writer, np.random.default_rng(root.spawn(1)[0]), preset)
    variation = preset.get("variation", 1.0)
    name = str(writer_index + 1)
    out = []
    g_rng = np.random.default_rng(genuine_seq)
    for i in range(genuine_per_writer):
        pieces = _sample(writer, g_rng, None, px_per_unit, variation)
        out.append(GeneratedSignature(name, True, i + 1, -1, _render(pieces, writer, g_rng, preset)))
    f_rng = np.random.default_rng(forgery_seq)
    forgers = [_forger_model(f_rng, forgery_skill) for _ in range(max(1, forgers_per_writer))]
    if preset:
        forgers = [_vary_forger(f, np.random.default_rng([f["seed"], 1]), preset) for f in forgers]
    for i in range(forgeries_per_writer):
        k = i % len(forgers)
        pieces = _sample(writer, f_rng, forgers[k], px_per_unit, variation)
        out.append(GeneratedSignature(name, False, i + 1, k, _render(pieces, writer, f_rng, preset)))
    return out


def _preset(generator):
    if generator not in GENERATORS:
        raise ValueError(f"generator must be one of {tuple(GENERATORS)}; got {generator!r}.")
    return GENERATORS[generator]


def _vary_writer(writer, rng, preset):
    """The writer drawn by `_writer_model`, changed as `preset` says (see `GENERATORS`)."""
    writer = dict(writer)
    writer["width"] = writer["width"] * rng.uniform(*preset["pen_width"])
    writer["slant"] = writer["slant"] + rng.normal(0.0, preset["extra_slant"])
    writer["paper"] = rng.uniform(*preset["paper"])
    components = []
    for comp in writer["components"]:
        strokes = dict(comp["strokes"])
        strokes["theta_e"] = (
            strokes["theta_s"] + (strokes["theta_e"] - strokes["theta_s"]) * preset["curvature"]
        )
        components.append({**comp, "strokes": strokes})
    writer["components"] = components
    return writer


def _vary_forger(forger, rng, preset):
    """A forger drawn by `_forger_model`, changed as `preset` says (see `GENERATORS`)."""
    forger = dict(forger)
    closer = 1.0 / rng.uniform(*preset["forger_skill"])
    for key in ("slant", "D", "theta", "tremor"):
        forger[key] = forger[key] * closer
    forger["aspect"] = float(forger["aspect"] ** closer)
    forger["tremor"] *= preset["forger_tremor"]
    forger["pressure"] = rng.uniform(*preset["forger_pressure"])
    forger["lift_every"] *= preset["forger_lifts"]
    return forger


def generate_signatures(
    num_writers,
    genuine_per_writer=12,
    forgeries_per_writer=12,
    seed=0,
    forgers_per_writer=3,
    forgery_skill=1.0,
    first_writer=0,
    px_per_unit=None,
    workers=1,
    generator="default",
):
    """Images of writers `first_writer .. first_writer + num_writers - 1` (see the module
    docstring): a list of `GeneratedSignature`, writer by writer.

    Args:
        num_writers: how many writers.
        genuine_per_writer: genuine signatures per writer (CEDAR has 24).
        forgeries_per_writer: skilled forgeries per writer (CEDAR has 24).
        seed: the seed of everything.
        forgers_per_writer: how many forgers imitate each writer.
        forgery_skill: > 1 makes forgeries closer to the genuine (harder), < 1 cruder.
        first_writer: index of the first writer (to generate disjoint sets of writers).
        px_per_unit: scan resolution (see `generate_writer`).
        workers: processes to use (the result does not depend on it).
        generator: a configuration of `GENERATORS` ("default", "transfer" or "varied").
    """
    _preset(generator)
    if num_writers < 1:
        raise ValueError(f"num_writers must be >= 1; got {num_writers}.")
    if genuine_per_writer < 1 or forgeries_per_writer < 0:
        raise ValueError(
            "genuine_per_writer must be >= 1 and forgeries_per_writer >= 0; got "
            f"{genuine_per_writer} and {forgeries_per_writer}."
        )
    args = [
        (
            w,
            genuine_per_writer,
            forgeries_per_writer,
            seed,
            forgers_per_writer,
            forgery_skill,
            px_per_unit,
            generator,
        )
        for w in range(first_writer, first_writer + num_writers)
    ]
    out = []
    for images in _map(_generate_writer_args, args, workers):
        out.extend(images)
    return out


def _generate_writer_args(args):
    return generate_writer(*args)


def _map(fn, args, workers):
    """`map(fn, args)`, in `workers` processes when > 1 (order kept)."""
    if workers is None or workers <= 1 or len(args) < 2:
        return map(fn, args)
    import multiprocessing

    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    with ctx.Pool(min(workers, len(args))) as pool:
        return pool.map(fn, args, chunksize=max(1, len(args) // (4 * workers)))


def write_signatures(signatures, out, layout="cedar"):
    """Writes generated signatures as PNG files in a dataset layout; returns the paths.

    - `"cedar"`: `out/full_org/original_<w>_<n>.png` and `out/full_forg/forgeries_<w>_<n>.png`
      (numbers without zero padding, as in CEDAR).
    - `"generic"`: `out/<writer>/genuine/<n>.png` and `out/<writer>/forged/<n>.png`.
    - `"bhsig260"`: `out/Bengali/<id>/B-S-<id>-G-<nn>.tif` (genuine) and `...-F-<nn>.tif`
      (forgeries) for odd writers, `out/Hindi/<id>/H-S-<id>-...` for even ones, with
      `id = (writer + 1) // 2`: writers 1 and 2 become `B-1` and `H-1`, the same number in
      both scripts, as in BHSig260.
    """
    if layout not in WRITTEN_LAYOUTS:
        raise ValueError(f"layout must be one of {WRITTEN_LAYOUTS}; got {layout!r}.")
    paths = []
    for s in signatures:
        if layout == "cedar":
            folder = os.path.join(out, "full_org" if s.genuine else "full_forg")
            name = f"{'original' if s.genuine else 'forgeries'}_{s.writer}_{s.index}.png"
        elif layout == "bhsig260":
            script, language = ("B", "Bengali") if int(s.writer) % 2 else ("H", "Hindi")
            number = (int(s.writer) + 1) // 2
            folder = os.path.join(out, language, str(number))
            name = f"{script}-S-{number}-{'G' if s.genuine else 'F'}-{s.index:02d}.tif"
        else:
            folder = os.path.join(
                out,
                f"writer_{int(s.writer):03d}" if s.writer.isdigit() else s.writer,
                "genuine" if s.genuine else "forged",
            )
            name = f"{s.index:02d}.png"
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, name)
        Image.fromarray(s.image).save(path)
        paths.append(path)
    return paths


def generate_dataset(
    out,
    num_writers,
    genuine_per_writer=12,
    forgeries_per_writer=12,
    seed=0,
    layout="cedar",
    forgers_per_writer=3,
    forgery_skill=1.0,
    px_per_unit=None,
    workers=1,
    generator="default",
):
    """Generates writers and writes them as PNG files under `out` (see `write_signatures`;
    `generator`: a configuration of `GENERATORS`).

    Returns the number of images written.
    """
    _preset(generator)
    args = [
        (
            w,
            genuine_per_writer,
            forgeries_per_writer,
            seed,
            forgers_per_writer,
            forgery_skill,
            px_per_unit,
            generator,
            os.fspath(out),
            layout,
        )
        for w in range(num_writers)
    ]
    return sum(_map(_write_writer_args, args, workers))


def _write_writer_args(args):
    *gen, out, layout = args
    return len(write_signatures(generate_writer(*gen), out, layout))
