"""Downloading the authors' checkpoints into the cache: pinned, verified, atomic.

A file is streamed to a hidden temporary file beside its final place, hashed on
the way, and renamed into place only when its size and SHA-256 are the pinned
ones; any failure (a refused connection, a short or corrupted transfer, Ctrl-C)
removes the temporary file, so the cache only ever holds verified files.

Only the standard library's ``urllib`` is used. ``VAPSR_VIDEO_WEIGHTS_URL``
replaces the base URL (a folder holding the four files), for mirrors and tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from vapsr_video.errors import OutputError, WeightsError
from vapsr_video.model.catalog import AUTHORS_COMMIT, AUTHORS_REPOSITORY, KnownModel, cache_state, model_path
from vapsr_video.safe_output import atomic_output

URL_ENV = "VAPSR_VIDEO_WEIGHTS_URL"
DEFAULT_BASE_URL = f"https://raw.githubusercontent.com/{AUTHORS_REPOSITORY}/{AUTHORS_COMMIT}/"
CHUNK_BYTES = 64 * 1024
TIMEOUT_S = 60.0


def download_url(model: KnownModel) -> str:
    base = os.environ.get(URL_ENV) or DEFAULT_BASE_URL
    return base.rstrip("/") + "/" + urllib.parse.quote(model.file_name)


def manual_instructions(model: KnownModel) -> str:
    """How to put the file in place without this command (the network may be what failed)."""
    # Always the authors' own address: a mirror in VAPSR_VIDEO_WEIGHTS_URL may be what is down.
    return (f"download {DEFAULT_BASE_URL}{model.file_name} (SHA-256 {model.sha256}) by hand and save it as "
            f"{model_path(model)}, or pass --weights FILE with the file anywhere")


def fetch_model(model: KnownModel, progress: Callable[[int], None] | None = None) -> tuple[Path, bool]:
    """Make sure the pinned file of ``model`` is in the cache; returns (its path, whether it was downloaded).

    ``progress`` is called with the number of bytes received, chunk by chunk.
    A file already cached and verified is not downloaded again (no network is used).
    """
    if model.bundled:
        raise WeightsError(f"{model.name}: bundled with vapsr-video; there is nothing to fetch")
    target = model_path(model)
    state = cache_state(model)
    if state == "cached":
        return target, False
    if state == "corrupt":
        # Not the pinned file (a partial copy placed by hand, a changed file): never used, so replace it.
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
    cache_hint = "set VAPSR_VIDEO_CACHE_DIR to a writable folder"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{target.parent}: cannot write the weights cache ({exc.strerror}); {cache_hint}") from None
    try:
        # The project's one publisher: a hidden temporary beside the target, synced and renamed into
        # place only when the transfer checked out; removed on any failure, Ctrl-C included.
        with atomic_output(target) as temporary, open(temporary, "wb") as output:
            _download_to(model, output, progress)
    except OutputError as exc:
        raise OutputError(f"{exc}; {cache_hint}") from None
    return target, True


def _download_to(model: KnownModel, output: BinaryIO, progress: Callable[[int], None] | None) -> None:
    url = download_url(model)
    request = urllib.request.Request(url, headers={"User-Agent": "vapsr-video"})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        raise WeightsError(f"{url}: the server answered HTTP {exc.code} {exc.reason}; "
                           f"{manual_instructions(model)}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise WeightsError(f"{url}: cannot connect ({_describe(reason)}); {manual_instructions(model)}") from None
    digest = hashlib.sha256()
    received = 0
    with response:
        declared = response.headers.get("Content-Length")
        try:
            while chunk := response.read(CHUNK_BYTES):
                received += len(chunk)
                if received > model.size:
                    break  # a server sending more than the pinned size is sending something else
                digest.update(chunk)
                output.write(chunk)
                if progress is not None:
                    progress(len(chunk))
        except (OSError, http.client.HTTPException) as exc:
            raise WeightsError(f"{url}: the download broke off after {received} of {model.size} bytes "
                               f"({_describe(exc)}); nothing was kept; try again") from None
    if received != model.size:
        promised = f", the server announced {declared}" if declared else ""
        what = "more than" if received > model.size else f"{received} bytes of"
        raise WeightsError(f"{url}: received {what} the pinned {model.size} bytes{promised}; "
                           "the transfer was cut short or is not the authors' file; nothing was kept")
    if digest.hexdigest() != model.sha256:
        raise WeightsError(f"{url}: SHA-256 {digest.hexdigest()} is not the pinned {model.sha256} "
                           f"({AUTHORS_REPOSITORY} at {AUTHORS_COMMIT[:12]}); nothing was kept")


def _describe(reason: object) -> str:
    if isinstance(reason, socket.timeout | TimeoutError):
        return f"no answer within {TIMEOUT_S:.0f} s"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__
