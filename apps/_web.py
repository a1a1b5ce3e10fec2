"""The web plumbing both apps' `serve` commands share: routing, form and upload parsing,
JSON replies, a request size cap, and a threaded server on localhost.

Standard library only (`http.server`, `email.parser` for `multipart/form-data`): a page
and a small JSON API need no framework, and the apps' install extras stay as they are.

An app is a `WebApp` with handlers registered per method and path; a handler takes a
`Request` and returns a dict or list (sent as JSON), a `Response`, or raises
`HTTPError(status, message)`, sent as `{"error": message}` with that status. Anything
else a handler raises is answered with a 500 and logged: one bad request never stops
the server. Bodies larger than `max_body` bytes are refused (413) before they are read.

Example:

>>> app = WebApp("demo")
>>> @app.route("GET", "/hello/<name>")
... def hello(request, name):
...     return {"hello": name}
>>> server = make_server(app, port=0)  # port 0: any free port
>>> import json, threading, urllib.request
>>> thread = threading.Thread(target=server.serve_forever, daemon=True); thread.start()
>>> with urllib.request.urlopen(server_url(server) + "/hello/you") as reply:
...     json.load(reply)
{'hello': 'you'}
>>> server.shutdown(); server.server_close()
"""

import dataclasses
import email.parser
import email.policy
import html
import json
import os
import re
import sys
import threading
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from apps._common import log

DEFAULT_HOST = "127.0.0.1"  # localhost only: these pages are for the person at the machine
DEFAULT_PORT = 8000
DEFAULT_MAX_BODY = 20 * 1000 * 1000  # an upload larger than this is refused (413)
DRAIN_LIMIT = 1 << 30  # a refused body up to this size is read (and dropped) before the reply


def add_server_arguments(parser):
    """`--host`, `--port` and `--max-upload-mb`, the options of every `serve` command."""
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on (default {DEFAULT_HOST}: this machine only)",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free port)"
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=DEFAULT_MAX_BODY / 1e6,
        help=f"largest accepted request in MB (default {DEFAULT_MAX_BODY / 1e6:g})",
    )


class HTTPError(Exception):
    """A request the server refuses: `status` (4xx) and a one-line message for the user."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = int(status)
        self.message = str(message)


@dataclasses.dataclass
class Upload:
    """One uploaded file of a form: its name as the browser sent it and its bytes."""

    filename: str
    data: bytes
    content_type: str = "application/octet-stream"


@dataclasses.dataclass
class Response:
    """A reply that is not JSON (a page, an audio file)."""

    body: bytes
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    headers: dict = dataclasses.field(default_factory=dict)


class Request:
    """What a handler sees: `method`, `path`, `query` (dict of lists), `headers`, `body`
    (bytes) and, parsed on first use, `form` (`{name: [str or Upload, ...]}`)."""

    def __init__(self, method, target, headers, body):
        url = urllib.parse.urlsplit(target)
        self.method = method
        self.path = url.path
        self.query = urllib.parse.parse_qs(url.query)
        self.headers = headers
        self.body = body
        self._form = None

    @property
    def form(self):
        if self._form is None:
            self._form = parse_form(self.headers.get("Content-Type", ""), self.body)
        return self._form

    def field(self, name, default=None):
        """The first text value of form field (or query parameter) `name`, or `default`."""
        for value in self.form.get(name, []) + self.query.get(name, []):
            if isinstance(value, str):
                return value
        return default

    def files(self, name):
        """The non-empty uploads of form field `name` (a browser sends an empty part
        when no file was chosen)."""
        return [v for v in self.form.get(name, []) if isinstance(v, Upload) and (v.filename or v.data)]

    def int_field(self, name, default, low, high):
        """Form field `name` as an int in `[low, high]`; a 400 when it is not one."""
        text = self.field(name)
        if text is None or text == "":
            return default
        try:
            value = int(text)
        except ValueError:
            raise HTTPError(400, f"{name} must be an integer; got {text!r}.") from None
        if not low <= value <= high:
            raise HTTPError(400, f"{name} must be between {low} and {high}; got {value}.")
        return value


def parse_form(content_type, body):
    """`{name: [value, ...]}` of a form body: `multipart/form-data` (files become
    `Upload`s), `application/x-www-form-urlencoded` or a JSON object (values as sent)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if not body:
        return {}
    if kind == "multipart/form-data":
        return _parse_multipart(content_type, body)
    if kind == "application/x-www-form-urlencoded":
        try:
            return urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise HTTPError(400, "the form is not valid UTF-8.") from None
    if kind == "application/json":
        try:
            obj = json.loads(body)
        except ValueError as e:
            raise HTTPError(400, f"the body is not valid JSON ({e}).") from None
        if not isinstance(obj, dict):
            raise HTTPError(400, "the JSON body must be an object.")
        return {k: [v if isinstance(v, str) else json.dumps(v)] for k, v in obj.items()}
    raise HTTPError(
        415,
        f"unsupported Content-Type {kind or '(none)'!r}; send multipart/form-data, "
        "application/x-www-form-urlencoded or application/json.",
    )


