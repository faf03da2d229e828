// The SDK in a real browser (Debian's headless Chromium), as a single-page
// app with no server of its own uses it: the page, served from its own
// origin, signs the user in through Coffer's pages and back, keeps its
// tokens and its non-extractable DPoP key in IndexedDB across a reload,
// calls the data API across origins (CORS), and follows a live query.

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';

import { chromium, type Browser as Chromium, type Page } from 'playwright-core';

import type { Tables } from './generated/schemas.js';
import { PASSWORD, newUser, signedIn, startCoffer, type Browser, type Coffer } from './coffer.js';

const CHROMIUM = '/usr/bin/chromium';
const dist = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist');
const EMAIL = 'barbara@example.org';

let coffer: Coffer;
let user: Browser;
let app: Server;
let origin: string;
let clientId: string;
let browser: Chromium;

/** The app's one page: it completes a sign-in when it is the redirect back, and exposes the client to the test. */
function page(server: string): string {
  return `<!doctype html><title>Address book</title><h1>Address book</h1>
<script type="module">
import { createVault, indexedDbStore } from '/sdk/index.js';
const vault = createVault({
  server: ${JSON.stringify(server)},
  clientId: ${JSON.stringify(clientId)},
  redirectUri: location.origin + '/callback',
  scope: 'contacts.people:read+create',
  store: indexedDbStore('address-book'),
});
window.vault = vault;
try {
  const signedIn = await vault.handleRedirect();
  if (signedIn) history.replaceState(null, '', signedIn.returnTo ?? '/');
  document.body.dataset.state = (await vault.isSignedIn()) ? 'signed-in' : 'signed-out';
} catch (e) {
  document.body.dataset.state = 'error: ' + e.message;
}
</script>`;
}

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (scripts/test.sh does)`);
  coffer = await startCoffer();
  user = await newUser(coffer, EMAIL);
  // The app's origin: its page, and the SDK's build under /sdk/.
  app = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    if (path.startsWith('/sdk/')) {
      const file = normalize(join(dist, path.slice('/sdk/'.length)));
      if (!file.startsWith(dist) || !existsSync(file)) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(readFileSync(file));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page(coffer.base));
  });
  await new Promise<void>((ok) => app.listen(0, '127.0.0.1', ok));
  const address = app.address();
  origin = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  clientId = (
    JSON.parse(
      coffer.cli(['app', 'register', '--name', 'Address book', '--redirect-uri', `${origin}/callback`, '--json']),
    ) as { client_id: string }
  ).client_id;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  await new Promise((ok) => (app ? app.close(ok) : ok(undefined)));
  await coffer?.stop();
});

async function state(tab: Page): Promise<string> {
  await tab.waitForFunction(() => document.body?.dataset.state !== undefined, undefined, { timeout: 15_000 });
  return (await tab.evaluate(() => document.body.dataset.state)) ?? '';
}

test('a page signs in through the consent page, keeps its tokens and key in IndexedDB, and calls the API across origins', async () => {
  const context = await browser.newContext();
  try {
    const tab = await context.newPage();
    await tab.goto(`${origin}/`);
    assert.equal(await state(tab), 'signed-out');

    // signIn() sends the browser to Coffer; the person signs in and allows.
    await tab.evaluate(() => (window as any).vault.signIn({ returnTo: '/people' }));
    await tab.waitForURL(`${coffer.base}/**`);
    await tab.getByLabel('Email address').fill(EMAIL);
    await tab.getByLabel('Password').fill(PASSWORD);
    await tab.getByRole('button', { name: 'Sign in' }).click();
    await tab.getByRole('button', { name: 'Allow' }).click();
    await tab.waitForURL(`${origin}/people`);
    assert.equal(await state(tab), 'signed-in');

    const tokens = await tab.evaluate(async () => {
      const vault = (window as any).vault;
      const t = await vault.tokens();
      const signer = await vault.session.signer();
      return { type: t.tokenType, scope: t.scope, extractable: signer.keyPair.privateKey.extractable };
    });
    assert.deepEqual(tokens, { type: 'DPoP', scope: 'contacts.people:read+create', extractable: false });

    const inserted = await tab.evaluate(async () => {
      const people = (window as any).vault.table('contacts.people');
      await people.insert({ id: 'barbara', display_name: 'Barbara Liskov' });
      return (await people.list({ select: ['display_name'] })).rows;
    });
    assert.deepEqual(inserted, [{ id: 'barbara', display_name: 'Barbara Liskov' }]);

    // After a reload the tokens and the same key come back from IndexedDB.
    await tab.reload();
    assert.equal(await state(tab), 'signed-in');
    const again = await tab.evaluate(async () => {
      const vault = (window as any).vault;
      return {
        rows: (await vault.table('contacts.people').list({ select: ['display_name'] })).rows,
        extractable: (await vault.session.signer()).keyPair.privateKey.extractable,
      };
    });
    assert.deepEqual(again, { rows: [{ id: 'barbara', display_name: 'Barbara Liskov' }], extractable: false });

    // A live query in the page sees another app's write.
    await tab.evaluate(() => {
      (window as any).seen = [];
      (window as any).vault.subscribe('contacts.people', { order: 'id', select: ['display_name'] }, (rows: unknown[]) =>
        (window as any).seen.push(rows),
      );
    });
    await tab.waitForFunction(() => (window as any).seen.length > 0, undefined, { timeout: 10_000 });
    const { vault: other } = await signedIn<Tables>(coffer, user, 'Other app', 'contacts.people:read+create');
    await other.table('contacts.people').insert({ id: 'frances', display_name: 'Frances Allen' });
    await tab.waitForFunction(() => (window as any).seen.at(-1).length === 2, undefined, { timeout: 10_000 });
    assert.deepEqual(await tab.evaluate(() => (window as any).seen.at(-1)), [
      { id: 'barbara', display_name: 'Barbara Liskov' },
      { id: 'frances', display_name: 'Frances Allen' },
    ]);

    // Sign-out revokes and forgets: a reload finds no tokens.
    await tab.evaluate(() => (window as any).vault.signOut());
    await tab.reload();
    assert.equal(await state(tab), 'signed-out');
  } finally {
    await context.close();
  }
});
