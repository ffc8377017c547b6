"""The one check, for every HTTP server the project writes itself, that a request is meant
for this server: its Host names it (127.0.0.1:PORT or localhost:PORT, nothing else: a web
page whose own name was made to resolve to 127.0.0.1, DNS rebinding, sends its own name) and
a write comes from no other origin (a page elsewhere posting to a local server).

The MLflow servers (`make ui`, the team stack's) get the same names through MLflow's own
options (`wardrobe.ui.own_names`); `make serve` and any server added later use `refusal`.
"""

from __future__ import annotations

# Methods that only read: a cross-origin page may send them, and the browser keeps the
# answer from it (no CORS header is ever sent).
READS = frozenset({"GET", "HEAD", "OPTIONS"})


def names(port: int) -> tuple[str, ...]:
    """The Host values a server on 127.0.0.1:PORT answers."""
    return (f"127.0.0.1:{port}", f"localhost:{port}")


def refusal(port: int, method: str, host: str | None, origin: str | None) -> str | None:
    """Why a request is refused (HTTP 403), or None when it is this server's."""
    own = names(port)
    if host not in own:
        return (
            f"Host {host!r} is not this server's name ({' or '.join(own)}); open "
            f"http://{own[0]}/ itself"
        )
    foreign = origin is not None and origin not in {f"http://{name}" for name in own}
    if foreign and method.upper() not in READS:
        return f"a write from the origin {origin!r} is refused: only this server's pages may write"
    return None
