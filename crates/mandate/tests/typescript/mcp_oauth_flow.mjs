// A whole working day of a standard MCP client, with the TypeScript SDK only
// (@modelcontextprotocol/sdk, pinned here): its Client over StreamableHTTPClientTransport
// with an OAuthClientProvider whose storage callbacks are the ones below. The SDK does
// the rest: RFC 9728 / RFC 8414 discovery, RFC 7591 registration, PKCE S256, RFC 8707
// resource, the code exchange (finishAuth), and a refresh whenever a request is
// answered 401.
//
//   node mcp_oauth_flow.mjs URL
//
// Run by crates/mandate/tests/sdk_clients.rs, which plays the person in Chromium. One
// JSON line per thing done on stdout; the lines the test answers on stdin:
//
//   {"authorize": URL}                  the person signs in and grants; the code comes
//                                       back to a loopback listener (the redirect URI)
//   {"asked": URL, "mode": "url"}       a held call: the test approves it in the console
//                                       and answers {"approved": true}
//   {"waiting_for": "revocation"}       the test revokes the mandate in the console and
//                                       answers {"revoked": true}
//
// and the rest it only reads: {"http": …} for every request to the authorization server
// and each MCP request's status, the steps' results, {"waited": S} while the access
// token expires. A second {"authorize": …} is the client sent back to its person.
// Nothing secret (codes, verifiers, tokens) is printed, only fingerprints.
//
// What this SDK (1.x) speaks: MCP up to 2025-11-25. It has no 2026-07-28 client (no
// multi-round-trip `input_required` result); a held call reaches it as the 2025-11-25
// URL elicitation error (-32042, UrlElicitationRequiredError), after which the
// application retries the call itself.
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { createInterface } from 'node:readline';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ElicitRequestSchema, McpError, UrlElicitationRequiredError } from '@modelcontextprotocol/sdk/types.js';

const TIMEOUT_MS = 180_000;
const [url] = process.argv.slice(2);
if (!url) {
  console.error('usage: node mcp_oauth_flow.mjs URL');
  process.exit(2);
}

const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const fingerprint = (secret) => (secret ? createHash('sha256').update(secret).digest('hex').slice(0, 12) : null);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const within = (promise, what) => Promise.race([
  promise,
  sleep(TIMEOUT_MS).then(() => { throw new Error(`timed out waiting for ${what}`); }),
]);

// What the test says, one JSON line at a time.
const input = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function waitForTest(key) {
  const { value, done } = await within(input.next(), key);
  const said = done ? {} : JSON.parse(value);
  if (said[key] !== true) throw new Error(`expected {"${key}": true} from the test, got ${value}`);
}

// The redirect URI: one request to /callback, its query handed to the flow.
let deliver;
const callbackQuery = new Promise((resolve) => { deliver = resolve; });
const listener = createServer((req, res) => {
  const u = new URL(req.url, 'http://127.0.0.1');
  if (u.pathname === '/callback') deliver(u.searchParams);
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end('<!doctype html><title>Done</title><p>Authorization complete. You can close this window.');
});
await new Promise((resolve) => listener.listen(0, '127.0.0.1', resolve));
const redirectUrl = `http://127.0.0.1:${listener.address().port}/callback`;

/** The SDK's OAuthClientProvider: in-memory storage, the person reached through stdout. */
class Provider {
  constructor() {
    this.client = undefined;
    this.stored = undefined;
    this.savedAt = 0;
    this.verifier = undefined;
    this.expectedState = undefined;
    this.askedForPerson = 0;
  }
  get redirectUrl() { return redirectUrl; }
  get clientMetadata() {
    // What the SDK's own examples register (a confidential client posting its secret):
    // Mandate registers public clients only and answers what it registered (RFC 7591
    // §3.2.1), which the SDK takes as it comes.
    return {
      client_name: 'TypeScript SDK Agent',
      redirect_uris: [redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_post',
    };
  }
  state() {
    this.expectedState = randomBytes(16).toString('hex');
    return this.expectedState;
  }
  clientInformation() { return this.client; }
  saveClientInformation(info) {
    this.client = info;
    emit({ registered: { client_id: info.client_id, token_endpoint_auth_method: info.token_endpoint_auth_method ?? null, secret: 'client_secret' in info } });
  }
  tokens() { return this.stored; }
  saveTokens(tokens) {
    this.stored = tokens;
    this.savedAt = Date.now();
    emit({ tokens_saved: { access: fingerprint(tokens.access_token), refresh: fingerprint(tokens.refresh_token), expires_in: tokens.expires_in ?? null, scope: tokens.scope ?? null } });
  }
  redirectToAuthorization(authorizationUrl) {
    this.askedForPerson += 1;
    emit({ authorize: authorizationUrl.href });
  }
  saveCodeVerifier(verifier) { this.verifier = verifier; }
  codeVerifier() {
    if (!this.verifier) throw new Error('no code verifier saved');
    return this.verifier;
  }
  invalidateCredentials(scope) {
    emit({ invalidated: scope });
    if (scope === 'all' || scope === 'client') this.client = undefined;
    if (scope === 'all' || scope === 'tokens') this.stored = undefined;
    if (scope === 'all' || scope === 'verifier') this.verifier = undefined;
  }
}
const provider = new Provider();

// Every request the SDK makes goes through here: what it asked of the authorization
// server (and what the token endpoint answered), and each MCP request's status.
async function loggedFetch(target, init = {}) {
  const response = await fetch(target, init);
  const u = new URL(target instanceof Request ? target.url : String(target));
  const line = { http: init.method ?? 'GET', path: u.pathname, status: response.status };
  if (u.pathname === '/oauth2/token') {
    line.grant_type = new URLSearchParams(String(init.body)).get('grant_type');
    if (!response.ok) line.error = (await response.clone().json().catch(() => ({}))).error ?? null;
  } else if (u.pathname.startsWith('/mcp')) {
    if (init.method !== 'POST' || response.ok) return response;
    try { line.rpc = JSON.parse(String(init.body)).method; } catch { /* not JSON-RPC */ }
  }
  emit(line);
  return response;
}

const newTransport = () => new StreamableHTTPClientTransport(new URL(url), { authProvider: provider, fetch: loggedFetch });
const newClient = () => {
  const client = new Client({ name: 'mandate-sdk-flow', version: '1.0.0' }, { capabilities: { elicitation: { url: {} } } });
  // Nothing sends elicitation/create requests in this flow; a held call comes as -32042.
  client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'decline' }));
  return client;
};

