"""Whether the Hugging Face hub can be reached now: asked once, with a short timeout, before a model or a dataset is
fetched by hub name, so that an unreachable hub is one line at once rather than the hub client's retries."""

from __future__ import annotations

import socket
from urllib.parse import urlparse


def unreachable() -> str | None:
    """Why the hub's endpoint cannot be reached (host and socket error), or None when it can, or when the hub client
    is offline (``HF_HUB_OFFLINE``: its caches answer, and nothing is fetched)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return None
    endpoint = urlparse(constants.ENDPOINT)
    host, port = endpoint.hostname, endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as error:
        return f"the hub ({host}) cannot be reached ({error})"
    return None
