"""`gendistill demo-web BUNDLE`: serve the mobile demo (mobile_demo/) and a bundle on 127.0.0.1.

The page runs the student in the browser (onnxruntime-web + sentencepiece compiled to wasm); this
server only hands out static files. It serves an allowlist, never a directory listing, and sets:
- COOP/COEP, so the page is cross-origin isolated: performance.now() then has fine resolution
  (the latency the page reports is sub-millisecond) and wasm threads would be allowed;
- `application/wasm`, without which browsers refuse streaming wasm compilation;
- `no-cache`, so a re-exported bundle is picked up; the service worker keeps copies for offline use.

Only the standard library and click: importing this never imports torch or onnx.
"""

from __future__ import annotations

import logging
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import click

from gendistill.runtime.bundle import LAYOUT, load_manifest
from gendistill.runtime.errors import GendistillError

log = logging.getLogger(__name__)

APP_DIR = Path(__file__).resolve().parent.parent / "mobile_demo"
APP_FILES = ("index.html", "app.js", "style.css", "sw.js", "manifest.webmanifest", "icon.svg", "shims/fs.js", "shims/buffer.js")
# URL path under /vendor/ -> file under mobile_demo/node_modules (only what the page loads).
VENDOR_FILES = {
    "ort/ort.wasm.min.mjs": "onnxruntime-web/dist/ort.wasm.min.mjs",
    "ort/ort-wasm-simd-threaded.mjs": "onnxruntime-web/dist/ort-wasm-simd-threaded.mjs",
    "ort/ort-wasm-simd-threaded.wasm": "onnxruntime-web/dist/ort-wasm-simd-threaded.wasm",
    "sentencepiece.js": "@sctg/sentencepiece-js/dist/index.js",
}
BUNDLE_FILES = (LAYOUT.manifest, LAYOUT.model, LAYOUT.tokenizer, LAYOUT.labels, LAYOUT.golden)
MIME_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".jsonl": "application/jsonl; charset=utf-8",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
    ".onnx": "application/octet-stream",
    ".model": "application/octet-stream",
}


def demo_routes(bundle_dir: str | Path, app_dir: str | Path | None = None) -> dict[str, Path]:
    """URL path -> file for everything the demo page may request; checks that each file exists."""
    bundle_dir, app_dir = Path(bundle_dir), Path(app_dir or APP_DIR)
    load_manifest(bundle_dir)  # a damaged bundle fails here, in one sentence, not as a broken page
    node_modules = app_dir / "node_modules"
    if not node_modules.is_dir():
        raise GendistillError(f"{node_modules} is missing; run `npm ci` in {app_dir} once to install the demo's browser libraries.")
    routes = {"/": app_dir / "index.html"}
    routes.update({f"/{name}": app_dir / name for name in APP_FILES})
    routes.update({f"/vendor/{url}": node_modules / path for url, path in VENDOR_FILES.items()})
    routes.update({f"/bundle/{name}": bundle_dir / name for name in BUNDLE_FILES})
    missing = [str(path) for path in routes.values() if not path.is_file()]
    if missing:
        raise GendistillError(f"The demo needs {', '.join(missing)}; run `npm ci` in {app_dir} (or restore the checkout) and retry.")
    return routes


class _DemoHandler(SimpleHTTPRequestHandler):
    routes: dict[str, Path] = {}
    # HTTP/1.0 (one request per connection): the page loads ~16 files once, and a stopped server then
    # really is gone, with no kept-alive connection still answering (the offline test relies on it).
    protocol_version = "HTTP/1.0"
    disable_nagle_algorithm = True  # small responses are not held back ~45 ms waiting for an ACK

    def send_head(self):
        path = self.routes.get(self.path.split("?", 1)[0].split("#", 1)[0])
        if path is None:
            self.send_error(404, "Not in the demo")
            return None
        body = open(path, "rb")
        self.send_response(200)
        self.send_header("Content-Type", MIME_TYPES.get(path.suffix, "application/octet-stream"))
        self.send_header("Content-Length", str(path.stat().st_size))
        self.end_headers()
        return body

    def end_headers(self):
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format, *args):
        log.debug("%s - %s", self.address_string(), format % args)


def make_demo_server(bundle_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, app_dir: str | Path | None = None) -> ThreadingHTTPServer:
    """A server (not yet serving) for the demo and `bundle_dir`; port 0 picks a free port."""
    handler = type("DemoHandler", (_DemoHandler,), {"routes": demo_routes(bundle_dir, app_dir)})
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise GendistillError(f"Cannot listen on {host}:{port} ({exc.strerror}); pass another --port (0 picks a free one).") from None
    server.daemon_threads = True
    return server


def server_url(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/"


def start_demo_server(bundle_dir: str | Path, host: str = "127.0.0.1", port: int = 0, app_dir: str | Path | None = None) -> tuple[ThreadingHTTPServer, str]:
    """Serve in a background thread (for tests and notebooks); `server.shutdown()` then `server_close()` stop it."""
    server = make_demo_server(bundle_dir, host, port, app_dir)
    threading.Thread(target=server.serve_forever, name="gendistill-demo-web", daemon=True).start()
    return server, server_url(server)


@click.command("demo-web")
@click.argument("bundle", type=click.Path(file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port; 0 picks a free one.")
def demo_web(bundle: Path, host: str, port: int):
    """Serve the mobile demo with BUNDLE: the student runs in the browser, on the device."""
    server = make_demo_server(bundle, host, port)
    click.echo(f"Mobile demo of {bundle} at {server_url(server)} (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
