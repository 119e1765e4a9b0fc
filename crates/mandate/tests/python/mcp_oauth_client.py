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

warnings.filterwarnings("ignore", message=r".*deprecated as of 2026-07-28.*")

from mcp.client.auth import OAuthClientProvider
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from oauth_loopback import LoopbackRedirect, code_result
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


class Callback(LoopbackRedirect):
    """The redirect URI (oauth_loopback.py), reporting what came back."""

    async def wait(self) -> AuthorizationCodeResult:
        query = await self.query(TIMEOUT_S)
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
        return code_result(query)


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
