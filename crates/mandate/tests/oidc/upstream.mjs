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
import Provider from 'oidc-provider';
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
      default: throw new Error(`unknown option ${k}`);
    }
  }
  if (!o.redirectUri || !o.clientSecret) throw new Error('--redirect-uri and --client-secret are required');
  return o;
}

const o = options(process.argv.slice(2));
const port = o.port || await freePort();
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [{
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
provider.use(async (ctx, next) => {
  if (ctx.path !== '/test/whoami') return next();
  const bearer = (ctx.get('authorization') || '').replace(/^Bearer /, '');
  const token = bearer && await provider.AccessToken.find(bearer);
  if (!token) { ctx.status = 401; ctx.body = { error: 'invalid_token' }; return; }
  ctx.body = { sub: token.accountId, scope: token.scope };
});

serve(provider, port, issuer);
