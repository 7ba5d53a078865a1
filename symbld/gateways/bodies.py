"""Request bodies with a size limit of their own, read in chunks (the batch APIs take uploads larger
than the Symbl server's 1 MiB ``client_max_size``, which aiohttp applies only to ``request.read()``)."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes")
        self.limit = limit


class BadBody(ValueError):
    """The body is not what its Content-Type says (malformed multipart)."""


def key_allowed(presented: str | None, keys: Iterable[str]) -> bool:
    """``presented`` is one of the configured keys (compared in constant time); none configured: refused."""
    if not presented:
        return False
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(presented.encode(), str(key).encode())
    return ok


def header_credential(request: web.Request, scheme: str) -> str | None:
    """The credential after ``Authorization: <scheme> ``, or None."""
    auth = request.headers.get("Authorization", "")
    head, _, value = auth.partition(" ")
    return value.strip() or None if head.lower() == scheme.lower() else None


async def read_body(request: web.Request, limit: int) -> bytes:
    """The raw body, refused past ``limit`` bytes (by Content-Length at once, else while reading)."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(limit)
    out = bytearray()
    while chunk := await request.content.read(1 << 16):
        out += chunk
        if len(out) > limit:
            raise BodyTooLarge(limit)
    return bytes(out)


async def read_form(request: web.Request, limit: int) -> dict[str, list[bytes | str]]:
    """A multipart/form-data body: each field's values (files as bytes, the rest as text), in order."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(limit)
    fields: dict[str, list[bytes | str]] = {}
    total = 0
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or not part.name:
                raise BadBody("nested or unnamed multipart parts are not accepted")
            buf = bytearray()
            while chunk := await part.read_chunk(1 << 16):
                total += len(chunk)
                if total > limit:
                    raise BodyTooLarge(limit)
                buf += chunk
            value: bytes | str = bytes(buf) if part.filename is not None else buf.decode("utf-8", "replace")
            fields.setdefault(part.name, []).append(value)
    except (BodyTooLarge, BadBody):
        raise
    except (HttpProcessingError, ValueError, AssertionError, RuntimeError, KeyError) as e:  # aiohttp's parse errors
        raise BadBody(f"malformed multipart body ({e})") from None
    return fields
