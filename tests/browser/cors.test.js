// A browser app on its own origin, as a single-page app with no server of
// its own runs: its page (served from a second local server, another
// origin) sends the person to Coffer to sign in and allow, gets the code
// back on its redirect URI, exchanges it at /oauth/token with fetch (PKCE),
// and calls the data API with `Authorization: Bearer` — a JSON POST and a
// PATCH, which the browser preflights. Coffer allows it because the app's
// redirect URI is on that origin. A page on a third origin, registered by
// no app, is refused by the browser (CORS) even with a valid token.

import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { launchChromium, startCoffer } from './coffer.js';

const EMAIL = 'ada@example.org';
const PASSWORD = 'correct horse battery staple';
const SCOPE = 'notes.notes:read+create+update';

let coffer;
let browser;
let spa;
let stranger;
let clientId;

/** A local web server answering every path with `page()`; { origin, close }. */
async function startSite(page) {
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(page());
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return {
    origin: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((ok) => server.close(ok)),
  };
}

/**
 * The single-page app: "Connect your vault" starts the authorization code
 * flow with PKCE; on /callback it exchanges the code, then adds a note,
 * renames it and lists the notes, and shows what happened.
 */
function spaPage() {
  return `<!doctype html>
<meta charset="utf-8">
<title>Notes SPA</title>
<h1>Notes SPA</h1>
<button id="connect">Connect your vault</button>
<p id="status">Not connected.</p>
<ul id="notes"></ul>
<script type="module">
const COFFER = ${JSON.stringify(coffer.base)};
const CLIENT_ID = ${JSON.stringify(clientId)};
const REDIRECT = location.origin + '/callback';
const status = (text) => { document.getElementById('status').textContent = text; };
const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
  .replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');

document.getElementById('connect').addEventListener('click', async () => {
  const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
  const challenge = b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  sessionStorage.setItem('verifier', verifier);
  location.assign(COFFER + '/oauth/authorize?' + new URLSearchParams({
    response_type: 'code', client_id: CLIENT_ID, redirect_uri: REDIRECT,
    scope: ${JSON.stringify(SCOPE)}, state: 'spa-1',
    code_challenge: challenge, code_challenge_method: 'S256',
  }));
});

async function api(token, method, path, body) {
  const headers = { authorization: 'Bearer ' + token };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(COFFER + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, headers: response.headers, body: await response.json() };
}

if (location.pathname === '/callback') {
  try {
    const query = new URLSearchParams(location.search);
    const exchanged = await fetch(COFFER + '/oauth/token', {
      method: 'POST',
      body: new URLSearchParams({
        grant_type: 'authorization_code', code: query.get('code'), redirect_uri: REDIRECT,
        client_id: CLIENT_ID, code_verifier: sessionStorage.getItem('verifier'),
      }),
    });
    const tokens = await exchanged.json();
    if (exchanged.status !== 200) throw new Error('token: ' + JSON.stringify(tokens));
    window.accessToken = tokens.access_token;
    const rows = '/v1/tables/notes.notes/rows';
    const added = await api(tokens.access_token, 'POST', rows, { title: 'Written in the browser' });
    if (added.status !== 201) throw new Error('insert: ' + JSON.stringify(added.body));
    const renamed = await api(tokens.access_token, 'PATCH', rows + '/' + added.body.id, { title: 'Renamed in the browser' });
    if (renamed.status !== 200) throw new Error('update: ' + JSON.stringify(renamed.body));
    const listed = await api(tokens.access_token, 'GET', rows);
    for (const note of listed.body.rows) {
      const item = document.createElement('li');
      item.textContent = note.title;
      document.getElementById('notes').append(item);
    }
    // A refusal is readable, with its challenge (an exposed header).
    const refused = await api('not-a-token', 'GET', rows);
    window.challenge = refused.headers.get('www-authenticate');
    status('Connected: added ' + added.status + ', renamed ' + renamed.status + ', listed ' + listed.status
      + ', refused ' + refused.status + '.');
  } catch (e) {
    status('Failed: ' + e);
  }
}
</script>`;
}

