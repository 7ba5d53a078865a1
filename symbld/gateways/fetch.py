"""Audio named by URL, for the batch APIs: ``file://`` paths and http(s) on a loopback host only.

A server that fetched any URL a client names would let any client make it read the network it
sits in (docs/security.md); these APIs run on this machine's recordings, so they take local files
and loopback servers, and answer anything else with an error naming what was refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import urllib.parse
from pathlib import Path

from aiohttp import ClientError, ClientSession, ClientTimeout

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


class FetchError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


async def audio_from_url(url: str, limit: int) -> bytes:
    """The bytes at ``url`` (at most ``limit``); FetchError (400, or 413 when too large) otherwise."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        return await asyncio.to_thread(_read_file, urllib.parse.unquote(parts.path), limit)
    if parts.scheme in ("http", "https") and _loopback(parts.hostname or ""):
        return await _fetch(url, limit)
    raise FetchError(400, "this server fetches audio only from file:// URLs and http(s) on a loopback host; "
                     f"got {parts.scheme or 'no'} scheme, host {parts.hostname or '-'}")


def _loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _too_large(limit: int) -> FetchError:
    return FetchError(413, f"the audio is larger than this server's limit of {limit} bytes")


def _read_file(path: str, limit: int) -> bytes:
    p = Path(path)
    if not p.is_absolute() or not p.is_file():
        raise FetchError(400, f"file URL {path[:200]!r} is not an absolute path to a regular file")
    if p.stat().st_size > limit:
        raise _too_large(limit)
    try:
        return p.read_bytes()
    except OSError as e:
        raise FetchError(400, f"cannot read {path[:200]}: {e.strerror}") from None


async def _fetch(url: str, limit: int) -> bytes:
    try:
        async with ClientSession(timeout=ClientTimeout(total=60)) as session, \
                session.get(url, allow_redirects=False) as r:  # a redirect could leave loopback
            if r.status != 200:
                raise FetchError(400, f"fetching {url[:200]} answered HTTP {r.status}")
            out = bytearray()
            async for chunk in r.content.iter_chunked(1 << 16):
                out += chunk
                if len(out) > limit:
                    raise _too_large(limit)
            return bytes(out)
    except (ClientError, TimeoutError) as e:
        raise FetchError(400, f"cannot fetch {url[:200]}: {e}") from None
