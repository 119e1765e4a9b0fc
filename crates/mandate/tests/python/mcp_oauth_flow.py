#!/usr/bin/env python3
"""A whole working day of a standard MCP client, with the Python `mcp` package only:
its OAuthClientProvider (RFC 9728 / RFC 8414 discovery, RFC 7591 registration, PKCE
S256, RFC 8707 resource, refresh) under its MCP 2026-07-28 client (stateless, the
multi-round-trip driver that answers `input_required`).

    mcp_oauth_flow.py URL

Run by crates/mandate/tests/sdk_clients.rs, which plays the person in Chromium. One
JSON line per thing done on stdout; the lines the test answers on stdin:

    {"authorize": URL}                     the person signs in and grants; the code
                                           comes back to a loopback listener
    {"asked": URL, "mode": "url"}          a held call: the test approves it in the
                                           console and answers {"approved": true}
    {"waiting_for": "revocation"}          the test revokes the mandate in the console
                                           and answers {"revoked": true}

and the rest it only reads: {"http": …} for every request to the authorization server
(discovery, registration, token grants with their status and OAuth error), the steps'
results, {"waited": S} while the access token expires. A second {"authorize": …} is the
client sent back to its person; it ends the run ({"sent_back_to_authorization": true}).
Nothing secret (codes, verifiers, tokens) is printed, only fingerprints of whether a
token changed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import time
import warnings
from typing import Any
from urllib.parse import parse_qs

warnings.filterwarnings("ignore", message=r".*deprecated as of 2026-07-28.*")

import httpx2
from mcp import Client, types
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from oauth_loopback import LoopbackRedirect, code_result

REVISION = "2026-07-28"
TIMEOUT_S = 180.0


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def fingerprint(secret: str | None) -> str | None:
    return hashlib.sha256(secret.encode()).hexdigest()[:12] if secret else None


async def wait_for_test(key: str) -> None:
    """The next line on stdin must be {key: true}."""
    line = await asyncio.wait_for(asyncio.to_thread(sys.stdin.readline), TIMEOUT_S)
    if json.loads(line or "{}").get(key) is not True:
        raise SystemExit(f"expected {{{key!r}: true}} from the test, got {line!r}")


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.saved_at = 0.0
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens
        self.saved_at = time.monotonic()
        emit(
            {
                "tokens_saved": {
                    "access": fingerprint(tokens.access_token),
                    "refresh": fingerprint(tokens.refresh_token),
                    "expires_in": tokens.expires_in,
                    "scope": tokens.scope,
                }
            }
        )

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class Callback(LoopbackRedirect):
    """The redirect URI (oauth_loopback.py), reporting what came back."""

    async def wait(self) -> AuthorizationCodeResult:
        query = await self.query(TIMEOUT_S)
        if "error" in query:
            emit({"authorization_error": query["error"][0]})
            raise SystemExit(1)
        emit({"callback": {"code": "code" in query, "state": "state" in query, "iss": query.get("iss", [None])[0]}})
        return code_result(query)


class SentBack(Exception):
    """The client asked for its person a second time."""


async def log_request(request: httpx2.Request) -> None:
    if request.url.path == "/oauth2/token":
        request.extensions["mandate_test_form"] = request.content.decode("utf-8", "replace")


async def log_response(response: httpx2.Response) -> None:
    path = response.request.url.path
    if not (path.startswith("/oauth2/") or path.startswith("/.well-known/")):
        return
    line: dict[str, Any] = {"http": response.request.method, "path": path, "status": response.status_code}
    if path == "/oauth2/token":
        form = parse_qs(response.request.extensions.get("mandate_test_form", ""))
        line["grant_type"] = form.get("grant_type", [None])[0]
        if response.status_code != 200:
            await response.aread()
            line["error"] = response.json().get("error")
    emit(line)


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    args = parser.parse_args()

    callback = Callback()
    await callback.start()
    asked_for_person = 0

    async def redirect(url: str) -> None:
        nonlocal asked_for_person
        asked_for_person += 1
        emit({"authorize": url})
        if asked_for_person > 1:
            raise SentBack()

    storage = MemoryStorage()
    provider = OAuthClientProvider(
        server_url=args.url,
        client_metadata=OAuthClientMetadata(
            client_name="Python SDK Agent",
            redirect_uris=[f"http://127.0.0.1:{callback.port}/callback"],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=redirect,
        callback_handler=callback.wait,
    )

    async def on_elicit(context: Any, params: Any) -> types.ElicitResult:
        url = getattr(params, "url", None)
        emit({"asked": url, "mode": getattr(params, "mode", None)})
        if not url:
            return types.ElicitResult(action="decline")
        await wait_for_test("approved")
        return types.ElicitResult(action="accept")

    http = create_mcp_http_client(auth=provider)
    http.event_hooks = {"request": [log_request], "response": [log_response]}
    try:
        await run(args.url, http, on_elicit, storage, lambda: asked_for_person)
    except* SentBack:
        # The redirect handler's exception does not come back from call_tool: it ends the
        # transport's task group, and the Client leaves with it (an ExceptionGroup).
        emit(
            {
                "op": "call_tool",
                "name": "echo",
                "error": {"type": "SentBack", "message": "the client asked for its person again"},
                "sent_back_to_authorization": asked_for_person > 1,
            }
        )
    return 0


async def run(url: str, http: httpx2.AsyncClient, on_elicit: Any, storage: MemoryStorage, asked: Any) -> None:
    def dump(result: Any) -> Any:
        return result.model_dump(mode="json", by_alias=True, exclude_none=True)

    async with http:
        client = Client(
            streamable_http_client(url, http_client=http),
            mode=REVISION,
            elicitation_callback=on_elicit,
            read_timeout_seconds=TIMEOUT_S,
        )
        async with client:
            listed = await client.list_tools()
            emit({"op": "list_tools", "result": dump(listed)})
            echoed = await client.call_tool("echo", {"text": "through the python sdk"})
            emit({"op": "call_tool", "name": "echo", "result": dump(echoed)})

            # The access token expires; the SDK refreshes it before the next request.
            async def outlive_the_token() -> None:
                assert storage.tokens is not None and storage.tokens.expires_in is not None
                left = storage.saved_at + storage.tokens.expires_in + 2 - time.monotonic()
                await asyncio.sleep(max(left, 0))
                emit({"waited": round(left, 1), "for": "the access token to expire"})

            await outlive_the_token()
            echoed = await client.call_tool("echo", {"text": "after the refresh"})
            emit({"op": "call_tool", "name": "echo", "result": dump(echoed), "asked_for_person": asked()})

            # A held call: input_required with the approval page, answered after approval.
            held = await client.call_tool("delete_everything", {"confirm": True})
            emit({"op": "call_tool", "name": "delete_everything", "result": dump(held)})

            # The person revokes the mandate; once the access token is past its time, the
            # SDK's refresh is refused and it asks for its person again.
            emit({"waiting_for": "revocation"})
            await wait_for_test("revoked")
            await outlive_the_token()
            try:
                after = await client.call_tool("echo", {"text": "after the revocation"})
                emit({"op": "call_tool", "name": "echo", "result": dump(after)})
            except Exception as e:  # noqa: BLE001  what happened is the result
                emit(
                    {
                        "op": "call_tool",
                        "name": "echo",
                        "error": {"type": type(e).__name__, "message": str(e)[:300]},
                        "sent_back_to_authorization": asked() > 1,
                    }
                )


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
