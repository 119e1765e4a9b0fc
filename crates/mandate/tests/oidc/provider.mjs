// A local OpenID Provider for the console's OIDC sign-in test (tests/console_oidc.rs):
// oidc-provider (pinned in package.json) on 127.0.0.1, one confidential client, a few
// accounts, and its built-in development login and consent screens.
//
//   node provider.mjs --redirect-uri URI --client-secret SECRET
//        [--port N] [--account LOGIN=EMAIL ...] [--unverified LOGIN]
//
// Prints one JSON line {"issuer": "http://127.0.0.1:PORT"} once it listens, then serves
// until its standard input ends (the test's end) or it is killed.
import Provider from 'oidc-provider';
import { freePort, serve } from './listen.mjs';

function options(argv) {
  const o = { port: 0, accounts: {}, unverified: new Set() };
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    if (v === undefined) throw new Error(`${k} needs a value`);
    switch (k) {
      case '--port': o.port = Number(v); break;
      case '--redirect-uri': o.redirectUri = v; break;
      case '--client-secret': o.clientSecret = v; break;
      case '--account': { const [login, email] = v.split('='); o.accounts[login] = email; break; }
      case '--unverified': o.unverified.add(v); break;
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
    client_id: 'mandate-console',
    client_secret: o.clientSecret,
    redirect_uris: [o.redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  // Put the scope's claims (email) in the ID token, not only behind userinfo.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => true },
  cookies: { keys: ['mandate-oidc-test-cookie-key'] },
  async findAccount(ctx, id) {
    const email = o.accounts[id];
    if (!email) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email, email_verified: !o.unverified.has(id) };
      },
    };
  },
});

serve(provider, port, issuer);
