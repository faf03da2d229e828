// Compiles the TypeScript SDK (../typescript/src) to sdk-build/, the ES
// modules the example pages import as `/sdk/index.js`. Uses the pinned
// TypeScript of sdk/typescript (`npm ci` there first).

import { execFileSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const sdk = join(here, '..', 'typescript');
const tsc = join(sdk, 'node_modules', 'typescript', 'bin', 'tsc');
if (!existsSync(tsc)) {
  console.error('sdk/typescript has no node_modules: run `npm ci` in sdk/typescript first');
  process.exit(1);
}
const out = join(here, 'sdk-build');
rmSync(out, { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', join(sdk, 'tsconfig.json'), '--outDir', out, '--declaration', 'false'], {
  stdio: 'inherit',
});
