// What `npm pack` would publish: the built JavaScript and declarations of
// both entry points, the README and package.json, and nothing else (no
// sources, tests or build settings).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..');

test('npm pack ships dist (JS and .d.ts of both entries), README and package.json only', () => {
  const output = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: packageDir,
    encoding: 'utf8',
  });
  const [pack] = JSON.parse(output) as { name: string; files: { path: string }[] }[];
  assert.ok(pack);
  assert.equal(pack.name, '@coffer/sdk');
  const files = pack.files.map((f) => f.path).sort();
  for (const entry of ['dist/index.js', 'dist/index.d.ts', 'dist/react.js', 'dist/react.d.ts']) {
    assert.ok(files.includes(entry), `${entry} is missing from ${files.join(', ')}: run \`npm run build\` first`);
  }
  assert.ok(files.includes('package.json'));
  assert.ok(files.includes('README.md'));
  const unexpected = files.filter((f) => !/^dist\/[a-z-]+\.(js|d\.ts)$/.test(f) && f !== 'package.json' && f !== 'README.md');
  assert.deepEqual(unexpected, [], 'only the build, the README and package.json are shipped');
  // Every module the entries import is shipped with them.
  for (const js of files.filter((f) => f.endsWith('.js'))) {
    assert.ok(files.includes(js.replace(/\.js$/, '.d.ts')), `${js} has no declarations`);
  }
});

test('the package has no runtime dependency, and React only as an optional peer', async () => {
  const { readFile } = await import('node:fs/promises');
  const manifest = JSON.parse(await readFile(join(packageDir, 'package.json'), 'utf8')) as Record<string, any>;
  assert.equal(manifest.dependencies, undefined);
  assert.deepEqual(Object.keys(manifest.peerDependencies), ['react']);
  assert.equal(manifest.peerDependenciesMeta.react.optional, true);
  assert.deepEqual(Object.keys(manifest.exports), ['.', './react', './package.json']);
  // The main entry does not load React.
  const index = await readFile(join(packageDir, 'dist', 'index.js'), 'utf8');
  assert.doesNotMatch(index, /from ['"]react['"]/);
  const { createVault } = await import('@coffer/sdk');
  assert.equal(typeof createVault, 'function');
});
