#!/usr/bin/env python3
"""An MCP client that authorizes itself with OAuth, as a real MCP client would: the
Python `mcp` package's OAuthClientProvider (RFC 9728 / RFC 8414 discovery, RFC 7591
dynamic registration, authorization code with PKCE S256, RFC 8707 resource).

    mcp_oauth_client.py URL --script steps.json   (or `-` for stdin)

A person must authorize it: the authorization URL is printed as the first line,

    {"authorize": "http://…/oauth2/authorize?…"}

and the code comes back to a loopback listener on 127.0.0.1 (the redirect URI), which
answers the browser with a short page. Then the steps run (the ops of mcp_client.py:
list_tools, call_tool) and print one JSON line each,

    {"step": 0, "op": "call_tool", "result": {...}}  or  {..., "error": {...}}

A refused authorization prints {"authorization_error": {...}} and exits 1. Nothing
secret (codes, verifiers, tokens) is printed, only whether a token was obtained.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import warnings
from typing import Any
from urllib.parse import parse_qs, urlparse

warnings.filterwarnings("ignore", message=r".*deprecated as of 2026-07-28.*")

from mcp.client.auth import OAuthClientProvider
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from mcp.shared.exceptions import MCPError

TIMEOUT_S = 120.0


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class Callback:
    """The redirect URI: one request to /callback, its query handed to the flow."""

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
        target = parts[1] if len(parts) > 1 else "/"
        url = urlparse(target)
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

    async def wait(self) -> AuthorizationCodeResult:
        query = await asyncio.wait_for(self.result, TIMEOUT_S)
        if "error" in query:
            emit(
                {
                    "authorization_error": {
                        "error": query["error"][0],
                        "error_description": query.get("error_description", [""])[0],
                        "state_echoed": "state" in query,
                        "iss_echoed": "iss" in query,
                    }
                }
            )
            raise SystemExit(1)
        # RFC 9207: the issuer of the response goes to the SDK, which checks it against
        # the authorization server's metadata.
        return AuthorizationCodeResult(
            code=query["code"][0],
            state=query.get("state", [None])[0],
            iss=query.get("iss", [None])[0],
        )


async def run_step(session: ClientSession, step: dict[str, Any]) -> Any:
    op = step["op"]
    if op == "list_tools":
        return await session.list_tools()
    if op == "call_tool":
        return await session.call_tool(step["name"], step.get("arguments") or {})
    raise ValueError(f"unknown op {op}")


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--script", required=True)
    parser.add_argument("--client-name", default="Fixture Agent")
    args = parser.parse_args()
    steps = json.load(sys.stdin if args.script == "-" else open(args.script))

    callback = Callback()
    await callback.start()

    async def redirect(url: str) -> None:
        emit({"authorize": url})

    storage = MemoryStorage()
    provider = OAuthClientProvider(
        server_url=args.url,
        client_metadata=OAuthClientMetadata(
            client_name=args.client_name,
            redirect_uris=[f"http://127.0.0.1:{callback.port}/callback"],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=redirect,
        callback_handler=callback.wait,
    )
    http = create_mcp_http_client(auth=provider)
    async with http:
        async with streamable_http_client(args.url, http_client=http) as streams:
            read_stream, write_stream = streams[0], streams[1]
            async with ClientSession(read_stream, write_stream, read_timeout_seconds=TIMEOUT_S) as session:
                await session.initialize()
                emit(
                    {
                        "authorized": storage.tokens is not None,
                        "client_registered": storage.client is not None,
                        "scope": storage.tokens.scope if storage.tokens else None,
                    }
                )
                for i, step in enumerate(steps):
                    try:
                        result = await run_step(session, step)
                        emit({"step": i, "op": step["op"], "result": result.model_dump(mode="json", by_alias=True, exclude_unset=True)})
                    except MCPError as e:
                        emit({"step": i, "op": step["op"], "error": {"code": e.error.code, "message": e.error.message}})
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
