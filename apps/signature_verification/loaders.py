"""Finding the signature images of a data set on disk: CEDAR, BHSig260 and a generic layout.

A loader only lists files (`SignatureDataset`: one `Sample` per image, with its writer
and whether it is genuine); images are read later (`preprocessing.load_images`), where
unreadable files are skipped and reported too. Files that do not fit the layout's
names (`Thumbs.db`, `.DS_Store`, README files, ...) are skipped and listed in
`dataset.skipped` with the reason.

Layouts:

- **CEDAR** (Kalera, Srihari & Xu, 2004): `full_org/original_<w>_<n>.png` (genuine) and
  `full_forg/forgeries_<w>_<n>.png` (skilled forgeries of writer `w`), numbers without
  zero padding. `root` may be the folder holding `full_org`/`full_forg` or its parent.
- **BHSig260** (Pal et al., 2016): `<writer>/B-S-<id>-G-<nn>.tif` (genuine) and
  `<writer>/B-S-<id>-F-<nn>.tif` (forgeries) for Bengali, `H-S-...` for Hindi, under any
  folders (e.g. `Bengali/1/...`, `Hindi/1/...`). Writers are named `B-<id>` / `H-<id>`,
  so a Bengali and a Hindi writer with the same number stay different people.
- **generic**: `root/<writer>/genuine/*` and `root/<writer>/forged/*` (`forgeries/`,
  `forgery/`, `skilled/` are accepted for forgeries, `original/`, `real/`,
  `authentic/` for genuine ones); a writer without forgeries is allowed.

`load_dataset(root, layout="auto")` recognises the layout.

Example:

>>> import os, tempfile
>>> root = tempfile.mkdtemp()
>>> for folder, name in (("full_org", "original_1_1.png"), ("full_forg", "forgeries_1_1.png"),
...                      ("full_org", "Thumbs.db")):
...     os.makedirs(os.path.join(root, folder), exist_ok=True)
...     open(os.path.join(root, folder, name), "wb").close()
>>> ds = load_dataset(root)
>>> ds.layout, ds.writers, len(ds.samples), [os.path.basename(p) for p, _ in ds.skipped]
('cedar', ['1'], 2, ['Thumbs.db'])
"""

import hashlib
import os
import re
from dataclasses import dataclass, field

from apps.signature_verification.preprocessing import IMAGE_EXTENSIONS

LAYOUTS = ("cedar", "bhsig260", "generic")

_CEDAR = re.compile(r"^(original|forgeries)_(\d+)_(\d+)\.(png|jpe?g|tiff?|bmp)$", re.IGNORECASE)
_BHSIG = re.compile(r"^([BH])-S-(\d+)-([GF])-(\d+)\.(tiff?|png|jpe?g|bmp)$", re.IGNORECASE)
_GENUINE_DIRS = ("genuine", "original", "originals", "real", "authentic")
_FORGED_DIRS = ("forged", "forgeries", "forgery", "forge", "skilled", "fake")
_JUNK = {"thumbs.db", ".ds_store", "desktop.ini"}


@dataclass(frozen=True)
class Sample:
    """One image: its `path`, `writer` id (a string), `genuine` flag and `number`."""

    path: str
    writer: str
    genuine: bool
    number: int = 0