/** A page on an origin no app registered. */
function strangerPage() {
  return '<!doctype html><meta charset="utf-8"><title>Somewhere else</title><h1>Somewhere else</h1>';
}

before(async () => {
  coffer = await startCoffer();
  browser = await launchChromium();
  coffer.cli(['user', 'create', '--email', EMAIL], `${PASSWORD}\n`);
  spa = await startSite(spaPage);
  stranger = await startSite(strangerPage);
  // The app's only redirect URI is on the SPA's origin (its port included).
  const app = JSON.parse(
    coffer.cli(['app', 'register', '--name', 'Notes SPA', '--redirect-uri', `${spa.origin}/callback`, '--json']),
  );
  clientId = app.client_id;
});

after(async () => {
  await browser?.close();
  await spa?.close();
  await stranger?.close();
  await coffer?.stop();
});

test('a browser app on its registered origin signs in, gets a token and calls the API', async (t) => {
  const context = await browser.newContext({ viewport: { width: 900, height: 600 } });
  const page = await context.newPage();
  await page.goto(`${spa.origin}/`);
  await page.getByRole('button', { name: 'Connect your vault' }).click();

  // On Coffer: sign in, then allow.
  await page.getByLabel('Email address').fill(EMAIL);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Notes SPA wants to use your data' }).waitFor();
  await page.getByRole('button', { name: 'Allow' }).click();

  // Back on the app's origin, which did everything else with fetch.
  await page.waitForURL((url) => url.origin === spa.origin && url.pathname === '/callback');
  const status = page.locator('#status');
  await assert.doesNotReject(
    status.filter({ hasText: /^(Connected|Failed)/ }).waitFor(),
    'the page finished',
  );
  assert.equal(
    await status.textContent(),
    'Connected: added 201, renamed 200, listed 200, refused 401.',
  );
  assert.deepEqual(await page.locator('#notes li').allTextContents(), ['Renamed in the browser']);
  assert.match(await page.evaluate(() => window.challenge), /^Bearer /);

  const shot = join(mkdtempSync(join(tmpdir(), 'coffer-cors-')), 'spa.png');
  await page.screenshot({ path: shot, fullPage: true });
  t.diagnostic(`screenshot: ${shot}`);

  // The same token, used from a page on an origin no app registered: the
  // browser refuses to let the page send the preflighted requests or read
  // the answers.
  const token = await page.evaluate(() => window.accessToken);
  const other = await context.newPage();
  const consoleErrors = [];
  other.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(message.text());
  });
  await other.goto(`${stranger.origin}/`);
  const attempts = await other.evaluate(
    async ({ base, token }) => {
      const attempt = (path, init) =>
        fetch(base + path, init).then(
          (r) => `answered ${r.status}`,
          (e) => `${e.name}: ${e.message}`,
        );
      return {
        post: await attempt('/v1/tables/notes.notes/rows', {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ title: 'Written from elsewhere' }),
        }),
        get: await attempt('/v1/tables/notes.notes/rows', { headers: { authorization: `Bearer ${token}` } }),
        // A request with no preflight at all: the answer still lacks the
        // allow header, so the page cannot read it.
        metadata: await attempt('/.well-known/oauth-authorization-server', {}),
      };
    },
    { base: coffer.base, token },
  );
  assert.deepEqual(attempts, {
    post: 'TypeError: Failed to fetch',
    get: 'TypeError: Failed to fetch',
    metadata: 'TypeError: Failed to fetch',
  });
  assert.ok(
    consoleErrors.some((m) => m.includes('blocked by CORS policy') && m.includes(stranger.origin)),
    `a CORS error in the console: ${JSON.stringify(consoleErrors)}`,
  );

  // The refused POST never reached the API (its preflight failed): the
  // vault holds the one note the app wrote.
  const listed = await fetch(`${coffer.base}/v1/tables/notes.notes/rows`, {
    headers: { authorization: `Bearer ${token}` },
  }).then((r) => r.json());
  assert.deepEqual(
    listed.rows.map((r) => r.title),
    ['Renamed in the browser'],
  );
  await context.close();
});
