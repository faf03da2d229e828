// The example apps in headless Chromium, as a person uses them: they sign
// up at Coffer and connect the address book and the birthday app (each
// consent page asks for what that app asked for); a person added in the
// address book shows in the birthday app at once, without its email
// address, which that app never asked for; a note is written; the user
// revokes the address book on the dashboard, which then offers to connect
// again, while the birthday app keeps working.
//
// Screenshots go to $COFFER_SCREENSHOTS_DIR (e.g. docs/screenshots to update
// the committed ones), else to a temporary directory.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';

import { serveApp } from '../serve.js';
import { launchChromium, repoRoot, startCoffer } from './coffer.js';

const shots = process.env.COFFER_SCREENSHOTS_DIR
  ? resolve(repoRoot, process.env.COFFER_SCREENSHOTS_DIR)
  : mkdtempSync(join(tmpdir(), 'coffer-example-screenshots-'));
mkdirSync(shots, { recursive: true });

const EMAIL = 'ada@example.org';
const PASSWORD = 'correct horse battery staple';
/** Every wait of a page is bounded by this. */
const WAIT = 15000;

let coffer;
let browser;
let addressBook;
let birthdays;

before(async () => {
  coffer = await startCoffer();
  browser = await launchChromium();
  // Each app on its own port (its own origin), registered with its page as
  // the redirect URI.
  addressBook = await serveApp('address-book');
  birthdays = await serveApp('birthdays');
  for (const [served, name] of [
    [addressBook, 'Address book'],
    [birthdays, 'Birthdays'],
  ]) {
    const clientId = coffer.cli(['app', 'register', '--name', name, '--redirect-uri', served.url, '--print', 'client-id']).trim();
    Object.assign(served.config, { server: coffer.base, clientId });
  }
}, { timeout: 60000 });

after(async () => {
  await browser?.close();
  await addressBook?.close();
  await birthdays?.close();
  await coffer?.stop();
});

/** A date `days` from today, in 1992 (a leap year: 29 February exists), as `YYYY-MM-DD`. */
function birthdayIn(days) {
  const date = new Date(Date.now() + days * 24 * 60 * 60 * 1000);
  return `1992-${String(date.getMonth() + 1).padStart(2, '0')}-${String(date.getDate()).padStart(2, '0')}`;
}

/**
 * Records the text of every data API answer the page reads (the change
 * stream included, as it arrives) in `window.__cofferSeen`, by wrapping
 * `fetch` before the page's scripts run.
 */
function recordDataApiAnswers() {
  window.__cofferSeen = [];
  const original = window.fetch;
  window.fetch = async (...args) => {
    const response = await original(...args);
    const url = String(args[0] instanceof Request ? args[0].url : args[0]);
    if (url.includes('/v1/') && response.body) {
      const copy = response.clone();
      (async () => {
        const reader = copy.body.getReader();
        const decoder = new TextDecoder();
        const entry = { url, text: '' };
        window.__cofferSeen.push(entry);
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          entry.text += decoder.decode(value, { stream: true });
        }
      })().catch(() => {});
    }
    return response;
  };
}

