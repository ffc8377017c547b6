"""`make serve` (python -m wardrobe.serve): the champion decoder over REST on 127.0.0.1.

It serves `models:/wardrobe-<model>-decoder@champion` from the project's tracking store with
MLflow's scoring server (its `/invocations`, `/ping`, `/health` and `/version`), in this
process, behind a guard:

    curl -s http://127.0.0.1:5001/invocations -H 'Content-Type: application/json' \\
        -d '{"inputs": [[0.0, 0.0], [1.5, -0.5]]}'

answers {"predictions": [...]}, one 32x32x1 image of pixel values in [0, 1] per latent vector.

The guard answers only its own names (Host 127.0.0.1:PORT or localhost:PORT, no write from
another origin: 403) and checks each request before the model sees it, with one line
{"error_code": ..., "message": ...} for each refusal: JSON only (415); a body over the limit
(413); not {"inputs": [[...], ...]} (400); a vector of the wrong size, naming the decoder's
input shape (400); more vectors than the limit (413); a value that is not finite or lies
beyond ±LATENT_LIMIT (422). The limits come from the memory free at start, as a training's
batch check does (wardrobe.memory): one request may take a share of it, at most
PREDICTIONS_AT_ONCE run at once, and uvicorn refuses connections past CONNECTIONS (503), so the
server's memory stays bounded under a burst (bench/serve_memory.py). SIGTERM or Ctrl-C stops
it within seconds: the requests in flight finish, then it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from wardrobe.errors import WardrobeError
from wardrobe.ownnames import refusal
from wardrobe.ports import require_free_port
from wardrobe.promote import CHAMPION, MODELS, alias_version, registered_name

DEFAULT_PORT = 5001
# Far beyond any code the encoders give (the test set's lie within a few tens of 0), near
# enough that the decoder's float32 layers cannot overflow into NaN pixels.
LATENT_LIMIT = 1e4
REQUEST_SHARE = 1 / 16  # of the memory free at start, for one request
REQUEST_BYTES_CAP = 512 * 2**20
PREDICTIONS_AT_ONCE = 2
CONNECTIONS = 32
JSON_BYTES_PER_VALUE = 32  # "-1.2345678901234567, " with room to spare
DRAIN_BYTES = 64 * 2**20  # of a refused body, read and dropped so that its client gets the 413
# An output value as MLflow answers it: a Python float in a list (24 + 8 bytes) and its JSON
# text (about 20), besides the float32 the decoder makes.
OUTPUT_BYTES_PER_VALUE = 4 + 32 + 24


class Refused(Exception):
    """A request the guard answers itself: an HTTP status and one line."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Limits:
    latent_dim: int
    max_vectors: int
    max_body: int

    @classmethod
    def for_decoder(cls, decoder: Any, free: int) -> Limits:
        """What one request may carry: the vectors whose decoding (every layer's outputs,
        float32, and the answer as MLflow writes it) fits in REQUEST_SHARE of `free`."""
        from wardrobe.memory import BYTES_PER_VALUE, INFERENCE_FACTOR, layer_values

        latent_dim = int(decoder.inputs[0].shape[-1])
        outputs = math.prod(int(d) for d in decoder.outputs[0].shape[1:])
        per_vector = (
            BYTES_PER_VALUE * INFERENCE_FACTOR * layer_values(decoder)
            + OUTPUT_BYTES_PER_VALUE * outputs
        )
        budget = min(free * REQUEST_SHARE, REQUEST_BYTES_CAP)
        max_vectors = max(1, int(budget // per_vector))
        return cls(latent_dim, max_vectors, max_vectors * latent_dim * JSON_BYTES_PER_VALUE + 4096)

    def vectors(self, body: bytes) -> list[list[float]]:
        """The latent vectors of a request body, or Refused saying what is wrong with it."""

        def not_a_number(constant: str) -> float:
            raise Refused(
                422,
                "INVALID_PARAMETER_VALUE",
                f"latent values must be finite numbers; got {constant}",
            )

        try:
            payload = json.loads(body, parse_constant=not_a_number)
        except ValueError as exc:
            raise Refused(400, "BAD_REQUEST", f"the body is not JSON ({exc})") from None
        shape = f"(-1, {self.latent_dim})"
        expected = f'send {{"inputs": [[z1, ..., z{self.latent_dim}], ...]}}'
        if not isinstance(payload, dict) or set(payload) not in ({"inputs"}, {"instances"}):
            raise Refused(400, "BAD_REQUEST", f"{expected}: one key, inputs")
        rows = next(iter(payload.values()))
        if not isinstance(rows, list) or not rows:
            raise Refused(400, "BAD_REQUEST", f"{expected}: a non-empty list of vectors")
        if len(rows) > self.max_vectors:
            raise Refused(
                413, "RESOURCE_LIMIT_EXCEEDED",
                f"at most {self.max_vectors} latent vectors a request (from the memory free "
                f"at start); got {len(rows)}: send them in several requests",
            )  # fmt: skip
        for row in rows:
            if not isinstance(row, list) or len(row) != self.latent_dim:
                size = len(row) if isinstance(row, list) else type(row).__name__
                raise Refused(
                    400, "BAD_REQUEST",
                    f"each latent vector has {self.latent_dim} values (the decoder's input, "
                    f"shape {shape}); got {size}",
                )  # fmt: skip
            for value in row:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise Refused(400, "BAD_REQUEST", f"latent values are numbers; got {value!r}")
                if not math.isfinite(value) or abs(value) > LATENT_LIMIT:
                    raise Refused(
                        422, "INVALID_PARAMETER_VALUE",
                        f"latent values must be finite and within ±{LATENT_LIMIT:g}; got "
                        f"{value!r}",
                    )  # fmt: skip
        return rows


async def _drain(receive: Callable, read: int) -> None:
    """Read what is left of a body that is refused, up to DRAIN_BYTES in all, without keeping
    it: a client still sending when the server closes gets a reset, not the 413 that says why."""
    while read <= DRAIN_BYTES:
        message = await receive()
        read += len(message.get("body", b""))
        if message["type"] == "http.disconnect" or not message.get("more_body"):
            return


async def _answer(send: Callable, status: int, code: str, message: str) -> None:
    body = json.dumps({"error_code": code, "message": message}).encode()
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware in front of MLflow's scoring server: the server's own names, then, for
    /invocations, the request's limits; at most PREDICTIONS_AT_ONCE predictions at once."""

    def __init__(self, app: Any, port: int, limits: Limits) -> None:
        self.app, self.port, self.limits = app, port, limits
        self._busy: asyncio.Semaphore | None = None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        why = refusal(self.port, scope["method"], headers.get("host"), headers.get("origin"))
        if why is not None:
            return await _answer(send, 403, "PERMISSION_DENIED", why)
        if scope["path"] != "/invocations" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        try:
            media = headers.get("content-type", "").split(";")[0].strip().lower()
            if media != "application/json":
                raise Refused(
                    415, "BAD_REQUEST",
                    f"send the latent vectors as JSON (Content-Type: application/json); got "
                    f"{media or 'no Content-Type'}",
                )  # fmt: skip
            body = await self._body(headers.get("content-length"), receive)
            self.limits.vectors(body)
        except Refused as refused:
            return await _answer(send, refused.status, refused.code, refused.message)
        if self._busy is None:
            self._busy = asyncio.Semaphore(PREDICTIONS_AT_ONCE)
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async with self._busy:
            await self.app(scope, replay, send)

    async def _body(self, length: str | None, receive: Callable) -> bytes:
        limit = self.limits.max_body
        too_large = Refused(
            413, "RESOURCE_LIMIT_EXCEEDED",
            f"the body is over {limit} bytes ({self.limits.max_vectors} latent vectors); send "
            "fewer vectors a request",
        )  # fmt: skip
        if length is not None and (not length.isdigit() or int(length) > limit):
            if length.isdigit() and int(length) <= DRAIN_BYTES:
                await _drain(receive, 0)
            raise too_large
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Refused(400, "BAD_REQUEST", "the client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                if message.get("more_body"):
                    await _drain(receive, size)
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


def champion_uri(model: str) -> tuple[str, str]:
    """(the store's URI, the champion's model URI), or a WardrobeError saying how to get one."""
    import mlflow

    from wardrobe.tracking.store import check_store, store_errors

    uri = check_store()
    name = registered_name(model)
    with store_errors(uri, f"could not look up {name}@{CHAMPION}"):
        champion = alias_version(mlflow.MlflowClient(tracking_uri=uri), name, CHAMPION)
    if champion is None:
        raise WardrobeError(
            f"{uri} has no {name}@{CHAMPION}; promote a model first (make repro, commit "
            "dvc.lock, make promote)"
        )
    return uri, f"models:/{name}@{CHAMPION}"


def guarded_app(model_uri: str, uri: str, port: int) -> tuple[Guard, Limits]:
    """MLflow's scoring server for the model, behind the guard, and the guard's limits."""
    import mlflow
    from mlflow.pyfunc import scoring_server

    from wardrobe.memory import free_bytes
    from wardrobe.tracking.store import store_errors

    mlflow.set_tracking_uri(uri)
    with store_errors(uri, f"could not load {model_uri}"):
        model = mlflow.pyfunc.load_model(model_uri)
    limits = Limits.for_decoder(model.get_raw_model(), free_bytes())
    return Guard(scoring_server.init(model), port, limits), limits


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wardrobe.serve", description=__doc__)
    parser.add_argument("--model", choices=MODELS, default="vae")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    try:
        require_free_port(args.port, "the model server", "SERVE_PORT")
        uri, model_uri = champion_uri(args.model)
        app, limits = guarded_app(model_uri, uri, args.port)
    except WardrobeError as exc:
        print(f"serve: error: {exc}", file=sys.stderr)
        sys.exit(1)
    import uvicorn

    print(f"serve: {model_uri} from {uri} on http://127.0.0.1:{args.port}/invocations "
          f"(at most {limits.max_vectors} latent vectors of {limits.latent_dim} a request)",
          file=sys.stderr, flush=True)  # fmt: skip
    config = uvicorn.Config(
        app, host="127.0.0.1", port=args.port, log_level="warning", server_header=False,
        limit_concurrency=CONNECTIONS, timeout_graceful_shutdown=10, lifespan="off",
    )  # fmt: skip
    server = _server_class()(config)
    server.run()
    if server.stopped_by:
        print(f"serve: stopped ({signal.Signals(server.stopped_by).name})", file=sys.stderr)
        sys.exit(128 + server.stopped_by)
    if not server.started:
        print(f"serve: error: the server on 127.0.0.1:{args.port} did not start", file=sys.stderr)
        sys.exit(1)


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, whose SIGTERM and SIGINT end `run` (the requests in flight
        finish first) and are kept in `stopped_by`, instead of being raised again at its end,
        which would end the process before it says why it stopped."""

        stopped_by = 0

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            kept = {s: signal.signal(s, self._stop) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in kept.items():
                    signal.signal(sig, handler)

        def _stop(self, sig: int, frame: Any) -> None:
            self.stopped_by = self.stopped_by or sig
            self.handle_exit(sig, frame)

    return Server


if __name__ == "__main__":
    main()
