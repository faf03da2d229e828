// Coffer's pages in headless Chromium, as a person uses them: an app sends
// them to sign in; they create an account, untick one line on the consent
// page and allow; the app gets exactly what was left ticked; the dashboard
// shows the narrowed grant; they revoke it with one click and a confirmation.
// Then an app asks for the tables of a schema another app published (the
// consent page says who defined them), and the user deletes their account.
//
// Screenshots go to $COFFER_SCREENSHOTS_DIR (e.g. docs/screenshots to update
// the committed ones), else to a temporary directory.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';

import { launchChromium, oauthPost, pkce, repoRoot, startCallback, startCoffer } from './coffer.js';

const shots = process.env.COFFER_SCREENSHOTS_DIR
  ? resolve(repoRoot, process.env.COFFER_SCREENSHOTS_DIR)
  : mkdtempSync(join(tmpdir(), 'coffer-screenshots-'));
mkdirSync(shots, { recursive: true });

const EMAIL = 'ada@example.org';
const PASSWORD = 'correct horse battery staple';
const SCOPE = 'contacts.people(birthday,display_name,email,photo):read calendar.events:read+create+update:own notes.notes:read';

let coffer;
let callback;
let browser;
let clientId;

before(async () => {
  coffer = await startCoffer();
  callback = await startCallback();
  browser = await launchChromium();
  // A public app registered by the operator, with a loopback redirect URI
  // (any port matches it, RFC 8252 §7.3).
  const app = JSON.parse(
    coffer.cli([
      'app', 'register', '--name', 'Notes Pro', '--homepage', 'https://notes.example',
      '--redirect-uri', 'http://127.0.0.1/callback', '--json',
    ]),
  );
  clientId = app.client_id;
});

after(async () => {
  await browser?.close();
  await callback?.close();
  await coffer?.stop();
});

function authorizeUrl(scope, challenge, state) {
  const query = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: callback.url,
    scope,
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  });
  return `${coffer.base}/oauth/authorize?${query}`;
}

async function exchange(code, verifier) {
  return oauthPost(`${coffer.base}/oauth/token`, {
    grant_type: 'authorization_code',
    code,
    redirect_uri: callback.url,
    client_id: clientId,
    code_verifier: verifier,
  });
}

