// A tiny static server for the example apps: an app's folder at `/`, the
// compiled SDK at `/sdk/`, the shared stylesheet at `/common/`, and
// `/config.js`, which tells the page its Coffer server and client id.
//
//   node serve.js address-book --port 8001 --server http://127.0.0.1:8484 --client-id CLIENT_ID
//
// The page's URL (http://127.0.0.1:PORT/) is the app's redirect URI; its
// origin is the one Coffer answers with CORS headers.

import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { dirname, extname, join, normalize, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.json': 'application/json',
};

/** Where each URL prefix is read from. */
function roots(app) {
  return [
    ['/sdk/', join(here, 'sdk-build')],
    ['/common/', join(here, 'common')],
    ['/', join(here, app)],
  ];
}

/**
 * Serves `app` (a folder of this directory) on 127.0.0.1:`port` (0: any
 * free port). `config` ({ server, clientId }) may be filled in later: it is
 * read on every request of `/config.js`. Resolves to { url, config, close() }.
 */
export async function serveApp(app, { port = 0, config = {} } = {}) {
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://127.0.0.1').pathname);
    if (path === '/config.js') {
      res.writeHead(200, { 'content-type': TYPES['.js'], 'cache-control': 'no-store' });
      res.end(`export default ${JSON.stringify(config)};\n`);
      return;
    }
    const [prefix, root] = roots(app).find(([p]) => path.startsWith(p));
    const file = normalize(join(root, path.slice(prefix.length) || 'index.html'));
    if (!file.startsWith(root + sep)) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
      res.end(body);
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
  await new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, '127.0.0.1', ok);
  });
  return {
    url: `http://127.0.0.1:${server.address().port}/`,
    config,
    close: () =>
      new Promise((ok) => {
        server.closeAllConnections();
        server.close(ok);
      }),
  };
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      port: { type: 'string', default: '0' },
      server: { type: 'string', default: 'http://127.0.0.1:8484' },
      'client-id': { type: 'string' },
    },
  });
  const [app] = positionals;
  if (!['address-book', 'birthdays'].includes(app) || !values['client-id']) {
    console.error('usage: node serve.js address-book|birthdays --port PORT --server COFFER_URL --client-id CLIENT_ID');
    process.exit(2);
  }
  const served = await serveApp(app, {
    port: Number(values.port),
    config: { server: values.server, clientId: values['client-id'] },
  });
  console.log(`${app} at ${served.url}`);
}
