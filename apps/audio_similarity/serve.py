"""`serve`: a web page and a JSON API over an index: upload a clip (or pick one from the
index) and see and hear its nearest neighbours, with distances and labels.

`python -m apps.audio_similarity serve --index INDEX [--model MODEL] [--port 8000]`
loads the model and the index once, then answers:

| request | reply |
|---|---|
| `GET /` | the page |
| `GET /info` | `{"index", "model", "size", "metric", "classes", "playable"}` |
| `GET /clips?q=TEXT&limit=N` | indexed clips whose name or label holds TEXT: `{"total", "clips": [{"clip", "name", "label"}]}` |
| `GET /clips/<clip>` | the audio file of indexed clip number `<clip>` (when it is still on disk) |
| `POST /search` | fields `file` (an upload) or `clip` (a number from `/clips`), `top` (default 5): `{"query", "neighbors": [{"rank", "distance", "label", "name", "clip", "audio"}], "milliseconds"}` |

`POST /search` takes `multipart/form-data`, a URL-encoded form or a JSON object. A bad
upload (empty, not audio, silent, too short, over the size limit) is answered with a
4xx and `{"error": "..."}`. Only the files the index names are served (by number, never
by path).
"""

import html
import mimetypes
import os
import tempfile
import time

import numpy as np

from apps import _web
from apps._common import fail, log, read_json, side_path
from apps.audio_similarity import features as F
from apps.audio_similarity import search
from apps.audio_similarity.data import BadAudio, load_audio
from apps.audio_similarity.model import load_model

MAX_TOP = 100
MAX_LIST = 500


