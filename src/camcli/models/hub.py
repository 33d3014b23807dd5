"""Whether a download can be tried at all, asked once per process in a few seconds.

Offline, the Hugging Face hub client retries each request five times with back-off: about 50 s and 22 lines of
"Retrying in 8s [Retry 5/5]" before an error (timm's and transformers' pretrained weights, open_clip's tags).
Before camcli lets a library ask the hub, it checks once whether the hub's host (``HF_ENDPOINT``, or the proxy
in ``HTTPS_PROXY``/``ALL_PROXY``) takes a TCP connection within :data:`REACH_TIMEOUT_S` seconds. When it does not,
or when ``CAMCLI_OFFLINE`` or ``HF_HUB_OFFLINE`` is set, the hub client is put in its offline mode: it reads its
cache, at once, and a file that is not there is one line from camcli. An unreachable hub stays offline for the
rest of the process (a second model does not wait again); the client's retry warnings are kept off while
camcli loads (:func:`quiet_client`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

REACH_TIMEOUT_S = 3.0
HUB = "https://huggingface.co"
_TRUE = ("1", "true", "yes", "on")
_reached: dict[tuple[str, int], bool] = {}  # (host, port) → answered, once per process


def hub_endpoint() -> str:
    """The hub's address as its client reads it (``HF_ENDPOINT``)."""
    return (os.environ.get("HF_ENDPOINT") or HUB).rstrip("/")


def offline_reason(url: str | None = None) -> str | None:
    """Why no download can be tried from ``url`` (default: the hub), or None when it can: ``CAMCLI_OFFLINE`` or
    ``HF_HUB_OFFLINE`` is set, or the host (or the proxy) does not answer (asked once per process). For the hub,
    the hub client is then in offline mode (for the rest of the process when the hub did not answer)."""
    url = url or hub_endpoint()
    is_hub = url.rstrip("/") == hub_endpoint()
    host, port = _address(url)
    if os.environ.get("CAMCLI_OFFLINE"):
        reason = "CAMCLI_OFFLINE is set"
    elif _reached.get((host, port)) is False:
        reason = _silent(host, port)
    elif is_hub and os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        reason = "HF_HUB_OFFLINE is set"
    else:
        if (host, port) not in _reached:
            _reached[(host, port)] = _answers(host, port, REACH_TIMEOUT_S)
        if _reached[(host, port)]:
            return None
        reason = _silent(host, port)
        if is_hub:
            os.environ["HF_HUB_OFFLINE"] = "1"  # for the rest of the process, libraries imported later included
    if is_hub:
        _set_client_offline(True)
    return reason


def _silent(host: str, port: int) -> str:
    return f"{host}:{port} did not answer within {REACH_TIMEOUT_S:g} s"


@contextmanager
def hub_checked(url: str | None = None) -> Iterator[str | None]:
    """:func:`offline_reason` for a load inside the block (see :func:`client_scope`)."""
    with client_scope():
        yield offline_reason(url)


@contextmanager
def client_scope() -> Iterator[None]:
    """A load that may ask the hub: its client's retry warnings are off, and after it the client's offline mode
    is what it was (unless the hub did not answer: then it stays offline)."""
    constants = _client()
    saved = getattr(constants, "HF_HUB_OFFLINE", None)
    try:
        with quiet_client():
            yield
    finally:
        if constants is not None and _reached.get(_address(hub_endpoint())) is not False:
            constants.HF_HUB_OFFLINE = saved


@contextmanager
def quiet_client() -> Iterator[None]:
    """The hub client's warnings ("… thrown while requesting …", "Retrying in 8s") stay off: camcli says what
    failed in one line."""
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _address(url: str) -> tuple[str, int]:
    """(host, port) a connection to ``url`` goes to: the proxy's when one is set for it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    proxy = "" if _no_proxy(host) else _proxy_for(parts.scheme)
    if proxy:
        p = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return p.hostname or "", p.port or (443 if p.scheme == "https" else 80)
    return host, parts.port or (80 if parts.scheme == "http" else 443)


def _proxy_for(scheme: str) -> str:
    names = (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY")
    return next((os.environ[n] for n in names if os.environ.get(n)), "")


def _no_proxy(host: str) -> bool:
    entries = (os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or "").split(",")
    names = [e.strip().lstrip(".").lower() for e in entries if e.strip()]
    return "*" in names or any(host == n or host.endswith("." + n) for n in names)


def _answers(host: str, port: int, timeout: float) -> bool:
    """A TCP connection to (host, port) opens within ``timeout`` seconds, name lookup included (a lookup that
    hangs is not waited for: it runs in a thread that is left behind)."""
    if not host:
        return False
    done = threading.Event()
    result = [False]

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result[0] = True
        except (OSError, ValueError):
            pass
        finally:
            done.set()

    threading.Thread(target=connect, name="camcli-hub-check", daemon=True).start()
    done.wait(timeout)
    return result[0]


def _client() -> Any:
    try:
        import huggingface_hub.constants as constants
    except ImportError:
        return None
    return constants


def _set_client_offline(value: bool) -> None:
    constants = _client()
    if constants is not None:
        constants.HF_HUB_OFFLINE = value