test('two apps, two consents, a live update across apps, and a revoke that leaves the other app working', { timeout: 180000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1000, height: 800 } });
  context.setDefaultTimeout(WAIT);
  await context.addInitScript(recordDataApiAnswers);

  // ---------------------------------------------------------------- A: sign up and connect
  const a = await context.newPage();
  await a.goto(addressBook.url);
  await a.getByRole('button', { name: 'Connect to Coffer' }).click();
  await a.getByRole('heading', { name: 'Sign in to your vault' }).waitFor();
  await a.getByRole('link', { name: 'Create an account' }).click();
  await a.getByLabel('Email address').fill(EMAIL);
  await a.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await a.getByLabel('Type the password again').fill(PASSWORD);
  await a.getByRole('button', { name: 'Create account' }).click();
  await a.getByRole('heading', { name: 'Sign in to your vault' }).waitFor();
  await a.getByLabel('Email address').fill(EMAIL);
  await a.getByLabel('Password').fill(PASSWORD);
  await a.getByRole('button', { name: 'Sign in' }).click();
  await a.getByRole('heading', { name: 'Address book wants to use your data' }).waitFor();
  const askedOfA = await a.locator('main').innerText();
  await a.screenshot({ path: join(shots, 'example-consent-address-book.png'), fullPage: true });
  await a.getByRole('button', { name: 'Allow' }).click();
  await a.waitForURL(addressBook.url);
  await a.getByText('No one here yet').waitFor();

  // ---------------------------------------------------------------- B: connect (already signed in at Coffer)
  const b = await context.newPage();
  await b.goto(birthdays.url);
  await b.getByRole('button', { name: 'Connect to Coffer' }).click();
  await b.getByRole('heading', { name: 'Birthdays wants to use your data' }).waitFor();
  const askedOfB = await b.locator('main').innerText();
  await b.screenshot({ path: join(shots, 'example-consent-birthdays.png'), fullPage: true });
  // The two consent pages ask for different things: the address book for
  // everything about people, including adding and deleting them; the
  // birthday app for names and birthdays only, and its own notes.
  assert.notEqual(askedOfA, askedOfB);
  assert.doesNotMatch(askedOfB, /email/i, askedOfB);
  assert.match(askedOfB, /birthday/i, askedOfB);
  assert.match(askedOfB, /note/i, askedOfB);
  assert.doesNotMatch(askedOfA, /note/i, askedOfA);
  await b.getByRole('button', { name: 'Allow' }).click();
  await b.waitForURL(birthdays.url);
  await b.getByText('No birthdays yet').waitFor();
  await b.evaluate(() => (window.__notReloaded = true));

  // ---------------------------------------------------------------- A adds, edits and deletes; B follows live
  const add = async (name, email, birthday) => {
    await a.getByLabel('Name').fill(name);
    await a.getByLabel('Email').fill(email);
    await a.getByLabel('Birthday').fill(birthday);
    await a.getByRole('button', { name: 'Add', exact: true }).click();
    await a.locator('#people li', { hasText: name }).waitFor();
  };
  await add('Grace Hopper', 'grace@example.org', birthdayIn(3));
  await add('Alan Turing', 'alan@example.org', birthdayIn(40));
  await add('Someone Else', 'someone@example.org', birthdayIn(100));
  await a.getByText('grace@example.org').waitFor();
  await b.locator('#upcoming li', { hasText: 'Grace Hopper' }).getByText('in 3 days').waitFor();
  await b.locator('#upcoming li', { hasText: 'Alan Turing' }).getByText('in 40 days').waitFor();
  await b.locator('#upcoming li', { hasText: 'Someone Else' }).waitFor();

  // Edit: Alan's birthday moves; delete: someone goes.
  await a.getByRole('button', { name: 'Edit Alan Turing' }).click();
  await a.getByLabel('Birthday').fill(birthdayIn(10));
  await a.getByRole('button', { name: 'Save changes' }).click();
  await b.locator('#upcoming li', { hasText: 'Alan Turing' }).getByText('in 10 days').waitFor();
  await a.getByRole('button', { name: 'Delete Someone Else' }).click();
  await a.locator('#people li', { hasText: 'Someone Else' }).waitFor({ state: 'detached' });
  await b.locator('#upcoming li', { hasText: 'Someone Else' }).waitFor({ state: 'detached' });
  assert.deepEqual(await b.locator('#upcoming .name').allInnerTexts(), ['Grace Hopper', 'Alan Turing']);
  assert.equal(await b.evaluate(() => window.__notReloaded), true, 'the birthday app was not reloaded');

  // B writes a note, which its live list of notes shows.
  await b.getByRole('button', { name: 'Write a note for Grace Hopper' }).click();
  await b.getByRole('textbox', { name: 'Note' }).fill('A book on COBOL, and a cake shaped like a moth.');
  await b.getByRole('button', { name: 'Save note' }).click();
  await b.locator('#notes li', { hasText: 'Birthday: Grace Hopper' }).getByText('shaped like a moth').waitFor();

  await a.screenshot({ path: join(shots, 'example-address-book.png'), fullPage: true });
  await b.screenshot({ path: join(shots, 'example-birthdays.png'), fullPage: true });

  // B never received the email column: not in any answer it read (the
  // change stream included), which did carry the names and birthdays.
  const seenByB = await b.evaluate(() => window.__cofferSeen.map((e) => `${e.url}\n${e.text}`).join('\n'));
  assert.match(seenByB, /\/v1\/changes\/stream/);
  assert.match(seenByB, /Grace Hopper/);
  assert.match(seenByB, /"birthday"/);
  assert.doesNotMatch(seenByB, /"email"|example\.org/);
  // A, which asked for it, did.
  const seenByA = await a.evaluate(() => window.__cofferSeen.map((e) => e.text).join('\n'));
  assert.match(seenByA, /grace@example\.org/);

  // ---------------------------------------------------------------- the user revokes A
  const dashboard = await context.newPage();
  await dashboard.goto(`${coffer.base}/dashboard`);
  await dashboard.getByRole('button', { name: 'Revoke access for Address book' }).click();
  await dashboard.getByRole('button', { name: 'Revoke access', exact: true }).click();
  await dashboard.getByRole('status').getByText('Address book can no longer use your data.').waitFor();

  // A shows its connect state again, by itself; B keeps working.
  await a.getByRole('button', { name: 'Connect to Coffer' }).waitFor();
  await a.getByText('no longer has access').waitFor();
  assert.equal(await a.locator('#signed-in').isVisible(), false);
  await a.screenshot({ path: join(shots, 'example-address-book-revoked.png'), fullPage: true });
  await b.getByRole('button', { name: 'Write a note for Grace Hopper' }).waitFor();
  assert.equal(await b.getByRole('button', { name: 'Connect to Coffer' }).isVisible(), false);

  // A connects again (the consent page asks again: the grant is gone) and
  // adds someone; B shows them live.
  await a.getByRole('button', { name: 'Connect to Coffer' }).click();
  await a.getByRole('heading', { name: 'Address book wants to use your data' }).waitFor();
  await a.getByRole('button', { name: 'Allow' }).click();
  await a.waitForURL(addressBook.url);
  await a.locator('#people li', { hasText: 'Grace Hopper' }).waitFor();
  await add('Katherine Johnson', 'katherine@example.org', birthdayIn(5));
  await b.locator('#upcoming li', { hasText: 'Katherine Johnson' }).getByText('in 5 days').waitFor();
  assert.deepEqual(await b.locator('#upcoming .name').allInnerTexts(), ['Grace Hopper', 'Katherine Johnson', 'Alan Turing']);
  assert.equal(await b.evaluate(() => window.__notReloaded), true, 'the birthday app was not reloaded');
  const seenLater = await b.evaluate(() => window.__cofferSeen.map((e) => e.text).join('\n'));
  assert.match(seenLater, /Katherine Johnson/);
  assert.doesNotMatch(seenLater, /"email"|example\.org/);

  await context.close();
});
