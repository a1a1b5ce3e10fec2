"""apps/audio_similarity `serve`: the JSON API through the standard HTTP client.

A tiny index (the shipped model, a few synthesised clips) is built once; the server runs
in a thread on a free port of 127.0.0.1 for the whole module, and every test talks to it
with `urllib.request`, as any client would. Runs on the current backend.
"""

import json
import os
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
import soundfile

from apps import _web
from apps.audio_similarity import __main__ as cli
from apps.audio_similarity import serve, synth

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAVED_MODEL = os.path.join(ROOT, "saved_models", "audio_similarity.keras")
MAX_UPLOAD = 2_000_000


def start(app):
    """Serves `app` in a daemon thread; returns `(server, base_url)`."""
    server = _web.make_server(app, port=0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, _web.server_url(server)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """2 held-out classes of the built-in data, 4 clips each, indexed with the shipped
    model through the command line."""
    root = tmp_path_factory.mktemp("serve_audio")
    held = [(s, v, name) for _, s, v, name, h in synth.class_list(4) if h]
    for s, v, name in held:
        os.makedirs(root / "data" / name)
        for i in range(4):
            soundfile.write(root / "data" / name / f"{i}.wav", synth.synthesize(s, v, i), 16000)
    index = str(root / "clips.npz")
    assert (
        cli.main(["index", str(root / "data"), "--model", SAVED_MODEL, "--out", index, "--cache-dir", ""])
        == 0
    )
    return root, index, [name for *_, name in held]


@pytest.fixture(scope="module")
def url(collection):
    app = serve.make_app(collection[1], max_upload=MAX_UPLOAD)
    server, base = start(app)
    yield base
    server.shutdown()
    server.server_close()


def call(url, path, data=None, content_type=None, method=None):
    """`(status, parsed JSON or bytes)` of one request."""
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            status, ctype, body = reply.status, reply.headers["Content-Type"], reply.read()
    except urllib.error.HTTPError as e:
        status, ctype, body = e.code, e.headers["Content-Type"], e.read()
    return status, (json.loads(body) if ctype == "application/json" else body)


def upload(url, filename, data, **fields):
    body, ctype = _web.encode_multipart(list(fields.items()), [("file", filename, data)])
    return call(url, "/search", body, ctype)


def test_page_and_info(url, collection):
    status, page = call(url, "/")
    assert status == 200 and b"<form" in page and b'id="file"' in page
    status, info = call(url, "/info")
    assert status == 200
    assert info["size"] == 8 and info["classes"] == sorted(collection[2]) and info["playable"]


def test_search_an_upload(url, collection):
    root, _, classes = collection
    path = root / "data" / classes[1] / "2.wav"
    status, reply = upload(url, "query.wav", path.read_bytes(), top="3")
    assert status == 200, reply
    neighbours = reply["neighbors"]
    assert [n["rank"] for n in neighbours] == [1, 2, 3]
    # The clip itself is indexed: it comes first, at distance ~0, with its label.
    assert neighbours[0]["name"] == "2.wav" and neighbours[0]["label"] == classes[1]
    assert neighbours[0]["distance"] < 1e-3
    distances = [n["distance"] for n in neighbours]
    assert distances == sorted(distances)
    assert reply["query"]["name"] == "query.wav"
    # Its neighbours' audio is served by number.
    status, audio = call(url, neighbours[1]["audio"])
    clip = neighbours[1]["clip"]
    assert status == 200 and audio[:4] == b"RIFF"
    assert audio == (root / "data" / neighbours[1]["label"] / neighbours[1]["name"]).read_bytes()
    assert neighbours[1]["audio"] == f"/clips/{clip}"


def test_search_an_indexed_clip_leaves_it_out(url):
    status, listing = call(url, "/clips?q=" + "3.wav")
    assert status == 200 and listing["total"] == 2
    clip = listing["clips"][0]["clip"]
    for data, ctype in (
        (json.dumps({"clip": clip, "top": 7}).encode(), "application/json"),
        (f"clip={clip}&top=7".encode(), "application/x-www-form-urlencoded"),
    ):
        status, reply = call(url, "/search", data, ctype)
        assert status == 200, reply
        assert reply["query"]["clip"] == clip
        assert len(reply["neighbors"]) == 7 and clip not in [n["clip"] for n in reply["neighbors"]]
        # The same class comes first (3 other clips of it in the index).
        label = reply["query"]["label"]
        assert [n["label"] for n in reply["neighbors"][:3]] == [label] * 3


@pytest.mark.parametrize(
    "name, data, fields, status, message",
    [
        ("empty.wav", b"", {}, 400, "empty file"),
        ("notes.txt", b"this is not audio at all" * 10, {}, 400, "not an audio file"),
        ("silent.wav", None, {}, 400, "silent"),
        ("ok.wav", "tone", {"top": "zero"}, 400, "top must be an integer"),
        ("ok.wav", "tone", {"top": "1000"}, 400, "top must be between"),
        ("big.wav", b"\0" * (MAX_UPLOAD + 1), {}, 413, "too large"),
    ],
)
def test_bad_uploads_get_a_4xx_and_a_message(url, tmp_path, name, data, fields, status, message):
    if data is None or data == "tone":
        path = tmp_path / name
        y = np.zeros(16000, np.float32) if data is None else np.sin(np.arange(16000) / 5).astype(np.float32)
        soundfile.write(path, y, 16000)
        data = path.read_bytes()
    got, reply = upload(url, name, data, **fields)
    assert got == status and message in reply["error"], reply
    # The server is still there.
    assert call(url, "/info")[0] == 200


@pytest.mark.parametrize(
    "method, path, data, ctype, status, message",
    [
        ("POST", "/search", b"", None, 400, "send a sound file"),
        ("POST", "/search", b'{"clip": 999}', "application/json", 404, "no clip 999"),
        ("POST", "/search", b"{not json", "application/json", 400, "not valid JSON"),
        ("POST", "/search", b"x", "text/plain", 415, "unsupported Content-Type"),
        ("GET", "/search", None, None, 405, "use POST"),
        ("GET", "/clips/abc", None, None, 400, "a clip is a number"),
        ("GET", "/clips/-1", None, None, 404, "no clip -1"),
        ("GET", "/nowhere", None, None, 404, "no such page"),
    ],
)
def test_bad_requests(url, method, path, data, ctype, status, message):
    got, reply = call(url, path, data, ctype, method)
    assert got == status and message in reply["error"], reply


def test_serve_refuses_an_index_of_another_model(collection, tmp_path):
    from keras_triplet.index import EmbeddingIndex

    index = EmbeddingIndex()
    index.add(np.eye(3, dtype=np.float32), labels=["a", "b", "c"])
    path = str(tmp_path / "other.npz")
    index.save(path)
    with pytest.raises(SystemExit, match="3-dimensional"):
        serve.make_app(path, SAVED_MODEL)


def test_cli_serve_help(capsys):
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "--index" in out and "--port" in out and "127.0.0.1" in out


def test_page_in_headless_chromium(url, collection, tmp_path):
    """Upload a clip on the page, read its neighbours off the page; pick an indexed clip;
    a file that is not audio shows the server's message."""
    from serve_browser import chromium, find, find_all, screenshot, wait_for

    root, _, classes = collection
    junk = tmp_path / "notes.txt"
    junk.write_text("not audio")
    with chromium() as driver:
        driver.get(url + "/")
        wait_for(driver, "#clip option")  # the page has listed the index
        find(driver, "#file").send_keys(str(root / "data" / classes[0] / "1.wav"))
        top = find(driver, "#top")
        top.clear()
        top.send_keys("4")
        find(driver, "#search-upload").click()
        wait_for(driver, "#neighbours")
        rows = find_all(driver, "tr.neighbour")
        assert len(rows) == 4
        first = rows[0]
        assert first.find_element("css selector", ".name").text == "1.wav"
        assert first.find_element("css selector", ".label").text == classes[0]
        assert float(first.find_element("css selector", ".distance").text) < 1e-3
        assert len(find_all(driver, "tr.neighbour audio")) == 4  # each neighbour can be played
        screenshot(driver, "audio_similarity")

        find(driver, "#search-clip").click()  # the first indexed clip, itself left out
        wait_for(driver, "#query-name")
        first_clip = find(driver, "#clip option").text
        assert find(driver, "#query-name").text == first_clip.split(" [")[0]
        assert first_clip.split(" [")[0] not in [e.text for e in find_all(driver, "tr.neighbour .name")]

        find(driver, "#file").send_keys(str(junk))
        find(driver, "#search-upload").click()
        assert "not an audio file" in wait_for(driver, "#error").text
