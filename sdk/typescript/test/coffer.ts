// Helpers of the SDK's tests: start `target/debug/coffer serve` on a fresh
// data directory and read the URL it prints, run its operator commands,
// and act as a person in a browser over HTTP (sign in, answer the consent
// page, narrow an app's access on the dashboard), as the server's own
// HTTP-level tests do.

import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { createVault, type AnyTables, type TablesConstraint, type Vault, type VaultOptions } from '@coffer/sdk';

/** The repository's root (this file runs from sdk/typescript/test-build). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const binary = process.env.COFFER_BIN ?? join(repoRoot, 'target', 'debug', 'coffer');

/** The redirect URI of the test apps: a loopback address nobody listens on (the tests read the redirect's `Location`). */
export const REDIRECT = 'http://127.0.0.1:9/callback';
export const PASSWORD = 'correct horse battery staple';

/** A running server. */
export interface Coffer {
  base: string;
  /** Runs `coffer ARGS --data-dir DATA`; its standard output. */
  cli(args: string[], input?: string): string;
  stop(): Promise<void>;
}

/** Starts a server with `env` added to its environment. */
export async function startCoffer(env: Record<string, string> = {}): Promise<Coffer> {
  if (!existsSync(binary)) {
    throw new Error(`${binary} does not exist: run \`cargo test --workspace\` first (it builds target/debug/coffer), or set COFFER_BIN`);
  }
  const tmp = mkdtempSync(join(tmpdir(), 'coffer-sdk-'));
  const dataDir = join(tmp, 'data');
  const childEnv: NodeJS.ProcessEnv = { ...process.env, COFFER_LOG: 'warn', ...env };
  delete childEnv.COFFER_PUBLIC_URL;
  delete childEnv.COFFER_CONFIG;
  const child: ChildProcess = spawn(
    binary,
    ['serve', '--listen', '127.0.0.1:0', '--pgwire-listen', '127.0.0.1:0', '--data-dir', dataDir],
    { env: childEnv, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const base = await new Promise<string>((ok, fail) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      const found = /http:\/\/([^/\s]+)\//.exec(line);
      if (found) ok(`http://${found[1]}`);
    });
    child.on('exit', (code) => fail(new Error(`coffer exited (${code}) before serving`)));
    child.on('error', fail);
  });
  return {
    base,
    cli(args, input = '') {
      return execFileSync(binary, [...args, '--data-dir', dataDir], { input, env: childEnv, encoding: 'utf8' });
    },
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((ok) => child.once('exit', ok));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(tmp, { recursive: true, force: true });
    },
  };
}

/** A page as received. */
export interface Page {
  status: number;
  location: string | null;
  body: string;
}

/** The `value` of every `<input … name="NAME" … value="…">`. */
export function inputValues(html: string, name: string): string[] {
  const out: string[] = [];
  for (const tag of html.split('<input').slice(1)) {
    const end = tag.indexOf('>');
    const attrs = end === -1 ? tag : tag.slice(0, end);
    if (!attrs.includes(`name="${name}"`)) continue;
    const value = /value="([^"]*)"/.exec(attrs);
    if (value) out.push(unescape(value[1]!));
  }
  return out;
}

