#!/usr/bin/env python3
"""Upstream MCP server fixture for the gateway tests and the MCP conformance runner.

Implements, with the Python `mcp` package's low-level `Server`, what the server
scenarios of `@modelcontextprotocol/conformance@0.1.13` call and check (see
tests/node/package.json), written from the scenario descriptions:

  tools      test_simple_text, test_image_content, test_audio_content,
             test_embedded_resource, test_multiple_content_types,
             test_tool_with_logging, test_error_handling, test_tool_with_progress,
             test_sampling, test_elicitation, test_elicitation_sep1034_defaults,
             test_elicitation_sep1330_enums, json_schema_2020_12_tool,
             test_reconnection
             plus two plain tools for gateway tests:
             echo (readOnlyHint) and delete_everything (destructiveHint)
  resources  test://static-text, test://static-binary, test://watched-resource,
             template test://template/{id}/data, subscribe / unsubscribe
  prompts    test_simple_prompt, test_prompt_with_arguments,
             test_prompt_with_embedded_resource, test_prompt_with_image
  utilities  logging/setLevel, completion/complete, ping

Usage:
  mcp_fixture_server.py --port N   Streamable HTTP at http://127.0.0.1:N/mcp (127.0.0.1
                                   only; N = 0 picks a free port). Prints one line
                                   `LISTENING http://127.0.0.1:PORT/mcp` on stdout once
                                   the socket is listening.
  mcp_fixture_server.py --stdio    the same server over stdin/stdout.
  --resumable (HTTP)               keep SSE events in memory for Last-Event-ID resumption,
                                   send priming events with `retry: 500`, and let
                                   test_reconnection close its SSE stream mid-call (the
                                   pending server-sse-polling scenario). Off by default.
  --trace-log PATH (HTTP)          append each request's traceparent / tracestate and
                                   JSON body to PATH, one JSON line each (tracing tests).

  --dynamic                        add the tool `add_tool`, which adds the tool `extra`
                                   to the list and sends notifications/tools/list_changed,
                                   `touch_resource`, which changes the text of
                                   test://watched-resource and sends
                                   notifications/resources/updated, `add_prompt` and
                                   `add_resource` (a prompt / resource added, its list
                                   change sent), `retitle_echo` (echo's description
                                   changed, tools/list_changed sent on the call's own
                                   stream) and `announce` {method, params, related},
                                   which sends that notification as given (on the call's
                                   stream when `related`). Announcements outside a call
                                   go to the session's standalone GET stream. Off by
                                   default (the conformance runner sees the fixed list).

DNS-rebinding protection: over HTTP, a request whose Host is not localhost,
127.0.0.1 or [::1] (any port) is answered 421, and one with an Origin other
than http://localhost|127.0.0.1|[::1] (any port) is answered 403.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import re
import socket
import struct
import sys
import warnings
import wave
import weakref
import zlib
from typing import Any

# The logging and sampling capabilities are deprecated as of 2026-07-28; this
# fixture serves the 2025-11-25 handshake era, where they are current.
warnings.filterwarnings("ignore", message=r".*deprecated as of 2026-07-28.*")
try:
    from mcp.shared.exceptions import MCPDeprecationWarning

    warnings.filterwarnings("ignore", category=MCPDeprecationWarning)
except ImportError:  # pragma: no cover
    pass

import mcp.types as types
from mcp.server.lowlevel import Server
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError

INVALID_PARAMS = -32602
RESOURCE_NOT_FOUND = -32002


# --------------------------------------------------------------------------- media


def _png_1x1_red() -> bytes:
    """A 1x1 red RGB PNG, built here rather than pasted in."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _wav_silence() -> bytes:
    """A short mono 8 kHz 16-bit WAV of silence."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 80)
    return buf.getvalue()


PNG_B64 = base64.b64encode(_png_1x1_red()).decode("ascii")
WAV_B64 = base64.b64encode(_wav_silence()).decode("ascii")

# --------------------------------------------------------------------------- tools

NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}}

TOOLS: list[types.Tool] = [
    types.Tool(name="test_simple_text", description="Returns a simple text content item", input_schema=NO_ARGS),
    types.Tool(name="test_image_content", description="Returns a PNG image content item", input_schema=NO_ARGS),
    types.Tool(name="test_audio_content", description="Returns a WAV audio content item", input_schema=NO_ARGS),
    types.Tool(
        name="test_embedded_resource", description="Returns an embedded text resource", input_schema=NO_ARGS
    ),
    types.Tool(
        name="test_multiple_content_types",
        description="Returns text, image and embedded resource content",
        input_schema=NO_ARGS,
    ),
    types.Tool(
        name="test_tool_with_logging",
        description="Sends three info log notifications while it runs",
        input_schema=NO_ARGS,
    ),
    types.Tool(name="test_error_handling", description="Always fails with isError: true", input_schema=NO_ARGS),
    types.Tool(
        name="test_tool_with_progress",
        description="Reports progress 0, 50 and 100 of 100 when given a progress token",
        input_schema=NO_ARGS,
    ),
    types.Tool(
        name="test_sampling",
        description="Asks the client to sample an LLM with the given prompt",
        input_schema={
            "type": "object",
            "properties": {"prompt": {"type": "string", "description": "The prompt to send to the LLM"}},
            "required": ["prompt"],
        },
    ),
    types.Tool(
        name="test_elicitation",
        description="Asks the client to elicit a username and an email from the user",
        input_schema={
            "type": "object",
            "properties": {"message": {"type": "string", "description": "The message to show the user"}},
            "required": ["message"],
        },
    ),
    types.Tool(
        name="test_elicitation_sep1034_defaults",
        description="Elicits a form whose primitive fields all carry defaults (SEP-1034)",
        input_schema=NO_ARGS,
    ),
    types.Tool(
        name="test_elicitation_sep1330_enums",
        description="Elicits a form with the five enum schema variants (SEP-1330)",
        input_schema=NO_ARGS,
    ),
    types.Tool(
        name="test_reconnection",
        description="Closes its SSE stream mid-call (with --resumable) and answers after the client reconnects",
        input_schema=NO_ARGS,
    ),
    types.Tool(
        name="json_schema_2020_12_tool",
        description="Tool with JSON Schema 2020-12 features",
        input_schema={
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {
                "address": {
                    "type": "object",
                    "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
                }
            },
            "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
            "additionalProperties": False,
        },
    ),
    types.Tool(
        name="echo",
        description="Returns its text argument unchanged",
        input_schema={
            "type": "object",
            "properties": {"text": {"type": "string", "description": "Text to echo back"}},
            "required": ["text"],
        },
        annotations=types.ToolAnnotations(read_only_hint=True),
    ),
    types.Tool(
        name="delete_everything",
        description="Pretends to delete everything (it deletes nothing) and says so",
        input_schema=NO_ARGS,
        annotations=types.ToolAnnotations(read_only_hint=False, destructive_hint=True),
    ),
]
TOOL_NAMES = {t.name for t in TOOLS}

DELETE_EVERYTHING_TEXT = "Deleted everything (not really: this is the Mandate test fixture)."

ELICIT_DEFAULTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "title": "Name", "default": "John Doe"},
        "age": {"type": "integer", "title": "Age", "default": 30},
        "score": {"type": "number", "title": "Score", "default": 95.5},
        "status": {
            "type": "string",
            "title": "Status",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "title": "Verified", "default": True},
    },
}

ELICIT_ENUMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "untitledSingle": {"type": "string", "title": "Pick one", "enum": ["option1", "option2", "option3"]},
        "titledSingle": {
            "type": "string",
            "title": "Pick one (titled)",
            "oneOf": [
                {"const": "value1", "title": "First Option"},
                {"const": "value2", "title": "Second Option"},
                {"const": "value3", "title": "Third Option"},
            ],
        },
        "legacyEnum": {
            "type": "string",
            "title": "Pick one (legacy titles)",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {
            "type": "array",
            "title": "Pick several",
            "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
        },
        "titledMulti": {
            "type": "array",
            "title": "Pick several (titled)",
            "items": {
                "anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"},
                ]
            },
        },
    },
}

LOG_LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
# Minimum log level per connection (set by logging/setLevel); unset means everything goes.
_log_levels: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()


def _text(text: str) -> types.TextContent:
    return types.TextContent(type="text", text=text)


def _connection(ctx: Any) -> Any:
    return getattr(ctx.session, "_connection", ctx.session)


async def _log(ctx: Any, level: str, message: str) -> None:
    minimum = _log_levels.get(_connection(ctx))
    if minimum is not None and LOG_LEVELS.index(level) < LOG_LEVELS.index(minimum):
        return
    await ctx.session.send_log_message(level, message, logger="mandate-fixture", related_request_id=ctx.request_id)


def _client_has(ctx: Any, capability: str) -> bool:
    caps = ctx.session.client_capabilities
    return caps is not None and getattr(caps, capability, None) is not None


async def _announce(ctx: Any, method: str, params: Any, related: bool = False) -> None:
    """Sends a notification exactly as given (no model checks its params): on the call's
    own stream when `related`, else on the session's standalone stream."""
    channel = ctx.session._request_outbound if related else ctx.session._connection.outbound
    try:
        await channel.notify(method, params)
    except Exception:  # noqa: BLE001  nobody listening is no failure
        pass


