// Helpers of the examples' test: start `target/debug/coffer serve` on a
// fresh data directory and read the URL it prints, run its operator
// commands, and launch Debian's Chromium.

import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const binary = process.env.COFFER_BIN ?? join(repoRoot, 'target', 'debug', 'coffer');

/** Fails after `ms` with `what` in the message. */
export function within(ms, what, promise) {
  let timer;
  const late = new Promise((_, fail) => {
    timer = setTimeout(() => fail(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** Starts a server; resolves to { base, cli(args), stop() }. */
export async function startCoffer() {
  if (!existsSync(binary)) {
    throw new Error(`${binary} is missing: run \`cargo test --workspace\` first (it builds target/debug/coffer)`);
  }
  const tmp = mkdtempSync(join(tmpdir(), 'coffer-examples-'));
  const dataDir = join(tmp, 'data');
  const env = { ...process.env, COFFER_LOG: 'warn' };
  delete env.COFFER_PUBLIC_URL;
  delete env.COFFER_CONFIG;
  delete env.COFFER_DATA_DIR;
  const child = spawn(binary, ['serve', '--listen', '127.0.0.1:0', '--pgwire-listen', '127.0.0.1:0', '--data-dir', dataDir], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise((ok) => child.once('exit', ok));
  const base = await within(
    30000,
    'coffer serve printing its URL',
    new Promise((ok, fail) => {
      const lines = createInterface({ input: child.stdout });
      lines.on('line', (line) => {
        const found = /http:\/\/([^/\s]+)\//.exec(line);
        if (found) ok(`http://${found[1]}`);
      });
      child.on('exit', (code) => fail(new Error(`coffer exited (${code}) before serving`)));
      child.on('error', fail);
    }),
  ).catch((error) => {
    child.kill('SIGKILL');
    rmSync(tmp, { recursive: true, force: true });
    throw error;
  });
  return {
    base,
    /** Runs `coffer ARGS --data-dir DATA` and returns its standard output. */
    cli(args) {
      return execFileSync(binary, [...args, '--data-dir', dataDir], { env, encoding: 'utf8', timeout: 30000 });
    },
    async stop() {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
      await exited;
      clearTimeout(timer);
      rmSync(tmp, { recursive: true, force: true });
    },
  };
}

/** Headless Chromium from Debian's package. */
export function launchChromium() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    timeout: 30000,
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
