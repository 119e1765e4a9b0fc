// What the scripts of this directory share: a free port on 127.0.0.1 (port 0 would
// make the issuer unknowable before listening), and serving a provider there until
// standard input ends (the test's end), saying {"issuer": …} once it listens.
import { createServer } from 'node:net';

export async function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

export function serve(provider, port, issuer) {
  provider.on('server_error', (ctx, err) => console.error('oidc-provider server_error', err));
  const server = provider.listen(port, '127.0.0.1', () => {
    console.log(JSON.stringify({ issuer }));
  });
  process.stdin.on('end', () => { server.close(); process.exit(0); });
  process.stdin.resume();
}