def _error_result(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[_text(message)], is_error=True)


async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
    return types.ListToolsResult(tools=TOOLS)


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    name = params.name
    args = params.arguments or {}
    if name == "test_simple_text":
        return types.CallToolResult(content=[_text("This is a simple text response for testing.")])
    if name == "test_image_content":
        return types.CallToolResult(content=[types.ImageContent(type="image", data=PNG_B64, mime_type="image/png")])
    if name == "test_audio_content":
        return types.CallToolResult(content=[types.AudioContent(type="audio", data=WAV_B64, mime_type="audio/wav")])
    if name == "test_embedded_resource":
        return types.CallToolResult(
            content=[
                types.EmbeddedResource(
                    type="resource",
                    resource=types.TextResourceContents(
                        uri="test://embedded-resource",
                        mime_type="text/plain",
                        text="This is an embedded resource content.",
                    ),
                )
            ]
        )
    if name == "test_multiple_content_types":
        return types.CallToolResult(
            content=[
                _text("Multiple content types test:"),
                types.ImageContent(type="image", data=PNG_B64, mime_type="image/png"),
                types.EmbeddedResource(
                    type="resource",
                    resource=types.TextResourceContents(
                        uri="test://mixed-content-resource",
                        mime_type="application/json",
                        text=json.dumps({"test": "data", "value": 123}, separators=(",", ":")),
                    ),
                ),
            ]
        )
    if name == "test_tool_with_logging":
        await _log(ctx, "info", "Tool execution started")
        await asyncio.sleep(0.05)
        await _log(ctx, "info", "Tool processing data")
        await asyncio.sleep(0.05)
        await _log(ctx, "info", "Tool execution completed")
        return types.CallToolResult(content=[_text("Tool with logging executed successfully")])
    if name == "test_error_handling":
        return _error_result("This tool intentionally returns an error for testing")
    if name == "test_tool_with_progress":
        for step, value in enumerate((0, 50, 100)):
            if step:
                await asyncio.sleep(0.05)
            # A no-op when the request carried no _meta.progressToken.
            await ctx.session.report_progress(value, 100, f"step {step + 1} of 3")
        return types.CallToolResult(content=[_text("Tool with progress executed successfully")])
    if name == "test_sampling":
        prompt = args.get("prompt")
        if not isinstance(prompt, str):
            raise MCPError(INVALID_PARAMS, "test_sampling needs a string argument 'prompt'")
        if not _client_has(ctx, "sampling"):
            return _error_result("The client does not support sampling")
        result = await ctx.session.create_message(
            [types.SamplingMessage(role="user", content=_text(prompt))],
            max_tokens=100,
            related_request_id=ctx.request_id,
        )
        content = result.content
        reply = getattr(content, "text", None)
        if reply is None:
            reply = json.dumps(content.model_dump(mode="json", by_alias=True, exclude_none=True))
        return types.CallToolResult(content=[_text(f"LLM response: {reply}")])
    if name in ("test_elicitation", "test_elicitation_sep1034_defaults", "test_elicitation_sep1330_enums"):
        if not _client_has(ctx, "elicitation"):
            return _error_result("The client does not support elicitation")
        if name == "test_elicitation":
            message = args.get("message")
            if not isinstance(message, str):
                raise MCPError(INVALID_PARAMS, "test_elicitation needs a string argument 'message'")
            schema: dict[str, Any] = {
                "type": "object",
                "properties": {
                    "username": {"type": "string", "description": "User's response"},
                    "email": {"type": "string", "description": "User's email address"},
                },
                "required": ["username", "email"],
            }
        elif name == "test_elicitation_sep1034_defaults":
            message, schema = "Please review and update the form fields with defaults", ELICIT_DEFAULTS_SCHEMA
        else:
            message, schema = "Please select options from the enum fields", ELICIT_ENUMS_SCHEMA
        result = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)
        content = json.dumps(result.content, separators=(",", ":")) if result.content is not None else "{}"
        prefix = "User response" if name == "test_elicitation" else "Elicitation completed"
        return types.CallToolResult(content=[_text(f"{prefix}: action={result.action}, content={content}")])
    if name == "test_reconnection":
        # With an event store (--resumable) the transport hands us a callback that ends
        # this request's SSE stream; the result is then stored and replayed when the
        # client reconnects with Last-Event-ID. Without one this is a plain tool.
        if ctx.close_sse_stream is not None:
            await asyncio.sleep(0.05)
            await ctx.close_sse_stream()
            await asyncio.sleep(0.2)
        return types.CallToolResult(content=[_text("Reconnection test completed")])
    if name == "json_schema_2020_12_tool":
        return types.CallToolResult(content=[_text(json.dumps(args, separators=(",", ":")))])
    if name == "echo":
        text = args.get("text")
        if not isinstance(text, str):
            raise MCPError(INVALID_PARAMS, "echo needs a string argument 'text'")
        return types.CallToolResult(content=[_text(text)])
    if name == "delete_everything":
        return types.CallToolResult(content=[_text(DELETE_EVERYTHING_TEXT)])
    if name == "add_tool" and "add_tool" in TOOL_NAMES:
        if "extra" not in TOOL_NAMES:
            TOOLS.append(types.Tool(name="extra", description="Added by add_tool", input_schema=NO_ARGS))
            TOOL_NAMES.add("extra")
        try:
            await ctx.session.send_tool_list_changed()
        except Exception:  # noqa: BLE001  nobody listening is no failure
            pass
        return types.CallToolResult(content=[_text("added extra")])
    if name == "touch_resource" and "touch_resource" in TOOL_NAMES:
        global WATCHED_TEXT
        WATCHED_TEXT = WATCHED_TEXT + " Touched."
        await _announce(ctx, "notifications/resources/updated", {"uri": "test://watched-resource"})
        return types.CallToolResult(content=[_text("touched test://watched-resource")])
    if name == "add_prompt" and "add_prompt" in TOOL_NAMES:
        if not any(p.name == "extra_prompt" for p in PROMPTS):
            PROMPTS.append(types.Prompt(name="extra_prompt", description="Added by add_prompt"))
        await _announce(ctx, "notifications/prompts/list_changed", None)
        return types.CallToolResult(content=[_text("added extra_prompt")])
    if name == "add_resource" and "add_resource" in TOOL_NAMES:
        if not any(str(r.uri) == "test://extra-resource" for r in RESOURCES):
            RESOURCES.append(types.Resource(uri="test://extra-resource", name="extra-resource"))
        await _announce(ctx, "notifications/resources/list_changed", None)
        return types.CallToolResult(content=[_text("added test://extra-resource")])
    if name == "retitle_echo" and "retitle_echo" in TOOL_NAMES:
        for i, tool in enumerate(TOOLS):
            if tool.name == "echo":
                TOOLS[i] = tool.model_copy(update={"description": "Echoes its text (retitled)"})
        await _announce(ctx, "notifications/tools/list_changed", {"secret": "upstream-only"}, related=True)
        return types.CallToolResult(content=[_text("retitled echo")])
    if name == "announce" and "announce" in TOOL_NAMES:
        method = args.get("method")
        if not isinstance(method, str):
            raise MCPError(INVALID_PARAMS, "announce needs a string argument 'method'")
        await _announce(ctx, method, args.get("params"), related=bool(args.get("related")))
        return types.CallToolResult(content=[_text("announced")])
    if name == "extra" and "extra" in TOOL_NAMES:
        return types.CallToolResult(content=[_text("extra")])
    raise MCPError(INVALID_PARAMS, f"Unknown tool: {name}")