def _parse_multipart(content_type, body):
    if "boundary=" not in content_type:
        raise HTTPError(400, "multipart/form-data without a boundary.")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise HTTPError(400, "could not parse the multipart/form-data body.")
    form = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name is None:
            continue
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            value = Upload(filename, payload, part.get_content_type())
        else:
            value = payload.decode(part.get_content_charset() or "utf-8", errors="replace")
        form.setdefault(name, []).append(value)
    return form


def encode_multipart(fields=(), files=()):
    """`(body, content_type)` of a `multipart/form-data` form: `fields` `(name, text)`
    pairs, `files` `(name, filename, bytes)` triples. What a browser sends; for clients
    and tests.

    >>> body, ctype = encode_multipart([("top", "3")], [("file", "a.wav", b"RIFF")])
    >>> form = parse_form(ctype, body)
    >>> form["top"], form["file"][0].filename, form["file"][0].data
    (['3'], 'a.wav', b'RIFF')
    """
    boundary = "----keras-triplet-" + os.urandom(12).hex()
    out = []
    for name, value in fields:
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
        out.append(str(value).encode("utf-8") + b"\r\n")
    for name, filename, data in files:
        out.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        out.append(bytes(data) + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


class WebApp:
    """Routes (method, path pattern) to handlers; `<name>` in a pattern matches one path
    segment and is passed to the handler as a keyword argument."""

    def __init__(self, name, max_body=DEFAULT_MAX_BODY):
        self.name = name
        self.max_body = int(max_body)
        self.routes = []
        # Models are called under this lock: one inference at a time keeps memory
        # bounded and avoids relying on each backend's thread safety.
        self.lock = threading.Lock()

    def route(self, method, pattern):
        regex = re.compile("^" + re.sub(r"<(\w+)>", r"(?P<\1>[^/]+)", pattern) + "$")

        def register(handler):
            self.routes.append((method, regex, handler))
            return handler

        return register

    def handle(self, request):
        """`(status, content_type, body, headers)` of the reply to `request`."""
        try:
            allowed = []
            for method, regex, handler in self.routes:
                match = regex.match(request.path)
                if match is None:
                    continue
                if method != request.method:
                    allowed.append(method)
                    continue
                result = handler(request, **match.groupdict())
                return _reply(result)
            if allowed:
                raise HTTPError(405, f"{request.method} is not allowed on {request.path}; use {allowed[0]}.")
            raise HTTPError(404, f"no such page: {request.path}")
        except HTTPError as e:
            return _reply({"error": e.message}, e.status)
        except Exception as e:  # noqa: BLE001 - one bad request must not stop the server
            traceback.print_exc(file=sys.stderr)
            return _reply({"error": f"internal error ({type(e).__name__}: {e})"}, 500)


def _reply(result, status=200):
    if isinstance(result, Response):
        return result.status, result.content_type, result.body, result.headers
    body = json.dumps(result, default=_jsonable).encode("utf-8")
    return status, "application/json", body, {}


def _jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _discard(stream, length, block=1 << 16):
    while length > 0:
        chunk = stream.read(min(block, length))
        if not chunk:
            return
        length -= len(chunk)


def _handler_class(app):
    class Handler(BaseHTTPRequestHandler):
        server_version = f"keras-triplet-{app.name}"
        protocol_version = "HTTP/1.1"

        def _serve(self):
            body = b""
            length = self.headers.get("Content-Length")
            if length is not None:
                try:
                    length = int(length)
                except ValueError:
                    return self._send(_reply({"error": "bad Content-Length."}, 400), close=True)
                if length > app.max_body:
                    # Refused without keeping it: the body is read and dropped in blocks
                    # (a client that is cut off mid-send sees a broken pipe, not the
                    # message), unless it is absurdly large; then the connection closes.
                    if length <= DRAIN_LIMIT:
                        _discard(self.rfile, length)
                    return self._send(
                        _reply(
                            {
                                "error": f"the upload is too large ({length / 1e6:.1f} MB); "
                                f"the limit is {app.max_body / 1e6:.0f} MB."
                            },
                            413,
                        ),
                        close=True,
                    )
                body = self.rfile.read(length)
            elif self.headers.get("Transfer-Encoding"):
                return self._send(_reply({"error": "send a Content-Length (no chunked uploads)."}, 411), True)
            request = Request(self.command, self.path, self.headers, body)
            self._send(app.handle(request))

        def _send(self, reply, close=False):
            status, content_type, body, headers = reply
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for key, value in headers.items():
                self.send_header(key, value)
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format, *args):
            log(f"{self.address_string()} {format % args}")

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client never keeps the process alive at exit


