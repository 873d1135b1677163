"""Image URLs, fetched by the gateway only when the deployment turns it on (``VLSERVE_URL_FETCH``).

Fetching on behalf of a client is a server-side request forgery risk, so every fetch is fenced:
the host must be on ``VLSERVE_URL_ALLOWED_HOSTS`` (exact names); every address it resolves to must
be public (no loopback, private, link-local, reserved or multicast range; checked in the resolver
the connection itself uses, so a second DNS answer cannot swap in another address); redirects are
refused, not followed; the body is capped at ``VLSERVE_MAX_IMAGE_BYTES`` while it streams; the whole
fetch has a deadline (``VLSERVE_URL_TIMEOUT_S``).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver

from vlserve.errors import InvalidInput


def check_public(host: str, address: str) -> None:
    ip = ipaddress.ip_address(address)
    if not ip.is_global or ip.is_multicast:
        raise OSError(errno.EACCES, f"{host} resolves to a non-public address ({address}): refused")


class PublicOnlyResolver(AbstractResolver):
    """The default resolver, refusing any host with a non-public address among its answers."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        infos = await self._inner.resolve(host, port, family)
        for info in infos:
            check_public(host, info["host"])
        return list(infos)

    async def close(self) -> None:
        await self._inner.close()


class UrlFetcher:
    def __init__(self, allowed_hosts: list[str], max_bytes: int, timeout_s: float) -> None:
        self.allowed = {h.strip().lower() for h in allowed_hosts if h.strip()}
        self.max_bytes = max_bytes
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def check(self, url: str) -> str:
        """The URL's host, if the URL may be fetched at all; else :class:`InvalidInput` saying why."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise InvalidInput(f"only http(s) image URLs are fetched, not {parts.scheme!r}")
        if parts.username or parts.password:
            raise InvalidInput("image URLs with credentials are refused")
        host = (parts.hostname or "").lower()
        if host not in self.allowed:
            raise InvalidInput(f"host {host!r} is not on the allow-list (VLSERVE_URL_ALLOWED_HOSTS)")
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            return host  # a name: its addresses are checked when it is resolved
        try:
            check_public(host, str(literal))
        except OSError as e:
            raise InvalidInput(e.strerror or str(e)) from None
        return host

    async def fetch(self, url: str) -> bytes:
        host = self.check(url)
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=PublicOnlyResolver()),
                                                  timeout=self.timeout)
        try:
            async with self._session.get(url, allow_redirects=False) as r:
                if 300 <= r.status < 400:
                    raise InvalidInput(f"{host} answered a redirect (HTTP {r.status}); redirects are not followed")
                if r.status != 200:
                    raise InvalidInput(f"fetching the image from {host} failed: HTTP {r.status}")
                if r.content_length is not None and r.content_length > self.max_bytes:
                    raise InvalidInput(f"image at the URL is {r.content_length} bytes, over the limit of "
                                       f"{self.max_bytes} (VLSERVE_MAX_IMAGE_BYTES)")
                data = bytearray()
                async for chunk in r.content.iter_chunked(1 << 16):
                    data += chunk
                    if len(data) > self.max_bytes:
                        raise InvalidInput(f"image at the URL is over the limit of {self.max_bytes} bytes "
                                           "(VLSERVE_MAX_IMAGE_BYTES)")
                return bytes(data)
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise InvalidInput(f"cannot fetch the image from {host}: {e or type(e).__name__}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