// 1. Connect: 401, discovery, registration, the person is asked (UnauthorizedError).
let client = newClient();
try {
  await within(client.connect(newTransport()), 'connect');
  throw new Error('connected without authorization');
} catch (e) {
  if (!(e instanceof UnauthorizedError)) throw e;
}
const query = await within(callbackQuery, 'the redirect back from the authorization server');
listener.close();
if (query.get('error')) {
  emit({ authorization_error: query.get('error') });
  process.exit(1);
}
// The SDK's finishAuth takes the code only: the state and RFC 9207 `iss` are the
// application's to check.
const issuer = new URL(url).origin;
emit({ callback: { code: query.has('code'), state_matches: query.get('state') === provider.expectedState, iss: query.get('iss'), iss_is_server: query.get('iss') === issuer } });
// A fresh transport redeems the code, as an application that was restarted meanwhile
// would (the SDK's example reuses the one that threw): it discovers again from the
// well-known path, so it only works when that path and the 401's challenge name one
// resource (RFC 9728 §3.3).
const transport = newTransport();
await within(transport.finishAuth(query.get('code')), 'finishAuth');
client = newClient();
await within(client.connect(transport), 'connect');
emit({ connected: client.getServerVersion()?.name ?? null, protocol: transport.protocolVersion ?? null });

// 2. A tool call.
const listed = await client.listTools();
emit({ op: 'list_tools', result: listed });
const echoed = await client.callTool({ name: 'echo', arguments: { text: 'through the typescript sdk' } });
emit({ op: 'call_tool', name: 'echo', result: echoed });

// 3. The access token expires; the next request is answered 401 and the SDK refreshes
// (the standalone GET stream, closed by the gateway when its token expires, is such a
// request when the SDK reopens it).
async function outliveTheToken() {
  const left = provider.savedAt + (provider.stored.expires_in + 2) * 1000 - Date.now();
  await sleep(Math.max(left, 0));
  emit({ waited: Math.round(left / 100) / 10, for: 'the access token to expire' });
}
await outliveTheToken();
const refreshed = await client.callTool({ name: 'echo', arguments: { text: 'after the refresh' } });
emit({ op: 'call_tool', name: 'echo', result: refreshed, asked_for_person: provider.askedForPerson });

// 4. A held call: the SDK raises the URL elicitation; the person approves; the
// application retries the same call.
const held = { name: 'delete_everything', arguments: { confirm: true } };
try {
  const result = await client.callTool(held);
  emit({ op: 'call_tool', name: held.name, result, held: false });
} catch (e) {
  if (!(e instanceof McpError)) throw e;
  const page = e instanceof UrlElicitationRequiredError ? e.elicitations[0] : null;
  emit({ op: 'call_tool', name: held.name, error: { code: e.code, type: e.constructor.name, reason: e.data?.reason ?? null } });
  emit({ asked: page?.url ?? e.data?.approval_url ?? null, mode: page?.mode ?? null });
  await waitForTest('approved');
  const retried = await client.callTool(held);
  emit({ op: 'call_tool', name: held.name, result: retried, retry: true });
}

// 5. The person revokes the mandate: the next request is 401, the SDK's refresh is
// refused, and it goes back to its person.
emit({ waiting_for: 'revocation' });
await waitForTest('revoked');
try {
  const after = await client.callTool({ name: 'echo', arguments: { text: 'after the revocation' } });
  emit({ op: 'call_tool', name: 'echo', result: after });
} catch (e) {
  emit({ op: 'call_tool', name: 'echo', error: { type: e.constructor.name, message: String(e.message).slice(0, 300) }, sent_back_to_authorization: provider.askedForPerson > 1 });
}
await client.close().catch(() => {});
process.exit(0);