# --------------------------------------------------------------------------- resources

STATIC_TEXT = "This is the content of the static text resource."
WATCHED_TEXT = "This resource is watched for updates."
TEMPLATE_RE = re.compile(r"^test://template/([^/]+)/data$")

RESOURCES = [
    types.Resource(
        uri="test://static-text",
        name="static-text",
        description="A static text resource",
        mime_type="text/plain",
    ),
    types.Resource(
        uri="test://static-binary",
        name="static-binary",
        description="A static binary resource (a 1x1 PNG)",
        mime_type="image/png",
    ),
    types.Resource(
        uri="test://watched-resource",
        name="watched-resource",
        description="A resource clients may subscribe to",
        mime_type="text/plain",
    ),
]

TEMPLATES = [
    types.ResourceTemplate(
        uri_template="test://template/{id}/data",
        name="template-data",
        description="JSON data for the given id",
        mime_type="application/json",
    )
]

# URIs subscribed to, per connection.
_subscriptions: "weakref.WeakKeyDictionary[Any, set[str]]" = weakref.WeakKeyDictionary()


async def list_resources(ctx: Any, params: Any) -> types.ListResourcesResult:
    return types.ListResourcesResult(resources=RESOURCES)


async def list_resource_templates(ctx: Any, params: Any) -> types.ListResourceTemplatesResult:
    return types.ListResourceTemplatesResult(resource_templates=TEMPLATES)


