// Writes test/generated/schemas.ts with `coffer codegen --lang ts`: the
// types the typed tests compile against, from the binary they start.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const binary = process.env.COFFER_BIN ?? join(resolve(here, '..', '..', '..'), 'target', 'debug', 'coffer');
if (!existsSync(binary)) {
  console.error(`${binary} does not exist: run \`cargo test --workspace\` first (it builds target/debug/coffer), or set COFFER_BIN`);
  process.exit(1);
}
mkdirSync(join(here, 'generated'), { recursive: true });
execFileSync(binary, ['codegen', '--lang', 'ts', '--out', join(here, 'generated', 'schemas.ts')], { stdio: 'inherit' });