function unescape(s: string): string {
  return s
    .replace(/&quot;/g, '"')
    .replace(/&#39;|&#x27;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&#x2F;/g, '/')
    .replace(/&amp;/g, '&');
}

/** A person's browser on one server, over HTTP: keeps cookies, follows redirects on the server's origin only. */
export class Browser {
  private readonly cookies = new Map<string, string>();
  constructor(readonly base: string) {}

  private absolute(pathOrUrl: string): string {
    return pathOrUrl.startsWith('http') ? pathOrUrl : `${this.base}${pathOrUrl}`;
  }

  private async send(url: string, init: RequestInit): Promise<Page> {
    const headers = new Headers(init.headers);
    if (this.cookies.size) headers.set('cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    const response = await fetch(url, { ...init, headers, redirect: 'manual' });
    for (const cookie of response.headers.getSetCookie()) {
      const [pair = ''] = cookie.split(';');
      const eq = pair.indexOf('=');
      if (eq > 0) this.cookies.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
    return { status: response.status, location: response.headers.get('location'), body: await response.text() };
  }

  get(pathOrUrl: string): Promise<Page> {
    return this.send(this.absolute(pathOrUrl), {});
  }

  post(path: string, form: [string, string][]): Promise<Page> {
    return this.send(this.absolute(path), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form).toString(),
    });
  }

  /** Follows redirects on the server's origin; stops at a page or a redirect elsewhere. */
  async follow(page: Page): Promise<Page> {
    for (let i = 0; i < 10; i++) {
      const location = page.location;
      if (page.status < 300 || page.status >= 400 || !location) return page;
      if (!(location.startsWith('/') || location.startsWith(this.base))) return page;
      page = await this.get(location);
    }
    throw new Error('too many redirects');
  }

  async visit(pathOrUrl: string): Promise<Page> {
    return this.follow(await this.get(pathOrUrl));
  }

  /** Signs in on the sign-in page. */
  async signIn(email: string, password = PASSWORD): Promise<void> {
    const form = await this.get('/sign-in');
    const csrf = inputValues(form.body, 'csrf_token')[0];
    if (!csrf) throw new Error(`no CSRF token on the sign-in page: ${form.status}`);
    const answer = await this.post('/sign-in', [
      ['csrf_token', csrf],
      ['email', email],
      ['password', password],
    ]);
    if (answer.status !== 303) throw new Error(`sign-in answered ${answer.status}: ${answer.body.slice(0, 300)}`);
  }

  /**
   * Opens an authorization URL and allows it on the consent page, ticking
   * `tick` (every line when not given); the redirect's `Location`.
   */
  async consent(authorizeUrl: string, tick?: string[]): Promise<string> {
    const page = await this.visit(authorizeUrl);
    if (page.status !== 200) {
      if (page.status === 303 && page.location) return page.location;
      throw new Error(`authorize answered ${page.status}: ${page.body.slice(0, 300)}`);
    }
    const lines = inputValues(page.body, 'line');
    if (lines.length === 0) throw new Error(`no consent lines: ${page.body.slice(0, 500)}`);
    const csrf = inputValues(page.body, 'csrf_token')[0]!;
    const requestId = inputValues(page.body, 'request_id')[0]!;
    const form: [string, string][] = [
      ['csrf_token', csrf],
      ['request_id', requestId],
      ...(tick ?? lines).map((l): [string, string] => ['line', l]),
      ['decision', 'allow'],
    ];
    const answer = await this.post('/oauth/authorize', form);
    if (answer.status !== 303 || !answer.location) throw new Error(`consent answered ${answer.status}: ${answer.body.slice(0, 300)}`);
    return answer.location;
  }

  /** The dashboard card of `appName`: its grant id. */
  private async grantId(appName: string): Promise<{ csrf: string; grantId: string }> {
    const dashboard = await this.visit('/dashboard');
    if (dashboard.status !== 200) throw new Error(`dashboard answered ${dashboard.status}`);
    const csrf = inputValues(dashboard.body, 'csrf_token')[0]!;
    const card = dashboard.body
      .split('<li class="app-card">')
      .slice(1)
      .find((c) => c.includes(`>${appName}</h3>`));
    if (!card) throw new Error(`no dashboard card for ${appName}`);
    const grantId = inputValues(card, 'grant_id')[0]!;
    return { csrf, grantId };
  }

  /** "Change access" on the dashboard: keeps only `lines` (scope tokens) for `appName`. */
  async narrow(appName: string, lines: string[]): Promise<void> {
    const { csrf, grantId } = await this.grantId(appName);
    const answer = await this.post('/dashboard/access', [
      ['csrf_token', csrf],
      ['grant_id', grantId],
      ...lines.map((l): [string, string] => ['line', l]),
    ]);
    if (answer.status !== 303) throw new Error(`change access answered ${answer.status}: ${answer.body.slice(0, 300)}`);
  }
}

/** Creates an account with `coffer user create` and signs it in; its browser. */
export async function newUser(coffer: Coffer, email: string): Promise<Browser> {
  coffer.cli(['user', 'create', '--email', email], `${PASSWORD}\n`);
  const browser = new Browser(coffer.base);
  await browser.signIn(email);
  return browser;
}

/** Registers a public app with the test redirect URI; its client id. */
export function registerApp(coffer: Coffer, name: string): string {
  const app = JSON.parse(coffer.cli(['app', 'register', '--name', name, '--redirect-uri', REDIRECT, '--json'])) as {
    client_id: string;
  };
  return app.client_id;
}

/** A client whose `signIn` hands the URL to the test instead of a browser's location. */
export function testVault<S extends TablesConstraint<S> = AnyTables>(
  coffer: Coffer,
  clientId: string,
  options: Partial<VaultOptions> = {},
): { vault: Vault<S>; opened: string[] } {
  const opened: string[] = [];
  const vault = createVault<S>({
    server: coffer.base,
    clientId,
    redirectUri: REDIRECT,
    navigate: (url) => {
      opened.push(url);
    },
    ...options,
  });
  return { vault, opened };
}

/**
 * A signed-in client of a new app named `name`: `signIn()`, the user
 * allows on the consent page (ticking `tick`, or every line), and
 * `handleRedirect()` with where the server sent the browser back.
 * `opened` collects the URLs later sign-ins (`requestMore`) open.
 */
export async function signedIn<S extends TablesConstraint<S> = AnyTables>(
  coffer: Coffer,
  user: Browser,
  name: string,
  scope: string,
  options: Partial<VaultOptions> & { tick?: string[] } = {},
): Promise<{ vault: Vault<S>; clientId: string; opened: string[] }> {
  const clientId = registerApp(coffer, name);
  const { vault, opened } = testVault<S>(coffer, clientId, { scope, ...options });
  await vault.signIn();
  const location = await user.consent(opened[0]!, options.tick);
  const result = await vault.handleRedirect(location);
  if (!result) throw new Error(`handleRedirect did not take ${location}`);
  return { vault, clientId, opened };
}

/** Waits until `check` returns a value other than `undefined` (polling), or fails after `ms`. */
export async function eventually<T>(what: string, check: () => T | undefined, ms = 10_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