def make_server(app, host=DEFAULT_HOST, port=DEFAULT_PORT, quiet=False):
    """A threaded HTTP server of `app` bound to `host:port` (port 0: a free port); call
    `serve_forever()` on it (and `shutdown()` from another thread)."""
    handler = _handler_class(app)
    if quiet:
        handler.log_message = lambda *a, **k: None
    try:
        return _Server((host, port), handler)
    except OSError as e:
        raise SystemExit(f"error: cannot listen on {host}:{port} ({e.strerror or e}).") from None


def server_url(server):
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


def run(app, host=DEFAULT_HOST, port=DEFAULT_PORT):
    """Serves `app` until Ctrl-C."""
    server = make_server(app, host, port)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log(f"warning: listening on {host}: anyone who can reach this machine can use the page.")
    log(f"serving {app.name} on {server_url(server)}/ (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log("stopped")
    finally:
        server.server_close()
    return 0


def page(title, body, script="", style=""):
    """A whole HTML page: the shared look, `body` (HTML) and `script` (JavaScript)."""
    return Response(
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{BASE_STYLE}{style}</style></head>
<body><h1>{html.escape(title)}</h1>
{body}
<script>{BASE_SCRIPT}{script}</script>
</body></html>
""".encode()
    )


BASE_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 1.5rem auto; padding: 0 1rem;
       color: #222; background: #fff; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 1.5rem; }
form { border: 1px solid #ccc; border-radius: 6px; padding: 0.8rem 1rem; margin: 0.6rem 0; }
label { margin-right: 1rem; } button { padding: 0.3rem 1rem; }
table { border-collapse: collapse; margin-top: 0.5rem; width: 100%; }
th, td { text-align: left; padding: 0.25rem 0.6rem; border-bottom: 1px solid #eee; }
td.num { font-variant-numeric: tabular-nums; }
.error { color: #b00020; font-weight: 600; }
.accept { color: #0a7a2f; font-weight: 700; } .reject { color: #b00020; font-weight: 700; }
.muted { color: #666; font-size: 0.9rem; }
"""

# post(form, url): sends a form with fetch and returns the JSON reply, or throws an Error
# holding the server's message; esc(text): text made safe to put in HTML.
BASE_SCRIPT = """
async function post(url, data) {
  const reply = await fetch(url, {method: "POST", body: data});
  let json = null;
  try { json = await reply.json(); } catch (e) { throw new Error("HTTP " + reply.status); }
  if (!reply.ok) throw new Error(json.error || ("HTTP " + reply.status));
  return json;
}
function esc(text) {
  return String(text).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
    '"': "&quot;", "'": "&#39;"}[c]));
}
function showError(element, error) {
  element.innerHTML = '<p class="error" id="error">' + esc(error.message || error) + '</p>';
}
"""
