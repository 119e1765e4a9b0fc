"""The redirect URI of the test's OAuth clients: a loopback listener on 127.0.0.1 that
takes one request to /callback and hands its query to the flow (RFC 8252 §7.3), and
answers the browser with a short page. Shared by mcp_oauth_client.py and
mcp_oauth_flow.py."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlparse

from mcp.shared.auth import AuthorizationCodeResult


class LoopbackRedirect:
    def __init__(self) -> None:
        self.result: asyncio.Future[dict[str, list[str]]] = asyncio.get_running_loop().create_future()
        self.port = 0

    async def start(self) -> None:
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = (await reader.readline()).decode("latin-1")
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        parts = line.split(" ")
        url = urlparse(parts[1] if len(parts) > 1 else "/")
        if url.path == "/callback" and not self.result.done():
            self.result.set_result(parse_qs(url.query))
            body = b"<!doctype html><title>Done</title><p>Authorization complete. You can close this window."
        else:
            body = b"<!doctype html><title>Unknown</title><p>Nothing here."
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        await writer.drain()
        writer.close()

    async def query(self, timeout_s: float) -> dict[str, list[str]]:
        """The callback's query parameters, once the browser came back."""
        return await asyncio.wait_for(self.result, timeout_s)


def code_result(query: dict[str, list[str]]) -> AuthorizationCodeResult:
    """The code with its state and the issuer of the response (RFC 9207), which the SDK
    checks against the authorization server's metadata."""
    return AuthorizationCodeResult(
        code=query["code"][0],
        state=query.get("state", [None])[0],
        iss=query.get("iss", [None])[0],
    )
