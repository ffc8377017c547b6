"""The one check that a server's port on 127.0.0.1 is free, before the server is started."""

from __future__ import annotations

import errno
import socket
import sys

from wardrobe.errors import WardrobeError


def require_free_port(port: int, what: str, variable: str) -> None:
    """A WardrobeError naming the port and the make variable that moves it, when `port` on
    127.0.0.1 cannot be bound (taken, or not a port)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            probe.bind(("127.0.0.1", port))
        except (OSError, OverflowError) as exc:
            taken = getattr(exc, "errno", None) == errno.EADDRINUSE
            cause = "is already taken" if taken else f"cannot be used ({exc})"
            raise WardrobeError(
                f"port {port} on 127.0.0.1 ({what}) {cause}; stop what uses it or set "
                f"{variable} to a free port (e.g. make {variable.split('_')[0].lower()} "
                f"{variable}={port + 1})"
            ) from None


def main(argv: list[str] | None = None) -> None:
    """`python -m wardrobe.ports PORT WHAT VARIABLE`: exit 1 with the line on stdout when the
    port is not free (tools/stack.sh checks its ports with it)."""
    port, what, variable = sys.argv[1:] if argv is None else argv
    try:
        require_free_port(int(port), what, variable)
    except WardrobeError as exc:
        print(exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
