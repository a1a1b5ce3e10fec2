"""apps/signature_verification `serve`: the JSON API through the standard HTTP client.

The server (the shipped model) runs in a thread on a free port of 127.0.0.1 for the
whole module; the signatures are generated in memory (two writers). Runs on the current
backend.
"""

import contextlib
import io
import json
import os
import threading
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
from PIL import Image

from apps import _web
from apps.signature_verification import serve
from apps.signature_verification.synthetic import generate_writer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAVED_MODEL = os.path.join(ROOT, "saved_models", "signature_verification.keras")
MAX_UPLOAD = 2_000_000


def png(array):
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def signatures():
    """`{writer: {"genuine": [png bytes], "forged": [png bytes]}}` of two generated writers."""
    out = {}
    for w in (0, 1):
        images = generate_writer(w, genuine_per_writer=6, forgeries_per_writer=2, seed=0)
        out[w] = {
            "genuine": [png(s.image) for s in images if s.genuine],
            "forged": [png(s.image) for s in images if not s.genuine],
        }
    return out


def start(app):
    server = _web.make_server(app, port=0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, _web.server_url(server)


@pytest.fixture(scope="module")
def profiles_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("profiles")


@pytest.fixture(scope="module")
def url(profiles_dir):
    server, base = start(serve.make_app(SAVED_MODEL, str(profiles_dir), max_upload=MAX_UPLOAD))
    yield base
    server.shutdown()
    server.server_close()


def call(url, path, data=None, content_type=None, method=None):
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            status, ctype, body = reply.status, reply.headers["Content-Type"], reply.read()
    except urllib.error.HTTPError as e:
        status, ctype, body = e.code, e.headers["Content-Type"], e.read()
    return status, (json.loads(body) if ctype == "application/json" else body)


def form(url, path, fields=(), files=()):
    body, ctype = _web.encode_multipart(fields, files)
    return call(url, path, body, ctype)


@pytest.fixture(scope="module")
def alice(url, signatures):
    """Writer 0 enrolled as "alice" from 4 genuine signatures (and one file that is not
    an image, skipped)."""
    files = [("images", f"g{i}.png", data) for i, data in enumerate(signatures[0]["genuine"][:4])]
    files.append(("images", "notes.txt", b"not an image"))
    status, reply = form(url, "/enroll", [("writer", "alice")], files)
    assert status == 200, reply
    return reply


def test_page_and_info(url):
    status, page = call(url, "/")
    assert status == 200 and b'id="enroll-form"' in page and b'id="verify-form"' in page
    status, info = call(url, "/info")
    meta = json.load(open(SAVED_MODEL + ".json"))
    assert info["threshold"] == pytest.approx(meta["threshold"]) and info["image_size"] == meta["image_size"]


def test_enroll(alice, url, profiles_dir):
    assert alice["writer"] == "alice" and alice["references"] == 4
    assert alice["skipped"] == [{"file": "notes.txt", "reason": alice["skipped"][0]["reason"]}]
    assert "not an image file" in alice["skipped"][0]["reason"]
    status, listing = call(url, "/profiles")
    assert [p["writer"] for p in listing["profiles"]] == ["alice"]
    status, profile = call(url, "/profiles/alice")
    assert status == 200 and len(profile["references"]) == 4
    assert profile["files"] == ["g0.png", "g1.png", "g2.png", "g3.png"]
    # Kept on disk, in the format `enroll` writes.
    assert json.load(open(profiles_dir / "alice.json")) == profile


def test_verify_genuine_forgery_and_other_writer(alice, url, signatures):
    results = {}
    for kind, data in (
        ("genuine", signatures[0]["genuine"][5]),
        ("forged", signatures[0]["forged"][0]),
        ("other", signatures[1]["genuine"][0]),
    ):
        status, r = form(url, "/verify", [("writer", "alice")], [("image", f"{kind}.png", data)])
        assert status == 200, r
        assert r["accepted"] is (r["distance"] <= r["threshold"])
        assert r["decision"] == ("genuine" if r["accepted"] else "forgery")
        assert r["writer"] == "alice" and r["references"] == 4
        results[kind] = r
    # Any working model: another writer's signature is further than a genuine one.
    assert results["genuine"]["distance"] < results["other"]["distance"]


def test_verify_against_an_uploaded_profile_and_the_command_line(
    alice, url, signatures, profiles_dir, tmp_path
):
    from apps.signature_verification.__main__ import main

    image = signatures[0]["forged"][1]
    _, by_name = form(url, "/verify", [("writer", "alice")], [("image", "q.png", image)])
    _, profile = call(url, "/profiles/alice")
    _, by_file = form(
        url,
        "/verify",
        files=[("image", "q.png", image), ("profile", "alice.json", json.dumps(profile).encode())],
    )
    assert by_file["distance"] == pytest.approx(by_name["distance"], abs=1e-6)
    # The stored profile works with `verify` on the command line: same distance.
    (tmp_path / "q.png").write_bytes(image)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert (
            main(["verify", str(tmp_path / "q.png"), "--profile", str(profiles_dir / "alice.json"), "--json"])
            == 0
        )
    assert json.loads(out.getvalue())["distance"] == pytest.approx(by_name["distance"], abs=1e-5)


def test_profiles_are_read_back_at_start(alice, profiles_dir):
    app = serve.make_app(SAVED_MODEL, str(profiles_dir))
    assert app.service.info()["writers"] == ["alice"]


def blank_png():
    return png(np.full((40, 80), 255))


@pytest.mark.parametrize(
    "path, fields, files, status, message",
    [
        ("/enroll", [("writer", "bob")], [], 400, "send the writer's genuine signatures"),
        ("/enroll", [("writer", "../etc")], [("images", "a.png", "ok")], 400, "writer must be a name"),
        ("/enroll", [("writer", "bob")], [("images", "e.png", b"")], 400, "empty file"),
        ("/enroll", [("writer", "bob")], [("images", "b.png", "blank")], 400, "blank image"),
        (
            "/enroll",
            [("writer", "bob")],
            [("images", "x.png", b"\x89PNG broken")],
            400,
            "not a readable image",
        ),
        ("/verify", [("writer", "alice")], [], 400, "send the questioned signature"),
        ("/verify", [], [("image", "a.png", "ok")], 400, "name an enrolled writer"),
        ("/verify", [("writer", "nobody")], [("image", "a.png", "ok")], 404, "no enrolled writer"),
        ("/verify", [("writer", "alice")], [("image", "a.pdf", b"%PDF-1.4")], 400, "not an image file"),
        ("/verify", [], [("image", "a.png", "ok"), ("profile", "p.json", b"{]")], 400, "invalid JSON"),
        (
            "/verify",
            [],
            [
                ("image", "a.png", "ok"),
                ("profile", "p.json", b'{"format": "keras-triplet/signature-profile/1"}'),
            ],
            400,
            "enrolled with another model",
        ),
        (
            "/verify",
            [("writer", "alice")],
            [("image", "big.png", b"\0" * (MAX_UPLOAD + 1))],
            413,
            "too large",
        ),
    ],
)
def test_bad_requests_get_a_4xx_and_a_message(alice, url, signatures, path, fields, files, status, message):
    stand_ins = {"ok": signatures[1]["genuine"][1], "blank": blank_png()}
    files = [(n, f, stand_ins.get(d, d) if isinstance(d, str) else d) for n, f, d in files]
    got, reply = form(url, path, fields, files)
    assert got == status and message in reply["error"], reply
    assert call(url, "/info")[0] == 200  # still serving


def test_unknown_profile_and_method(url):
    assert call(url, "/profiles/" + urllib.parse.quote("no one"))[0] == 404
    status, reply = call(url, "/enroll")
    assert status == 405 and "use POST" in reply["error"]


def test_cli_serve_help(capsys):
    from apps.signature_verification.__main__ import main

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "--model" in out and "--profiles" in out and "127.0.0.1" in out


def test_page_in_headless_chromium(url, signatures, tmp_path):
    """Enrol a writer from files on the page, verify a signature, read the decision,
    distance and threshold off the page; an empty file shows the server's message."""
    from serve_browser import chromium, find, screenshot, wait_for

    paths = []
    for i, data in enumerate(signatures[1]["genuine"]):
        paths.append(tmp_path / f"genuine_{i + 1}.png")
        paths[-1].write_bytes(data)
    forged = tmp_path / "questioned.png"
    forged.write_bytes(signatures[1]["forged"][0])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with chromium() as driver:
        driver.get(url + "/")
        find(driver, "#writer").send_keys("writer 2")
        find(driver, "#images").send_keys("\n".join(str(p) for p in paths[:5]))
        find(driver, "#enroll").click()
        assert "with 5 reference signature(s)" in wait_for(driver, "#enrolled").text
        wait_for(driver, "#verify-writer option[selected]")
        find(driver, "#image").send_keys(str(forged))
        find(driver, "#verify").click()
        decision = wait_for(driver, "#decision").text
        distance = float(find(driver, "#distance").text)
        threshold = float(find(driver, "#threshold").text)
        assert decision == ("ACCEPT: genuine" if distance <= threshold else "REJECT: forgery")
        _, reply = form(url, "/verify", [("writer", "writer 2")], [("image", "q.png", forged.read_bytes())])
        assert distance == pytest.approx(reply["distance"], abs=1e-4)
        assert threshold == pytest.approx(reply["threshold"], abs=1e-4)
        screenshot(driver, "signature_verification")

        find(driver, "#image").send_keys(str(empty))
        find(driver, "#verify").click()
        assert "empty file" in wait_for(driver, "#verify-result #error").text
