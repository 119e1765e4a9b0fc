// An upstream service's OAuth authorization server for the connections test
// (tests/connections.rs): oidc-provider (pinned in package.json) on 127.0.0.1, one
// confidential client (Mandate's gateway) with refresh tokens, access tokens that live
// a few seconds (so that a refresh is seen), token revocation (RFC 7009), and its
// development login and consent screens.
//
//   node upstream.mjs --port N --redirect-uri URI --client-secret SECRET
//        --access-ttl SECONDS --token-log PATH [--account LOGIN ...]
//
// Prints one JSON line {"issuer": "http://127.0.0.1:PORT"} once it listens, then serves
// until its standard input ends (the test's end) or it is killed. GET /test/whoami with
// a bearer access token answers {"sub": …} for a token it issued and still honours
// (the test's MCP upstream asks it whose token a call carried), else 401. Every access
// and refresh token it issues is appended to the token log, one per line as
// `access_token|refresh_token ACCOUNT TOKEN`, so that the test can look for them where
// they must never be (and revoke one behind Mandate's back).
//
// With --mandate-issuer ISS --exchange-client-secret SECRET it also issues tokens for
// Mandate's assertions (its outbound token exchange) to a second client,
// `mandate-exchange`: RFC 8693 token exchange (a subject token naming the person, an
// actor token naming the agent, acting through Mandate, and the mandate) and the RFC
// 7523 JWT bearer grant. Both verify every assertion against Mandate's published JWKS
// (ISS/oauth2/jwks): issuer, audience (this issuer), expiry, and a jti used once. The
// token's whoami answer then also names the mandate and the agent. Every exchange it
// answers is counted (GET /test/exchanges).
import Provider from 'oidc-provider';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { freePort, serve } from './listen.mjs';

function options(argv) {
  const o = { accounts: new Set(), accessTtl: 5 };
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    if (v === undefined) throw new Error(`${k} needs a value`);
    switch (k) {
      case '--redirect-uri': o.redirectUri = v; break;
      case '--client-secret': o.clientSecret = v; break;
      case '--access-ttl': o.accessTtl = Number(v); break;
      case '--port': o.port = Number(v); break;
      case '--token-log': o.tokenLog = v; break;
      case '--account': o.accounts.add(v); break;
      case '--mandate-issuer': o.mandateIssuer = v; break;
      case '--exchange-client-secret': o.exchangeSecret = v; break;
      default: throw new Error(`unknown option ${k}`);
    }
  }
  if (!o.redirectUri || !o.clientSecret) throw new Error('--redirect-uri and --client-secret are required');
  return o;
}

const o = options(process.argv.slice(2));
const port = o.port || await freePort();
const issuer = `http://127.0.0.1:${port}`;

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const exchangeClients = o.exchangeSecret ? [{
  client_id: 'mandate-exchange',
  client_secret: o.exchangeSecret,
  redirect_uris: [],
  grant_types: [TOKEN_EXCHANGE, JWT_BEARER],
  response_types: [],
  token_endpoint_auth_method: 'client_secret_basic',
}] : [];

