// An enterprise identity provider for the ID-JAG test (tests/enterprise_idp.rs):
// oidc-provider (pinned in package.json) on 127.0.0.1 with its own signing key
// (published at /jwks), one confidential client — the MCP client, registered under
// the same id it has at Mandate — and the Identity Assertion JWT Authorization Grant
// issuance of draft-ietf-oauth-identity-assertion-authz-grant: an RFC 8693 token
// exchange of the person's ID token (requested_token_type id-jag, audience Mandate's
// issuer, resource Mandate's MCP URL) for an ID-JAG the provider signs
// (typ oauth-id-jag+jwt; iss, sub, aud, client_id, resource, scope, jti, iat, exp).
//
//   node idp_jag.mjs --client-id ID --client-secret SECRET --account SUB ...
//
// GET /test/id_token?sub=SUB stands in for the person's single sign-on with this
// provider (which tests/console_oidc.rs drives in a browser): an ID token for the
// client, signed with the provider's key. Prints {"issuer": …} once it listens.
import Provider, { errors } from 'oidc-provider';
import { SignJWT, exportJWK, generateKeyPair, jwtVerify, createLocalJWKSet } from 'jose';
import { randomUUID } from 'node:crypto';
import { freePort, serve } from './listen.mjs';

const o = { accounts: new Set() };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const [k, v] = [argv[i], argv[i + 1]];
  if (v === undefined) throw new Error(`${k} needs a value`);
  switch (k) {
    case '--client-id': o.clientId = v; break;
    case '--client-secret': o.clientSecret = v; break;
    case '--account': o.accounts.add(v); break;
    default: throw new Error(`unknown option ${k}`);
  }
}
if (!o.clientId || !o.clientSecret) throw new Error('--client-id and --client-secret are required');

const port = await freePort();
const issuer = `http://127.0.0.1:${port}`;
const { privateKey } = await generateKeyPair('ES256', { extractable: true });
const jwk = { ...(await exportJWK(privateKey)), kid: 'idp-1', alg: 'ES256', use: 'sig' };
const { d, ...publicJwk } = jwk;
const ownKeys = createLocalJWKSet({ keys: [publicJwk] });

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ID_TOKEN = 'urn:ietf:params:oauth:token-type:id_token';
const ID_JAG = 'urn:ietf:params:oauth:token-type:id-jag';

const provider = new Provider(issuer, {
  clients: [{
    client_id: o.clientId,
    client_secret: o.clientSecret,
    redirect_uris: [],
    grant_types: [TOKEN_EXCHANGE],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES256',
  }],
  jwks: { keys: [jwk] },
  cookies: { keys: ['mandate-idp-test-cookie-key'] },
});

async function sign(claims, typ) {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ ...claims, jti: randomUUID() })
    .setProtectedHeader({ alg: 'ES256', kid: 'idp-1', typ })
    .setIssuer(issuer).setIssuedAt(now).setExpirationTime(now + 300)
    .sign(privateKey);
}

provider.use(async (ctx, next) => {
  if (ctx.path !== '/test/id_token') return next();
  const sub = ctx.query.sub;
  if (!o.accounts.has(sub)) { ctx.status = 404; ctx.body = { error: 'no such account' }; return; }
  ctx.body = { id_token: await sign({ sub, aud: o.clientId }, 'JWT') };
});

provider.registerGrantType(TOKEN_EXCHANGE, async (ctx) => {
  const p = ctx.oidc.params;
  if (p.requested_token_type !== ID_JAG) throw new errors.InvalidRequest('only ID-JAGs are issued here');
  if (p.subject_token_type !== ID_TOKEN) throw new errors.InvalidRequest('the subject token must be an ID token');
  if (!p.audience || !p.resource) throw new errors.InvalidRequest('audience and resource are required');
  let subject;
  try {
    ({ payload: subject } = await jwtVerify(p.subject_token, ownKeys, { issuer, audience: ctx.oidc.client.clientId }));
  } catch (e) {
    throw new errors.InvalidGrant(`the ID token does not verify: ${e.code || e.message}`);
  }
  const jag = await sign({
    sub: subject.sub, aud: p.audience, client_id: ctx.oidc.client.clientId,
    resource: p.resource, ...(p.scope ? { scope: p.scope } : {}),
  }, 'oauth-id-jag+jwt');
  ctx.body = { access_token: jag, issued_token_type: ID_JAG, token_type: 'N_A', expires_in: 300 };
}, ['subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'resource', 'scope'], ['resource']);

serve(provider, port, issuer);