class AudioSearch:
    """The model and the index, loaded once; what the page and the API ask of them."""

    def __init__(self, index_path, model_path=None):
        self.index_path = os.path.abspath(index_path)
        self.index, self.model_path = search.load_index(index_path, model_path)
        self.model, self.settings, self.frames = load_model(self.model_path)
        if self.index.dim != self.model.embedder.output_shape[-1]:
            fail(
                f"{index_path} holds {self.index.dim}-dimensional embeddings but "
                f"{self.model_path} makes {self.model.embedder.output_shape[-1]}-dimensional ones; "
                "pass the model the index was built with."
            )
        # Each batch shape compiles on its first call (JAX, XLA): here, not on the first
        # person's query. Clips up to about 2 s give 1 to 4 windows.
        for n in (1, 2, 4):
            self.model.embed(np.zeros((n, self.frames, self.settings.n_mels, 1), np.float32))
        # So do librosa's first spectrogram and the first search (faiss builds its index).
        F.log_mel(np.sin(np.arange(self.settings.sample_rate // 2, dtype=np.float32)), self.settings)
        self.index.search(self.index.embeddings[:1], 1)
        ids = self.index.ids
        self.position = {v: n for n, v in enumerate(ids.tolist())}  # search answers ids
        self.paths = [str(i) for i in ids] if ids.dtype.kind == "U" else None
        self.names = [os.path.basename(p) for p in self.paths] if self.paths else [str(i) for i in ids]
        labels = self.index.labels
        self.labels = None if labels is None else [str(v) for v in labels]
        self.playable = self.paths is not None and any(os.path.isfile(p) for p in self.paths[:20])
        meta = read_json(side_path(index_path)) if os.path.isfile(side_path(index_path)) else {}
        self.data_dir = meta.get("data")

    def info(self):
        return {
            "index": self.index_path,
            "model": os.path.abspath(self.model_path),
            "data": self.data_dir,
            "size": len(self.index),
            "metric": self.index.metric,
            "classes": sorted(set(self.labels)) if self.labels else [],
            "playable": self.playable,
        }

    def clip(self, n):
        """`{"clip", "name", "label"}` of indexed clip `n`."""
        return {"clip": n, "name": self.names[n], "label": self.labels[n] if self.labels else None}

    def find(self, text="", limit=50):
        text = text.strip().lower()
        hits = [
            n
            for n in range(len(self.names))
            if not text or text in self.names[n].lower() or (self.labels and text in self.labels[n].lower())
        ]
        return {"total": len(hits), "clips": [self.clip(n) for n in hits[:limit]]}

    def embed_upload(self, upload, lock):
        """The embedding `[1, D]` of an uploaded clip; `HTTPError` 400 when unusable."""
        if not upload.data:
            raise _web.HTTPError(400, f"{upload.filename or 'the upload'}: empty file.")
        suffix = os.path.splitext(upload.filename or "")[1][:10]
        # A real file (not only the bytes): the librosa fallback decodes from a path.
        with tempfile.NamedTemporaryFile(suffix=suffix) as f:
            f.write(upload.data)
            f.flush()
            try:
                y = load_audio(
                    f.name, self.settings.sample_rate, self.settings.min_duration, data=upload.data
                )
            except BadAudio as e:
                raise _web.HTTPError(400, f"{upload.filename or 'the upload'}: {e}.") from None
        with lock:
            return F.embed_clips(self.model, [F.log_mel(y, self.settings)], self.frames)

    def neighbours(self, emb, top, exclude=None):
        """The `top` nearest indexed clips of `emb` `[1, D]` (leaving out clip `exclude`)."""
        k = min(top + (exclude is not None), len(self.index))
        dist, ids, _ = self.index.search(emb, k)
        rows = []
        for d, i in zip(dist[0], ids[0].tolist()):
            n = self.position[i]
            if n == exclude:
                continue
            rows.append(
                {
                    **self.clip(n),
                    "rank": len(rows) + 1,
                    "distance": float(d),
                    "audio": f"/clips/{n}" if self.playable else None,
                }
            )
        return rows[:top]


def make_app(index_path, model_path=None, max_upload=_web.DEFAULT_MAX_BODY):
    """The `WebApp` of `serve`: the model and the index are loaded here, once."""
    service = AudioSearch(index_path, model_path)
    app = _web.WebApp("audio_similarity", max_body=max_upload)
    app.service = service

    @app.route("GET", "/")
    def index_page(request):
        return _page(service)

    @app.route("GET", "/info")
    def info(request):
        return service.info()

    @app.route("GET", "/clips")
    def clips(request):
        return service.find(request.field("q", ""), request.int_field("limit", 50, 1, MAX_LIST))

    @app.route("GET", "/clips/<clip>")
    def clip_audio(request, clip):
        n = _clip_number(clip, len(service.index))
        if service.paths is None:
            raise _web.HTTPError(404, "this index stores no file paths, so it has no audio to play.")
        path = service.paths[n]
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            raise _web.HTTPError(404, f"clip {n} ({service.names[n]}) is no longer on disk.") from None
        content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return _web.Response(data, content_type)

    @app.route("POST", "/search")
    def search_(request):
        t0 = time.perf_counter()
        top = request.int_field("top", 5, 1, MAX_TOP)
        uploads = request.files("file")
        clip = request.field("clip")
        if uploads:
            upload = uploads[0]
            emb = service.embed_upload(upload, app.lock)
            query = {"name": upload.filename, "label": None, "clip": None}
            exclude = None
        elif clip not in (None, ""):
            n = _clip_number(clip, len(service.index))
            emb = service.index.embeddings[n : n + 1]
            query, exclude = service.clip(n), n
        else:
            raise _web.HTTPError(
                400, "send a sound file (field 'file') or an indexed clip number (field 'clip')."
            )
        with app.lock:
            neighbours = service.neighbours(emb, top, exclude)
        return {
            "query": query,
            "neighbors": neighbours,
            "milliseconds": round(1000 * (time.perf_counter() - t0), 1),
        }

    return app


def _clip_number(text, size):
    try:
        n = int(text)
    except (TypeError, ValueError):
        raise _web.HTTPError(400, f"a clip is a number from 0 to {size - 1}; got {text!r}.") from None
    if not 0 <= n < size:
        raise _web.HTTPError(404, f"no clip {n}: the index holds clips 0 to {size - 1}.")
    return n


def serve(args):
    """The `serve` command."""
    app = make_app(args.index, args.model, max_upload=int(args.max_upload_mb * 1e6))
    info = app.service.info()
    log(
        f"{info['size']} clips of {len(info['classes'])} classes from {args.index}; model {info['model']}"
        + ("" if info["playable"] else " (the indexed files are not on disk: no playback)")
    )
    return _web.run(app, args.host, args.port)


def _page(service):
    info = service.info()
    body = f"""
<p class="muted" id="summary">Index <code>{html.escape(os.path.basename(info["index"]))}</code>:
{info["size"]} clips, {len(info["classes"])} classes; model
<code>{html.escape(os.path.basename(info["model"]))}</code>; {info["metric"]} distance.</p>
<form id="upload-form">
  <label>Upload a clip: <input type="file" name="file" id="file" accept="audio/*"></label>
  <label>neighbours <input type="number" name="top" id="top" value="5" min="1" max="{MAX_TOP}"
    style="width: 4rem"></label>
  <button type="submit" id="search-upload">Search</button>
</form>
<form id="pick-form">
  <label>or pick an indexed clip: <input type="search" id="filter" placeholder="filter by name or label"></label>
  <select name="clip" id="clip"></select>
  <input type="hidden" name="top" id="pick-top" value="5">
  <button type="submit" id="search-clip">Search</button>
</form>
<div id="results"></div>
"""
    script = """
const results = document.getElementById("results");
function render(reply, queryAudio) {
  const q = reply.query;
  let h = '<h2>Nearest neighbours of <span id="query-name">' + esc(q.name) + '</span>' +
    (q.label ? ' [' + esc(q.label) + ']' : '') + '</h2>';
  if (queryAudio) h += '<audio controls src="' + queryAudio + '"></audio>';
  h += '<table id="neighbours"><tr><th>#</th><th>distance</th><th>label</th><th>clip</th><th></th></tr>';
  for (const n of reply.neighbors) {
    h += '<tr class="neighbour"><td>' + n.rank + '</td><td class="num distance">' + n.distance.toFixed(4) +
      '</td><td class="label">' + esc(n.label ?? '') + '</td><td class="name">' + esc(n.name) + '</td><td>' +
      (n.audio ? '<audio controls preload="none" src="' + n.audio + '"></audio>' : '') + '</td></tr>';
  }
  h += '</table><p class="muted">' + reply.milliseconds + ' ms</p>';
  results.innerHTML = h;
}
async function search(form, queryAudio) {
  results.innerHTML = '<p class="muted">searching...</p>';
  try { render(await post("/search", new FormData(form)), queryAudio); }
  catch (e) { showError(results, e); }
}
document.getElementById("upload-form").addEventListener("submit", e => {
  e.preventDefault();
  const file = document.getElementById("file").files[0];
  if (!file) { showError(results, "choose a sound file first"); return; }
  search(e.target, URL.createObjectURL(file));
});
document.getElementById("pick-form").addEventListener("submit", e => {
  e.preventDefault();
  document.getElementById("pick-top").value = document.getElementById("top").value;
  const clip = document.getElementById("clip").value;
  search(e.target, PLAYABLE && clip !== "" ? "/clips/" + clip : null);
});
async function fill() {
  const q = encodeURIComponent(document.getElementById("filter").value);
  const reply = await (await fetch("/clips?limit=200&q=" + q)).json();
  const select = document.getElementById("clip");
  select.innerHTML = reply.clips.map(c => '<option value="' + c.clip + '">' + esc(c.name) +
    (c.label ? ' [' + esc(c.label) + ']' : '') + '</option>').join("");
}
document.getElementById("filter").addEventListener("input", fill);
fill();
"""
    script = f"const PLAYABLE = {'true' if info['playable'] else 'false'};\n" + script
    return _web.page("Audio similarity search", body, script)