test('sign up, consent with one line unticked, narrowed grant on the dashboard, revoke', async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  const { verifier, challenge } = pkce();

  // The app sends the user here; they are not signed in.
  await page.goto(authorizeUrl(SCOPE, challenge, 'st-1'));
  await assert.doesNotReject(page.getByRole('heading', { name: 'Sign in to your vault' }).waitFor());
  await page.getByRole('link', { name: 'Create an account' }).click();

  // Sign up: the account comes with a vault. Sign-up answers the same
  // whether or not the address is taken, so the new user signs in next.
  await page.getByRole('heading', { name: 'Create your account' }).waitFor();
  await page.getByLabel('Email address').fill(EMAIL);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByLabel('Type the password again').fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('heading', { name: 'Sign in to your vault' }).waitFor();
  await page.getByText('Now sign in with the email address and password you chose.').waitFor();
  await page.getByLabel('Email address').fill(EMAIL);
  await page.getByLabel('Password').fill(PASSWORD);
  const consentResponse = page.waitForResponse((r) => r.url().includes('/oauth/authorize') && r.status() === 200);
  await page.getByRole('button', { name: 'Sign in' }).click();

  // The consent page names the app and asks line by line.
  await page.getByRole('heading', { name: 'Notes Pro wants to use your data' }).waitFor();
  const headers = (await consentResponse).headers();
  assert.match(headers['content-security-policy'], /frame-ancestors 'none'/);
  assert.equal(headers['x-frame-options'], 'DENY');
  const boxes = page.getByRole('checkbox');
  assert.equal(await boxes.count(), 3);
  const notes = page.getByLabel('See your notes');
  assert.equal(await notes.isChecked(), true);
  // Untick with the keyboard, as a person without a mouse would.
  await notes.focus();
  await page.keyboard.press('Space');
  assert.equal(await notes.isChecked(), false);
  await page.screenshot({ path: join(shots, 'consent.png'), fullPage: true });

  const redirected = callback.next();
  await page.getByRole('button', { name: 'Allow' }).click();
  const back = await redirected;
  assert.equal(back.searchParams.get('state'), 'st-1');
  assert.equal(back.searchParams.get('iss'), coffer.base);
  await page.getByRole('heading', { name: 'Back in Notes Pro' }).waitFor();

  // The token response says what was granted: everything but the notes.
  const tokens = await exchange(back.searchParams.get('code'), verifier);
  assert.equal(tokens.status, 200, JSON.stringify(tokens.body));
  assert.equal(
    tokens.body.scope,
    'calendar.events:read+create+update:own contacts.people(birthday,display_name,email,photo):read',
  );

  // The app uses its token on the data API: it adds an event, reads people,
  // and is refused the notes the user unticked.
  const api = (method, path, body) =>
    fetch(`${coffer.base}${path}`, {
      method,
      headers: { authorization: `Bearer ${tokens.body.access_token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    }).then(async (r) => ({ status: r.status, body: await r.json() }));
  const added = await api('POST', '/v1/tables/calendar.events/rows', {
    title: 'Dentist',
    starts_at: '2026-12-01T09:30:00Z',
  });
  assert.equal(added.status, 201, JSON.stringify(added.body));
  assert.equal(added.body._created_by, clientId);
  const people = await api('GET', '/v1/tables/contacts.people/rows');
  assert.equal(people.status, 200, JSON.stringify(people.body));
  const refused = await api('GET', '/v1/tables/notes.notes/rows');
  assert.equal(refused.status, 404);
  assert.equal(refused.body.type, 'urn:coffer:problem:table-not-found');

  // The dashboard shows the narrowed grant in plain words, and what the app
  // did in the access log, newest first (entries are written within a
  // fraction of a second: reload until they are there).
  let logged = false;
  for (let attempt = 0; attempt < 20 && !logged; attempt++) {
    await page.goto(`${coffer.base}/dashboard`);
    logged = (await page.getByText('Added 1 row to calendar.events').count()) > 0;
    if (!logged) await page.waitForTimeout(250);
  }
  assert.ok(logged, 'the access log shows the insert');
  await page.getByRole('heading', { name: 'Your vault' }).waitFor();
  await page.getByRole('heading', { name: 'Notes Pro' }).waitFor();
  assert.equal(await page.getByRole('checkbox').count(), 2);
  assert.equal(await page.getByText('See your notes').count(), 0);
  await page.getByText('See the people in your address book').waitFor();
  await page.getByText('Read 0 rows from contacts.people').waitFor();
  await page.getByText('Tried to read notes.notes').waitFor();
  await page.screenshot({ path: join(shots, 'dashboard.png'), fullPage: true });

  // Signed out elsewhere, a request inside the grant needs only a sign-in:
  // no consent page, straight back to the app.
  const other = await browser.newContext();
  const otherPage = await other.newPage();
  const second = pkce();
  await otherPage.goto(authorizeUrl('contacts.people(display_name):read', second.challenge, 'st-2'));
  await otherPage.getByLabel('Email address').fill(EMAIL);
  await otherPage.getByLabel('Password').fill(PASSWORD);
  const skipped = callback.next();
  await otherPage.getByRole('button', { name: 'Sign in' }).click();
  const backAgain = await skipped;
  assert.equal(backAgain.searchParams.get('state'), 'st-2');
  const narrow = await exchange(backAgain.searchParams.get('code'), second.verifier);
  assert.equal(narrow.body.scope, 'contacts.people(display_name):read');
  await other.close();

  // Revoke: one click, then confirm.
  await page.getByRole('button', { name: 'Revoke access for Notes Pro' }).click();
  await page.getByRole('heading', { name: 'Revoke access for Notes Pro?' }).waitFor();
  await page.getByText('The data it wrote stays in your vault.').waitFor();
  await page.screenshot({ path: join(shots, 'revoke-confirm.png'), fullPage: true });
  await page.getByRole('button', { name: 'Revoke access' }).click();
  await page.getByRole('status').getByText('Notes Pro can no longer use your data.').waitFor();
  await page.getByText('No apps are connected to your vault.').waitFor();

  // The app's refresh token stops working at once.
  const refreshed = await oauthPost(`${coffer.base}/oauth/token`, {
    grant_type: 'refresh_token',
    refresh_token: tokens.body.refresh_token,
    client_id: clientId,
  });
  assert.equal(refreshed.status, 400);
  assert.equal(refreshed.body.error, 'invalid_grant');

  // Another company published a recipes schema; Notes Pro asks for it. The
  // consent page describes it like any table and says who defined it.
  const publisher = JSON.parse(
    coffer.cli([
      'app', 'register', '--name', 'Acme Recipes', '--redirect-uri', 'https://acme.example/cb',
      '--auth-method', 'client-secret-basic', '--json',
    ]),
  );
  const published = await fetch(`${coffer.base}/v1/schemas`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${publisher.client_id}:${publisher.client_secret}`).toString('base64')}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify({
      name: 'acme_recipes',
      version: 1,
      description: 'Your recipes.',
      tables: [{
        name: 'recipes',
        description: 'The recipes you keep, one row per recipe.',
        columns: [
          { name: 'title', type: 'text', nullable: false, description: "The recipe's name." },
          { name: 'minutes', type: 'integer', description: 'How long it takes, in minutes.' },
        ],
      }],
    }),
  });
  assert.equal(published.status, 201, await published.text());
  const third = pkce();
  await page.goto(authorizeUrl('acme_recipes.recipes:read+create', third.challenge, 'st-3'));
  await page.getByRole('heading', { name: 'Notes Pro wants to use your data' }).waitFor();
  await page.getByText('See and add the recipes you keep').waitFor();
  await page.getByText('defined by Acme Recipes, not by Coffer').waitFor();
  await page.screenshot({ path: join(shots, 'consent-published-schema.png'), fullPage: true });
  const recipesBack = callback.next();
  await page.getByRole('button', { name: 'Allow' }).click();
  assert.equal((await recipesBack).searchParams.get('state'), 'st-3');

  // The user deletes their account: the page says what happens and asks
  // for the password; afterwards the sign-in page says it is done.
  await page.goto(`${coffer.base}/dashboard`);
  await page.getByRole('link', { name: 'Delete my account' }).click();
  await page.getByRole('heading', { name: 'Delete your account?' }).waitFor();
  await page.getByText('Everything in your vault is erased, for good.').waitFor();
  await page.getByText('Notes Pro', { exact: false }).first().waitFor();
  await page.getByLabel('Enter your password to confirm').fill('not the password');
  await page.getByRole('button', { name: 'Delete my account and my data' }).click();
  await page.getByText('That password is not right. Nothing was deleted.').waitFor();
  await page.getByLabel('Enter your password to confirm').fill(PASSWORD);
  await page.screenshot({ path: join(shots, 'delete-account.png'), fullPage: true });
  await page.getByRole('button', { name: 'Delete my account and my data' }).click();
  await page.getByRole('heading', { name: 'Sign in to your vault' }).waitFor();
  await page.getByText('Your account was deleted, and everything in your vault was erased.').waitFor();
  await page.goto(`${coffer.base}/dashboard`);
  await page.getByRole('heading', { name: 'Sign in to your vault' }).waitFor();
  await context.close();
  console.log(`screenshots in ${shots}`);
});
