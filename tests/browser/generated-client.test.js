// A client generated from the served OpenAPI document, as an app developer
// builds one: types from `/v1/openapi.json` by openapi-typescript, the
// openapi-fetch runtime, and the TypeScript example of
// docs/guides/generated-clients.md, type-checked against those types (so a
// document that does not describe the guide's calls fails here), then run
// against the server with a token from the OAuth flow.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { after, before, test } from 'node:test';

import openapiTS, { astToString } from 'openapi-typescript';
import ts from 'typescript';

import { appToken, launchChromium, repoRoot, startCoffer } from './coffer.js';

const here = dirname(fileURLToPath(import.meta.url));
const GUIDE = join(repoRoot, 'docs', 'guides', 'generated-clients.md');
const SCOPE = 'contacts.people:read+create';

let coffer;
let browser;
let work;

before(async () => {
  coffer = await startCoffer();
  browser = await launchChromium();
  // The generated files live outside the tree; `node_modules` is linked so
  // that both the compiler and node resolve `openapi-fetch` from it.
  work = mkdtempSync(join(tmpdir(), 'coffer-generated-client-'));
  symlinkSync(join(here, 'node_modules'), join(work, 'node_modules'), 'dir');
});

after(async () => {
  await browser?.close();
  await coffer?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** The one ```ts block of the guide. */
function guideProgram() {
  const blocks = [...readFileSync(GUIDE, 'utf8').matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
  assert.equal(blocks.length, 1, 'the guide has one TypeScript example');
  return blocks[0];
}

const COMPILER_OPTIONS = {
  strict: true,
  noEmit: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
  lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'],
  skipLibCheck: true,
};

/** Type errors of `files` (names in `work`), as readable lines. */
function typeErrors(files) {
  const program = ts.createProgram(
    files.map((f) => join(work, f)),
    COMPILER_OPTIONS,
  );
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const text = ts.flattenDiagnosticMessageText(d.messageText, '\n');
    if (!d.file) return text;
    const { line, character } = d.file.getLineAndCharacterOfPosition(d.start ?? 0);
    return `${d.file.fileName.slice(work.length + 1)}:${line + 1}:${character + 1}: ${text}`;
  });
}

test('a client generated from /v1/openapi.json runs the guide against the server', async () => {
  // The document, as any generator fetches it: no token needed.
  const served = await fetch(`${coffer.base}/v1/openapi.json`);
  assert.equal(served.status, 200);
  const document = await served.json();
  const types = astToString(await openapiTS(document));
  writeFileSync(join(work, 'coffer-api.ts'), types);
  assert.match(types, /"\/v1\/tables\/\{table\}\/rows"/);
  assert.match(types, /filters\?:/, 'the list filters are a typed parameter');

  // The guide's program type-checks against the generated types...
  const program = guideProgram();
  writeFileSync(join(work, 'example.ts'), program);
  assert.deepEqual(typeErrors(['example.ts']), []);
  // ...and would not against a document that did not describe its calls:
  // no filters parameter, filters as one string parameter (as the document
  // once declared them), or no SQL route.
  const listParameters = (doc) => doc.paths['/v1/tables/{table}/rows'].get.parameters;
  const broken = {
    'no filters': (doc) => {
      doc.paths['/v1/tables/{table}/rows'].get.parameters = listParameters(doc).filter((p) => p.name !== 'filters');
    },
    'filters as a string': (doc) => {
      const filters = listParameters(doc).find((p) => p.name === 'filters');
      filters.schema = { type: 'string' };
      delete filters.style;
      delete filters.explode;
    },
    'no SQL route': (doc) => {
      delete doc.paths['/v1/sql'];
    },
  };
  for (const [what, breakIt] of Object.entries(broken)) {
    const doc = structuredClone(document);
    breakIt(doc);
    writeFileSync(join(work, 'coffer-api.ts'), astToString(await openapiTS(doc)));
    const errors = typeErrors(['example.ts']);
    assert.ok(errors.some((e) => e.startsWith('example.ts:')), `${what}: the guide should not compile`);
  }
  writeFileSync(join(work, 'coffer-api.ts'), types);

  // Transpiled as it is and run with a token from the OAuth flow.
  const js = ts.transpileModule(program, {
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
  }).outputText;
  writeFileSync(join(work, 'example.mjs'), js);
  const { cofferClient, example, querySerializer } = await import(pathToFileURL(join(work, 'example.mjs')).href);
  const { clientId, token } = await appToken(coffer, browser, { scope: SCOPE, name: 'Generated Client' });
  assert.equal(token.scope, SCOPE);

  // The serializer sends what the server reads: filters spread, lists repeated.
  assert.equal(
    querySerializer({ limit: 2, filters: { given_name: 'in.(Ada,"Mary, Jr")', birthday: ['gte.1800-01-01', 'lt.1910-01-01'] } }),
    'limit=2&given_name=in.%28Ada%2C%22Mary%2C+Jr%22%29&birthday=gte.1800-01-01&birthday=lt.1910-01-01',
  );

  const got = await example(cofferClient(coffer.base, token.access_token));
  assert.equal(got.ada.given_name, 'Ada');
  assert.equal(got.ada._created_by, clientId);
  assert.match(got.ada.id, /\S/);
  assert.deepEqual(
    got.batch.rows.map((r) => r.given_name),
    ['Grace', 'Alan', 'Mary', 'Emmy'],
  );
  // The filters reached the server as filters: only the range within the
  // list, newest first, only the selected columns (and the system ones).
  assert.deepEqual(
    got.page.rows.map((r) => [r.given_name, r.birthday]),
    [
      ['Grace', '1906-12-09'],
      ['Ada', '1815-12-10'],
    ],
  );
  assert.equal(got.page.next_cursor, null);
  assert.ok(got.page.rows.every((r) => !('display_name' in r)), JSON.stringify(got.page.rows));
  assert.deepEqual(got.sql.columns, [{ name: 'given_name', type: 'text' }]);
  assert.deepEqual(got.sql.rows, [['Ada'], ['Alan']]);
  assert.equal(got.sql.row_count, 2);

  // A taken id comes back as the typed problem the guide names.
  const coffer2 = cofferClient(coffer.base, token.access_token);
  const again = await coffer2.POST('/v1/tables/{table}/rows', {
    params: { path: { table: 'contacts.people' } },
    body: { id: got.ada.id, display_name: 'Ada again' },
  });
  assert.equal(again.response.status, 409);
  assert.equal(again.error.type, 'urn:coffer:problem:id-in-use');
  assert.ok(!('current' in again.error), JSON.stringify(again.error));
});
