// Helpers of the browser tests: start `target/debug/coffer serve` on a fresh
// data directory and read the URL it prints, run its operator commands,
// stand in for an app's redirect URI, and launch Debian's Chromium.

import { spawn, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const binary = process.env.COFFER_BIN ?? join(repoRoot, 'target', 'debug', 'coffer');

/** Starts a server; resolves to { base, dataDir, cli(args), stop() }. */
export async function startCoffer() {
  const tmp = mkdtempSync(join(tmpdir(), 'coffer-browser-'));
  const dataDir = join(tmp, 'data');
  const env = { ...process.env, COFFER_LOG: 'warn' };
  delete env.COFFER_PUBLIC_URL;
  delete env.COFFER_CONFIG;
  const child = spawn(binary, ['serve', '--listen', '127.0.0.1:0', '--pgwire-listen', '127.0.0.1:0', '--data-dir', dataDir], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const base = await new Promise((ok, fail) => {
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const found = /http:\/\/([^/\s]+)\//.exec(line);
      if (found) ok(`http://${found[1]}`);
    });
    child.on('exit', (code) => fail(new Error(`coffer exited (${code}) before serving`)));
    child.on('error', fail);
  });
  return {
    base,
    dataDir,
    /** Runs `coffer ARGS --data-dir DATA` and returns its standard output. */
    cli(args, input = '') {
      return execFileSync(binary, [...args, '--data-dir', dataDir], { input, env, encoding: 'utf8' });
    },
    async stop() {
      const exited = new Promise((ok) => child.once('exit', ok));
      child.kill('SIGTERM');
      await exited;
      rmSync(tmp, { recursive: true, force: true });
    },
  };
}

/** An app's redirect URI: records each request, answers with a small page. */
export async function startCallback() {
  const requests = [];
  const waiting = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    requests.push(url);
    waiting.splice(0).forEach((ok) => ok(url));
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>Notes Pro</title><h1>Back in Notes Pro</h1>');
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return {
    url: `http://127.0.0.1:${server.address().port}/callback`,
    requests,
    /** The next request to the redirect URI (fails after `ms`). */
    next(ms = 15000) {
      return new Promise((ok, fail) => {
        const timer = setTimeout(() => fail(new Error(`no request to the redirect URI within ${ms} ms`)), ms);
        waiting.push((url) => {
          clearTimeout(timer);
          ok(url);
        });
      });
    },
    close: () => new Promise((ok) => server.close(ok)),
  };
}

/** Headless Chromium from Debian's package. */
export function launchChromium() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** A PKCE pair: { verifier, challenge } (S256). */
export function pkce() {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge };
}

/** POSTs a form to an OAuth endpoint; resolves to { status, body }. */
export async function oauthPost(url, form) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/**
 * A user's vault and an app's token for `scope`, through the OAuth flow as
 * a person allows it: creates the account with `coffer user create`,
 * registers a public app with a loopback redirect URI, signs in and allows
 * on the consent page in `browser`, and exchanges the code (PKCE).
 * Resolves to { clientId, token } where `token` is the token response.
 */
export async function appToken(coffer, browser, { scope, name = 'Example App', email = 'ada@example.org' }) {
  const password = 'correct horse battery staple';
  coffer.cli(['user', 'create', '--email', email], `${password}\n`);
  const app = JSON.parse(
    coffer.cli(['app', 'register', '--name', name, '--redirect-uri', 'http://127.0.0.1/callback', '--json']),
  );
  const callback = await startCallback();
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const { verifier, challenge } = pkce();
    const query = new URLSearchParams({
      response_type: 'code',
      client_id: app.client_id,
      redirect_uri: callback.url,
      scope,
      state: 'st',
      code_challenge: challenge,
      code_challenge_method: 'S256',
    });
    await page.goto(`${coffer.base}/oauth/authorize?${query}`);
    await page.getByLabel('Email address').fill(email);
    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const back = callback.next();
    await page.getByRole('button', { name: 'Allow' }).click();
    const code = (await back).searchParams.get('code');
    const token = await oauthPost(`${coffer.base}/oauth/token`, {
      grant_type: 'authorization_code',
      code,
      redirect_uri: callback.url,
      client_id: app.client_id,
      code_verifier: verifier,
    });
    if (token.status !== 200) throw new Error(`token request answered ${token.status}: ${JSON.stringify(token.body)}`);
    return { clientId: app.client_id, token: token.body };
  } finally {
    await context.close();
    await callback.close();
  }
}