const provider = new Provider(issuer, {
  clients: [...exchangeClients, {
    client_id: 'mandate-gateway',
    client_secret: o.clientSecret,
    redirect_uris: [o.redirectUri],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  scopes: ['openid', 'calendar.read', 'offline_access'],
  features: { devInteractions: { enabled: true }, revocation: { enabled: true } },
  pkce: { required: () => true },
  ttl: { AccessToken: o.accessTtl },
  issueRefreshToken: async () => true,
  cookies: { keys: ['mandate-upstream-test-cookie-key'] },
  async findAccount(ctx, id) {
    if (!o.accounts.has(id)) return undefined;
    return { accountId: id, async claims() { return { sub: id }; } };
  },
});
const { appendFileSync } = await import('node:fs');
for (const saved of ['access_token.saved', 'refresh_token.saved']) {
  const kind = saved.split('.')[0];
  provider.on(saved, (token) => {
    if (o.tokenLog) appendFileSync(o.tokenLog, `${kind} ${token.accountId} ${token.jti}\n`);
  });
}

// Whose access token is this? (What a real API does with its authorization server.)
let exchanges = 0;
// What each exchanged token was issued for, by its id.
const issuedFor = new Map();
provider.use(async (ctx, next) => {
  if (ctx.path === '/test/exchanges') { ctx.body = { exchanges }; return; }
  if (ctx.path !== '/test/whoami') return next();
  const bearer = (ctx.get('authorization') || '').replace(/^Bearer /, '');
  const token = bearer && await provider.AccessToken.find(bearer);
  if (!token) { ctx.status = 401; ctx.body = { error: 'invalid_token' }; return; }
  ctx.body = { sub: token.accountId, scope: token.scope, ...(issuedFor.get(token.jti) || {}) };
});

if (o.mandateIssuer && o.exchangeSecret) {
  const jwks = createRemoteJWKSet(new URL(`${o.mandateIssuer}/oauth2/jwks`));
  const used = new Set();
  const { InvalidGrant, InvalidRequest } = (await import('oidc-provider')).errors;
  // One of Mandate's assertions: signed by a key it publishes, for us, unexpired, new.
  async function verified(jwt, what) {
    if (typeof jwt !== 'string' || !jwt) throw new InvalidRequest(`${what} is missing`);
    let payload;
    try {
      ({ payload } = await jwtVerify(jwt, jwks, { issuer: o.mandateIssuer, audience: issuer, typ: 'JWT' }));
    } catch (e) {
      throw new InvalidGrant(`${what} does not verify: ${e.code || e.message}`);
    }
    if (!payload.jti || used.has(payload.jti)) throw new InvalidGrant(`${what} was used before`);
    if (payload.exp - payload.iat > 300) throw new InvalidGrant(`${what} lives too long`);
    used.add(payload.jti);
    return payload;
  }
  async function issue(ctx, person, extra) {
    const token = new provider.AccessToken({
      accountId: person, client: ctx.oidc.client, scope: 'calendar.read', gty: 'exchange',
    });
    const value = await token.save();
    issuedFor.set(token.jti, extra);
    exchanges += 1;
    ctx.body = { access_token: value, token_type: 'Bearer', expires_in: token.expiration, scope: token.scope };
  }
  provider.registerGrantType(TOKEN_EXCHANGE, async (ctx) => {
    const p = ctx.oidc.params;
    if (p.subject_token_type !== JWT_TYPE || p.actor_token_type !== JWT_TYPE) {
      throw new InvalidRequest('subject and actor tokens must be JWTs');
    }
    if (p.audience !== issuer) throw new InvalidRequest('the audience is not this service');
    const subject = await verified(p.subject_token, 'the subject token');
    const actor = await verified(p.actor_token, 'the actor token');
    if (actor.act?.sub !== o.mandateIssuer) throw new InvalidGrant('the actor does not act through Mandate');
    // Read from the form itself: declared as a parameter, oidc-provider would take it
    // for its own Rich Authorization Requests feature (off here).
    const details = JSON.parse(ctx.oidc.body.authorization_details || '[]');
    if (details[0]?.mandate_id !== actor.mandate_id) throw new InvalidGrant('the mandate differs');
    await issue(ctx, subject.sub, { mandate_id: actor.mandate_id, agent: actor.sub, grant: 'token_exchange' });
  }, ['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type',
      'requested_token_type', 'audience', 'scope', 'resource']);
  provider.registerGrantType(JWT_BEARER, async (ctx) => {
    const a = await verified(ctx.oidc.params.assertion, 'the assertion');
    if (!a.act?.sub || !a.mandate_id) throw new InvalidGrant('the assertion names no agent or mandate');
    await issue(ctx, a.sub, { mandate_id: a.mandate_id, agent: a.act.sub, grant: 'jwt_bearer' });
  }, ['assertion', 'scope', 'resource']);
}

serve(provider, port, issuer);