def natural_key(text):
    """Sort key that orders "2" before "10" (and "B-2" before "B-10")."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", str(text)) if t]


@dataclass
class SignatureDataset:
    """The images of a data set: `samples` (a list of `Sample`), the `layout`, the `root`
    folder and `skipped` files as `(path, reason)`."""

    samples: list
    layout: str = "generic"
    root: str = ""
    skipped: list = field(default_factory=list)

    @property
    def writers(self):
        """Writer ids, naturally sorted."""
        return sorted({s.writer for s in self.samples}, key=natural_key)

    def genuine(self, writer):
        return [s for s in self.samples if s.writer == writer and s.genuine]

    def forged(self, writer):
        return [s for s in self.samples if s.writer == writer and not s.genuine]

    def subset(self, writers):
        keep = set(writers)
        return SignatureDataset(
            [s for s in self.samples if s.writer in keep], self.layout, self.root, list(self.skipped)
        )

    def fingerprint(self):
        """A short hash of the data set's content listing (writers, kinds, file names):
        the same files give the same fingerprint wherever the folder lies."""
        h = hashlib.sha256()
        for s in sorted(self.samples, key=lambda s: (natural_key(s.writer), s.genuine, s.path)):
            h.update(f"{s.writer}|{int(s.genuine)}|{os.path.basename(s.path)}\n".encode())
        return h.hexdigest()[:16]

    def summary(self):
        g = sum(s.genuine for s in self.samples)
        return (
            f"{self.layout} data at {self.root}: {len(self.writers)} writers, {g} genuine, "
            f"{len(self.samples) - g} forged images"
            + (f", {len(self.skipped)} files skipped" if self.skipped else "")
        )


def _sorted(samples):
    return sorted(samples, key=lambda s: (natural_key(s.writer), not s.genuine, s.number, s.path))


def _is_image_name(name):
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _skip_reason(name):
    if name.lower() in _JUNK or name.startswith("._"):
        return "system file"
    if not _is_image_name(name):
        return "not an image file"
    return "name does not follow the layout"


def _find_cedar_root(root):
    for candidate in [root] + [
        os.path.join(root, d) for d in sorted(os.listdir(root)) if os.path.isdir(os.path.join(root, d))
    ]:
        if os.path.isdir(os.path.join(candidate, "full_org")):
            return candidate
    return None


def load_cedar(root):
    """CEDAR layout (see the module docstring)."""
    base = _find_cedar_root(root)
    if base is None:
        raise FileNotFoundError(f"{root}: no CEDAR `full_org` folder here or one level below.")
    samples, skipped = [], []
    for folder, kind in (("full_org", "original"), ("full_forg", "forgeries")):
        path = os.path.join(base, folder)
        if not os.path.isdir(path):
            continue
        for name in sorted(os.listdir(path)):
            full = os.path.join(path, name)
            if os.path.isdir(full):
                continue
            m = _CEDAR.match(name)
            if m is None or m.group(1).lower() != kind:
                skipped.append((full, _skip_reason(name)))
                continue
            samples.append(Sample(full, str(int(m.group(2))), kind == "original", int(m.group(3))))
    return SignatureDataset(_sorted(samples), "cedar", root, skipped)


def load_bhsig260(root):
    """BHSig260 layout (see the module docstring)."""
    samples, skipped = [], []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(folder, name)
            m = _BHSIG.match(name)
            if m is None:
                skipped.append((full, _skip_reason(name)))
                continue
            script, writer, kind, number = (
                m.group(1).upper(),
                int(m.group(2)),
                m.group(3).upper(),
                int(m.group(4)),
            )
            samples.append(Sample(full, f"{script}-{writer}", kind == "G", number))
    if not samples:
        raise FileNotFoundError(f"{root}: no BHSig260 files (`B-S-<id>-G-<nn>.tif`, ...) found.")
    return SignatureDataset(_sorted(samples), "bhsig260", root, skipped)


def load_generic(root):
    """Generic layout `root/<writer>/genuine/*`, `root/<writer>/forged/*`."""
    samples, skipped = [], []
    for writer in sorted(os.listdir(root), key=natural_key):
        wdir = os.path.join(root, writer)
        if not os.path.isdir(wdir):
            skipped.append((wdir, _skip_reason(writer) if writer.lower() in _JUNK else "not a writer folder"))
            continue
        for sub in sorted(os.listdir(wdir)):
            sdir = os.path.join(wdir, sub)
            if not os.path.isdir(sdir):
                skipped.append((sdir, "not in a genuine/ or forged/ folder"))
                continue
            kind = sub.lower()
            if kind not in _GENUINE_DIRS + _FORGED_DIRS:
                skipped.append((sdir, "unknown folder (expected genuine/ or forged/)"))
                continue
            for number, name in enumerate(sorted(os.listdir(sdir), key=natural_key), start=1):
                full = os.path.join(sdir, name)
                if os.path.isdir(full) or not _is_image_name(name) or name.lower() in _JUNK:
                    skipped.append((full, "folder" if os.path.isdir(full) else _skip_reason(name)))
                    continue
                samples.append(Sample(full, writer, kind in _GENUINE_DIRS, number))
    if not samples:
        raise FileNotFoundError(f"{root}: no images in `<writer>/genuine/` or `<writer>/forged/` folders.")
    return SignatureDataset(_sorted(samples), "generic", root, skipped)


def detect_layout(root):
    """'cedar', 'bhsig260' or 'generic' (raises `FileNotFoundError` if none fits)."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root}: no such folder.")
    if _find_cedar_root(root) is not None:
        return "cedar"
    for _folder, _dirs, files in os.walk(root):
        if any(_BHSIG.match(f) for f in files):
            return "bhsig260"
    for writer in os.listdir(root):
        wdir = os.path.join(root, writer)
        if os.path.isdir(wdir) and any(
            d.lower() in _GENUINE_DIRS + _FORGED_DIRS and os.path.isdir(os.path.join(wdir, d))
            for d in os.listdir(wdir)
        ):
            return "generic"
    raise FileNotFoundError(
        f"{root}: no known signature layout (CEDAR `full_org/original_<w>_<n>.png`, BHSig260 "
        "`<writer>/B-S-<id>-G-<nn>.tif`, or generic `<writer>/genuine/*` and `<writer>/forged/*`)."
    )


