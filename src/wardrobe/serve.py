"""`make serve` (python -m wardrobe.serve): the champion decoder over REST on 127.0.0.1.

It serves `models:/wardrobe-<model>-decoder@champion` from the project's tracking store with
`mlflow models serve --env-manager local` (this environment's packages, no new one built):

    curl -s http://127.0.0.1:5001/invocations -H 'Content-Type: application/json' \\
        -d '{"inputs": [[0.0, 0.0], [1.5, -0.5]]}'

answers {"predictions": [...]}, one 32x32x1 image of pixel values in [0, 1] per latent vector.
A vector of the wrong size is refused (HTTP 400) with a message that names the expected shape.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from wardrobe.errors import WardrobeError
from wardrobe.ports import require_free_port
from wardrobe.processes import environment_tool
from wardrobe.promote import CHAMPION, MODELS, alias_version, registered_name

DEFAULT_PORT = 5001


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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wardrobe.serve", description=__doc__)
    parser.add_argument("--model", choices=MODELS, default="vae")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    try:
        require_free_port(args.port, "the model server", "SERVE_PORT")
        uri, model_uri = champion_uri(args.model)
    except WardrobeError as exc:
        print(f"serve: error: {exc}", file=sys.stderr)
        sys.exit(1)
    mlflow = environment_tool("mlflow")
    command = [mlflow, "models", "serve", "-m", model_uri, "--env-manager", "local",
               "--host", "127.0.0.1", "--port", str(args.port)]  # fmt: skip
    print(f"serve: {model_uri} from {uri} on http://127.0.0.1:{args.port}/invocations",
          file=sys.stderr, flush=True)  # fmt: skip
    os.execve(mlflow, command, {**os.environ, "MLFLOW_TRACKING_URI": uri})


if __name__ == "__main__":
    main()