async def read_resource(ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
    uri = str(params.uri)
    if uri == "test://static-text":
        contents: list[Any] = [types.TextResourceContents(uri=uri, mime_type="text/plain", text=STATIC_TEXT)]
    elif uri == "test://static-binary":
        contents = [types.BlobResourceContents(uri=uri, mime_type="image/png", blob=PNG_B64)]
    elif uri == "test://watched-resource":
        contents = [types.TextResourceContents(uri=uri, mime_type="text/plain", text=WATCHED_TEXT)]
    elif m := TEMPLATE_RE.match(uri):
        ident = m.group(1)
        body = {"id": ident, "templateTest": True, "data": f"Data for ID: {ident}"}
        contents = [
            types.TextResourceContents(
                uri=uri, mime_type="application/json", text=json.dumps(body, separators=(",", ":"))
            )
        ]
    else:
        raise MCPError(RESOURCE_NOT_FOUND, f"Resource not found: {uri}", {"uri": uri})
    return types.ReadResourceResult(contents=contents)


async def subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
    conn = _connection(ctx)
    _subscriptions.setdefault(conn, set()).add(str(params.uri))
    return types.EmptyResult()


async def unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    conn = _connection(ctx)
    _subscriptions.get(conn, set()).discard(str(params.uri))
    return types.EmptyResult()


# --------------------------------------------------------------------------- prompts

PROMPTS = [
    types.Prompt(name="test_simple_prompt", description="A simple prompt without arguments"),
    types.Prompt(
        name="test_prompt_with_arguments",
        description="A prompt with two required arguments",
        arguments=[
            types.PromptArgument(name="arg1", description="First test argument", required=True),
            types.PromptArgument(name="arg2", description="Second test argument", required=True),
        ],
    ),
    types.Prompt(
        name="test_prompt_with_embedded_resource",
        description="A prompt that embeds a resource",
        arguments=[types.PromptArgument(name="resourceUri", description="URI of the resource to embed", required=True)],
    ),
    types.Prompt(name="test_prompt_with_image", description="A prompt that carries an image"),
]


def _require(args: dict[str, str], *names: str) -> list[str]:
    missing = [n for n in names if n not in args]
    if missing:
        raise MCPError(INVALID_PARAMS, f"Missing required argument(s): {', '.join(missing)}")
    return [args[n] for n in names]


async def list_prompts(ctx: Any, params: Any) -> types.ListPromptsResult:
    return types.ListPromptsResult(prompts=PROMPTS)


async def get_prompt(ctx: Any, params: types.GetPromptRequestParams) -> types.GetPromptResult:
    args = params.arguments or {}
    name = params.name
    if name == "test_simple_prompt":
        messages = [types.PromptMessage(role="user", content=_text("This is a simple prompt for testing."))]
    elif name == "test_prompt_with_arguments":
        arg1, arg2 = _require(args, "arg1", "arg2")
        messages = [
            types.PromptMessage(role="user", content=_text(f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"))
        ]
    elif name == "test_prompt_with_embedded_resource":
        (uri,) = _require(args, "resourceUri")
        messages = [
            types.PromptMessage(
                role="user",
                content=types.EmbeddedResource(
                    type="resource",
                    resource=types.TextResourceContents(
                        uri=uri, mime_type="text/plain", text="Embedded resource content for testing."
                    ),
                ),
            ),
            types.PromptMessage(role="user", content=_text("Please process the embedded resource above.")),
        ]
    elif name == "test_prompt_with_image":
        messages = [
            types.PromptMessage(role="user", content=types.ImageContent(type="image", data=PNG_B64, mime_type="image/png")),
            types.PromptMessage(role="user", content=_text("Please analyze the image above.")),
        ]
    else:
        raise MCPError(INVALID_PARAMS, f"Unknown prompt: {name}")
    description = next(p.description for p in PROMPTS if p.name == name)
    return types.GetPromptResult(description=description, messages=messages)


# --------------------------------------------------------------------------- utilities

COMPLETIONS = {
    "arg1": ["paris", "park", "party", "test-value", "testing"],
    "arg2": ["world", "word", "work"],
    "resourceUri": ["test://static-text", "test://static-binary", "test://watched-resource"],
    "id": ["1", "2", "3", "123"],
}


async def complete(ctx: Any, params: types.CompleteRequestParams) -> types.CompleteResult:
    candidates = COMPLETIONS.get(params.argument.name, [])
    values = [v for v in candidates if v.startswith(params.argument.value)]
    return types.CompleteResult(completion=types.Completion(values=values, total=len(values), has_more=False))


async def set_logging_level(ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
    _log_levels[_connection(ctx)] = params.level
    return types.EmptyResult()


def build_server() -> Server:
    return Server(
        "mandate-mcp-fixture",
        version="1.0.0",
        instructions="Test fixture for the Mandate MCP gateway and the MCP conformance runner.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_resource_templates,
        on_read_resource=read_resource,
        on_subscribe_resource=subscribe,
        on_unsubscribe_resource=unsubscribe,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        on_completion=complete,
        on_set_logging_level=set_logging_level,
    )


# --------------------------------------------------------------------------- transports

LOCAL_SECURITY = TransportSecuritySettings(
    enable_dns_rebinding_protection=True,
    allowed_hosts=["127.0.0.1", "127.0.0.1:*", "localhost", "localhost:*", "[::1]", "[::1]:*"],
    allowed_origins=[
        "http://127.0.0.1",
        "http://127.0.0.1:*",
        "http://localhost",
        "http://localhost:*",
        "http://[::1]",
        "http://[::1]:*",
    ],
)


class MemoryEventStore:
    """Keeps every SSE event in memory so a client can resume a stream (SEP-1699)."""

    def __init__(self) -> None:
        self._events: list[tuple[str, str, Any]] = []  # (event id, stream id, message or None)
        self._counter = 0

    async def store_event(self, stream_id: str, message: Any) -> str:
        self._counter += 1
        event_id = f"{stream_id}:{self._counter}"
        self._events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: str, send_callback: Any) -> str | None:
        from mcp.server.streamable_http import EventMessage

        index = next((i for i, e in enumerate(self._events) if e[0] == last_event_id), None)
        if index is None:
            return None
        stream_id = self._events[index][1]
        for event_id, sid, message in self._events[index + 1 :]:
            if sid == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


class TraceLog:
    """ASGI wrapper: appends one JSON line per HTTP request to PATH with the request's
    `traceparent` / `tracestate` headers and its JSON body (for the tracing tests)."""

    def __init__(self, app: Any, path: str) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wanted = (b"traceparent", b"tracestate")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in wanted}
        chunks: list[bytes] = []

        async def recording() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    try:
                        body = json.loads(b"".join(chunks) or b"null")
                    except ValueError:
                        body = None
                    with open(self.path, "a", encoding="utf-8") as f:
                        f.write(json.dumps({"headers": headers, "body": body}) + "\n")
            return message

        await self.app(scope, recording, send)


async def serve_http(port: int, resumable: bool = False, trace_log: str | None = None) -> None:
    import uvicorn

    extra: dict[str, Any] = {}
    if resumable:
        from mcp.server.streamable_http import EventStore

        EventStore.register(MemoryEventStore)
        extra = {"event_store": MemoryEventStore(), "retry_interval": 500}
    app = build_server().streamable_http_app(
        streamable_http_path="/mcp", transport_security=LOCAL_SECURITY, **extra
    )
    if trace_log:
        app = TraceLog(app, trace_log)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    print(f"LISTENING http://127.0.0.1:{bound}/mcp", flush=True)
    await server.serve(sockets=[sock])


async def serve_stdio() -> None:
    from mcp.server.stdio import stdio_server

    server = build_server()
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--port", type=int, help="serve Streamable HTTP on 127.0.0.1:PORT/mcp (0 = any free port)")
    mode.add_argument("--stdio", action="store_true", help="serve over stdin/stdout")
    parser.add_argument(
        "--resumable",
        action="store_true",
        help="HTTP only: keep SSE events in memory, send priming events with retry: 500 and "
        "let test_reconnection close its stream mid-call (for the server-sse-polling scenario)",
    )
    parser.add_argument(
        "--trace-log",
        metavar="PATH",
        help="HTTP only: append each request's traceparent / tracestate headers and JSON body to PATH",
    )
    parser.add_argument(
        "--dynamic",
        action="store_true",
        help="add the tool add_tool, which adds the tool extra and sends tools/list_changed",
    )
    args = parser.parse_args()
    if args.dynamic:
        TOOLS.append(types.Tool(name="add_tool", description="Adds the tool extra", input_schema=NO_ARGS))
        TOOL_NAMES.add("add_tool")
        TOOLS.append(
            types.Tool(name="touch_resource", description="Changes test://watched-resource", input_schema=NO_ARGS)
        )
        TOOL_NAMES.add("touch_resource")
        for extra, description in [
            ("add_prompt", "Adds the prompt extra_prompt"),
            ("add_resource", "Adds the resource test://extra-resource"),
            ("retitle_echo", "Changes echo's description"),
            ("announce", "Sends the notification it is given"),
        ]:
            TOOLS.append(types.Tool(name=extra, description=description, input_schema={"type": "object"}))
            TOOL_NAMES.add(extra)
    try:
        if args.stdio:
            asyncio.run(serve_stdio())
        else:
            asyncio.run(serve_http(args.port, args.resumable, args.trace_log))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