def load_dataset(root, layout="auto"):
    """Lists a data set's images: `layout` is 'auto', 'cedar', 'bhsig260' or 'generic'."""
    root = os.fspath(root)
    if layout == "auto":
        layout = detect_layout(root)
    loaders = {"cedar": load_cedar, "bhsig260": load_bhsig260, "generic": load_generic}
    if layout not in loaders:
        raise ValueError(f"layout must be 'auto' or one of {LAYOUTS}; got {layout!r}.")
    return loaders[layout](root)


def _named_writer(name):
    """`(writer, genuine)` of a file named as in CEDAR or BHSig260, else None."""
    m = _CEDAR.match(name)
    if m:
        return str(int(m.group(2))), m.group(1).lower() == "original"
    m = _BHSIG.match(name)
    if m:
        return f"{m.group(1).upper()}-{int(m.group(2))}", m.group(3).upper() == "G"
    return None


def writer_images(folder):
    """The image files of one writer's folder, for `enroll`: the files in `folder` itself,
    or in its `genuine/` subfolder when there is one. Files named as forgeries in the CEDAR
    or BHSig260 way (`forgeries_<w>_<n>.png`, `B-S-<id>-F-<nn>.tif`: a BHSig260 writer's
    folder holds both kinds) are skipped; a folder of CEDAR or BHSig260 files of several
    writers (CEDAR's `full_org`) is an error: use `dataset_writer_images`. Returns
    `(paths, skipped)`."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: no such folder.")
    for sub in os.listdir(folder):
        if sub.lower() in _GENUINE_DIRS and os.path.isdir(os.path.join(folder, sub)):
            folder = os.path.join(folder, sub)
            break
    paths, skipped, named = [], [], set()
    for name in sorted(os.listdir(folder), key=natural_key):
        full = os.path.join(folder, name)
        if os.path.isdir(full):
            continue
        if not _is_image_name(name) or name.lower() in _JUNK:
            skipped.append((full, _skip_reason(name)))
            continue
        writer_kind = _named_writer(name)
        if writer_kind is not None and not writer_kind[1]:
            skipped.append((full, "a forgery (by its name)"))
            continue
        if writer_kind is not None:
            named.add(writer_kind[0])
        paths.append(full)
    if len(named) > 1:
        shown = ", ".join(sorted(named, key=natural_key)[:5])
        raise ValueError(
            f"{folder} holds the signatures of {len(named)} writers ({shown}, ...); pass the data "
            "folder with --writer WRITER to enrol one of them."
        )
    return paths, skipped


def dataset_writer_images(root, writer, layout="auto"):
    """The genuine image files of `writer` (named as `evaluate` names writers: `12` in
    CEDAR, `B-12` in BHSig260, the folder name in the generic layout) in the data set at
    `root`, for `enroll --writer`. Returns `(paths, skipped)`."""
    dataset = load_dataset(root, layout)
    if writer not in dataset.writers:
        shown = ", ".join(dataset.writers[:8])
        raise ValueError(
            f"{root}: no writer {writer!r} in this {dataset.layout} data set (writers: {shown}, ...)."
        )
    return [s.path for s in dataset.genuine(writer)], dataset.skipped
