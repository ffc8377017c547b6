"""`make explore` (python -m wardrobe.explore): the wardrobe page on http://127.0.0.1:PORT/.

It serves, read-only, a fixed list of files and nothing else: the page (page/), the
decoders and data of stage `explore` (reports/explore/, or the registry's champions with
`--model champion`), and the three files of onnxruntime-web that run them (from the pinned
npm package, `make setup`). A path not on the list gets 404, whatever it climbs to; a
method other than GET and HEAD gets 405; a Host that is not this server's own name (DNS
rebinding) gets 403 (`wardrobe.ownnames`).
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from wardrobe.errors import WardrobeError
from wardrobe.fsio import project_root
from wardrobe.ownnames import refusal
from wardrobe.ports import require_free_port

log = logging.getLogger(__name__)
DEFAULT_PORT = 5002
MODELS = ("ae", "vae")
PAGE = Path(__file__).parent / "page"
DATA = Path("reports/explore")
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
    ".json": "application/json", ".onnx": "application/octet-stream",
    ".wasm": "application/wasm",
}  # fmt: skip
# The page runs its own scripts and WebAssembly and reaches only this server.
POLICY = (
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


class ExploreError(WardrobeError):
    """The page cannot be served: the line says why and what to do."""


def ort_dir() -> Path:
    """onnxruntime-web's dist/ among the web assets (`wardrobe.webassets.assets_dir`)."""
    from wardrobe.webassets import assets_dir

    return assets_dir() / "onnxruntime-web" / "dist"


def routes(data: Path) -> dict[str, Path]:
    """URL path -> file: everything the server answers; a WardrobeError for one missing."""
    table = {"/": PAGE / "index.html", "/explore.js": PAGE / "explore.js",
             "/explore.css": PAGE / "explore.css"}  # fmt: skip
    ort = ort_dir()
    for name in ORT_FILES:
        table[f"/ort/{name}"] = ort / name
    for model in MODELS:
        for suffix in (".json", ".onnx"):
            table[f"/data/{model}{suffix}"] = data / f"{model}{suffix}"
    for path in table.values():
        if not path.is_file():
            if path.parent == ort:
                fix = "install the web assets: make setup (npm ci in tools/web-assets)"
            elif path.parent == PAGE:
                fix = "restore the page's files from git"
            else:
                fix = "run `dvc repro explore` (or `dvc pull explore`), then make explore"
            raise ExploreError(f"{path}: not found; {fix}")
    return table


def champion_data(out: Path) -> Path:
    """The registry's champions' ONNX decoders and data (logged by `make promote`) in out."""
    import mlflow

    from wardrobe.promote import CHAMPION, EXPLORE_TAG, alias_version, registered_name
    from wardrobe.tracking.store import check_store, store_errors

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line, or none
    uri = check_store()
    client = mlflow.MlflowClient(tracking_uri=uri)
    for model in MODELS:
        name = registered_name(model)
        with store_errors(uri, f"could not look up {name}@{CHAMPION}"):
            champion = alias_version(client, name, CHAMPION)
        if champion is None:
            raise ExploreError(
                f"{uri} has no {name}@{CHAMPION}; promote a model first (make repro, commit "
                "dvc.lock, make promote)"
            )
        where = champion.tags.get(EXPLORE_TAG)
        if not where:
            raise ExploreError(
                f"{name} version {champion.version} (the champion) has no ONNX decoder "
                "logged; promote again with this version of the project (make promote)"
            )
        with store_errors(uri, f"could not download {name} version {champion.version}'s "
                          "ONNX decoder"):  # fmt: skip
            for suffix in (".json", ".onnx"):
                local = mlflow.artifacts.download_artifacts(
                    run_id=champion.run_id, artifact_path=f"{where}/{model}{suffix}",
                    dst_path=str(out / "download"), tracking_uri=uri,
                )  # fmt: skip
                Path(local).replace(out / f"{model}{suffix}")
        meta = json.loads((out / f"{model}.json").read_text())
        meta["version"] = str(champion.version)
        (out / f"{model}.json").write_text(json.dumps(meta, separators=(",", ":")))
    return out


def handler(table: Mapping[str, Path], port: int) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def version_string(self) -> str:
            return "wardrobe-explore"

        def _refuse(self, status: int, message: str, extra: Mapping[str, str] = {}) -> None:
            body = (message + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _serve(self) -> None:
            why = refusal(port, self.command, self.headers.get("Host"),
                          self.headers.get("Origin"))  # fmt: skip
            if why:
                return self._refuse(403, why)
            path = self.path.split("?", 1)[0].split("#", 1)[0]
            file = table.get(path)
            if file is None:
                return self._refuse(404, f"{path}: not a file of this page")
            body = file.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", TYPES.get(file.suffix, "application/octet-stream"))
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy", POLICY)
            self.send_header("Referrer-Policy", "no-referrer")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = _serve

        def _read_only(self) -> None:
            why = refusal(port, self.command, self.headers.get("Host"),
                          self.headers.get("Origin"))  # fmt: skip
            if why:
                return self._refuse(403, why)
            self._refuse(405, "the wardrobe page is read-only", {"Allow": "GET, HEAD"})

        do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _read_only

        def log_message(self, format: str, *args: Any) -> None:
            """Each request at DEBUG (WARDROBE_LOG_LEVEL=DEBUG), not on stderr: the one line
            at start says where the page is."""
            log.debug("%s %s", self.address_string(), format % args)

    return Handler


@contextlib.contextmanager
def stopping_on_signals(server: http.server.HTTPServer) -> Iterator[dict[str, int]]:
    """SIGTERM and SIGINT end serve_forever; the signal is kept in the yielded dict."""
    stopped: dict[str, int] = {}

    def stop(sig: int, frame: Any) -> None:
        stopped.setdefault("by", sig)
        import threading

        threading.Thread(target=server.shutdown, daemon=True).start()

    kept = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopped
    finally:
        for sig, old in kept.items():
            signal.signal(sig, old)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wardrobe.explore", description=__doc__)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--model", choices=("workspace", "champion"), default="workspace",
                        help="the workspace's models (stage explore) or the registry's "
                        "champions (logged by make promote)")  # fmt: skip
    parser.add_argument("--data", type=Path, default=None, help=f"default {DATA}")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wardrobe-explore-") as temp:
        try:
            require_free_port(args.port, "the wardrobe page", "EXPLORE_PORT")
            if args.model == "champion":
                data = champion_data(Path(temp))
                shown = "the registry's champions"
            else:
                data = args.data or project_root() / DATA
                shown = str(args.data or DATA)
            table = routes(data)
            try:
                server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port),
                                                         handler(table, args.port))  # fmt: skip
            except OSError as exc:  # taken since the check
                raise ExploreError(
                    f"port {args.port} on 127.0.0.1 cannot be bound ({exc}); set EXPLORE_PORT "
                    "to a free port"
                ) from None
        except WardrobeError as exc:
            print(f"explore: error: {exc}", file=sys.stderr)
            sys.exit(1)
        server.daemon_threads = True
        print(f"explore: http://127.0.0.1:{args.port}/ ({shown})", flush=True)
        with server, stopping_on_signals(server) as stopped:
            server.serve_forever(poll_interval=0.2)
    if stopped.get("by"):
        print(f"explore: stopped ({signal.Signals(stopped['by']).name})", file=sys.stderr)
        sys.exit(128 + stopped["by"])
