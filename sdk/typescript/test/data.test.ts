// Typed tables against a real `coffer serve`, with the types `coffer
// codegen --lang ts` writes: queries as the rows API answers them (and the
// same queries evaluated locally, as live queries do), writes with `ifSeq`
// and their conflicts, batch updates, SQL with parameters, and the 403
// that names the missing right, asked for with `requestMore`.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { CofferError, ConflictError, MissingRightError, compileQuery, type ListQuery, type Vault } from '@coffer/sdk';

import { TABLES, type ContactsPeople, type Tables } from './generated/schemas.js';
import { newUser, signedIn, startCoffer, type Browser, type Coffer } from './coffer.js';

let coffer: Coffer;
let user: Browser;
let vault: Vault<Tables>;
let opened: string[];

const SCOPE = 'contacts.people:read+write notes.notes(title,pinned):read';

before(async () => {
  coffer = await startCoffer();
  user = await newUser(coffer, 'grace@example.org');
  ({ vault, opened } = await signedIn<Tables>(coffer, user, 'Address book', SCOPE));
  await vault.table(TABLES.ContactsPeople).insertMany([
    { id: 'ada', display_name: 'Ada Lovelace', given_name: 'Ada', email: 'ada@example.com' },
    { id: 'grace', display_name: 'Grace Hopper', given_name: 'Grace', family_name: 'Hopper' },
    { id: 'alan', display_name: 'Alan Turing', given_name: 'Alan', family_name: 'Turing' },
    { id: 'grace-jr', display_name: 'Grace, Jr', given_name: 'Grace, Jr' },
    { id: 'nobody', display_name: 'Nobody' },
  ]);
});

after(async () => {
  await coffer?.stop();
});

test('typed inserts and reads: rows come back as the generated row type', async () => {
  const people = vault.table('contacts.people');
  const row = await people.insert({ display_name: 'Katherine Johnson', given_name: 'Katherine', birthday: '1918-08-26' });
  const typed: ContactsPeople = row;
  assert.match(typed.id, /^[0-9a-z]{26}$/);
  assert.equal(typed.display_name, 'Katherine Johnson');
  assert.equal(typed.birthday, '1918-08-26');
  assert.equal(typed.email, null);
  assert.equal(typeof typed._seq, 'number');
  assert.equal(typed._created_by, vault.session.clientId);
  assert.deepEqual(await people.get(row.id), row);
  await people.delete(row.id);
  await assert.rejects(people.get(row.id), (e: unknown) => e instanceof CofferError && e.code === 'row-not-found' && e.status === 404);

  // What must not compile: each line's error is expected by tsc.
  if (false as boolean) {
    // @ts-expect-error display_name may not be null, so an insert needs it
    await people.insert({ given_name: 'Ada' });
    // @ts-expect-error no such column
    await people.list({ where: { e_mail: 'x' } });
    // @ts-expect-error a text column is not compared with a number
    await people.list({ where: { given_name: { gt: 3 } } });
    // @ts-expect-error no such column to select
    await people.list({ select: ['phone_number'] });
    // @ts-expect-error no such table in the generated types
    vault.table('contacts.peoples');
    const picked = (await people.list({ select: ['email'] })).rows[0]!;
    const email: string | null = picked.email;
    const id: string = picked.id;
    // @ts-expect-error a column not selected is not in the row type
    void picked.display_name;
    void [email, id];
  }
});

test('where, select, order, limit and cursor pages, as the rows API answers them', async () => {
  const people = vault.table('contacts.people');
  const page = await people.list({
    where: { given_name: { in: ['Ada', 'Grace'] } },
    select: ['display_name', 'email'],
    order: 'display_name.desc',
    limit: 1,
  });
  assert.deepEqual(page.rows, [{ id: 'grace', display_name: 'Grace Hopper', email: null }]);
  assert.ok(page.nextCursor);
  const next = await people.list({
    where: { given_name: { in: ['Ada', 'Grace'] } },
    select: ['display_name', 'email'],
    order: 'display_name.desc',
    limit: 1,
    cursor: page.nextCursor,
  });
  assert.deepEqual(next.rows, [{ id: 'ada', display_name: 'Ada Lovelace', email: 'ada@example.com' }]);

  // A quoted value holding a comma; a negated pattern; null tests.
  assert.deepEqual(
    (await people.list({ where: { given_name: { in: ['Ada', 'Grace, Jr'] } }, select: ['id'], order: 'id' })).rows,
    [{ id: 'ada' }, { id: 'grace-jr' }],
  );
  const all = await people.all({
    where: { family_name: { not: { is: null } } },
    select: ['family_name'],
    order: 'family_name',
    limit: 1,
  });
  assert.deepEqual(
    all.map((r) => r.family_name),
    ['Hopper', 'Turing'],
    'every page, one row a page',
  );
});

test('local evaluation gives what the server gives for the same query', async () => {
  const people = vault.table('contacts.people');
  const everything = await people.all({});
  const queries: ListQuery<ContactsPeople, any>[] = [
    {},
    { where: { given_name: 'Grace' } },
    { where: { family_name: null }, order: 'display_name' },
    { where: { family_name: { neq: 'Hopper' } } },
    { where: { family_name: { not: { eq: 'Hopper' } } } },
    { where: { given_name: { like: 'A*' } }, order: 'given_name.desc' },
    { where: { given_name: { ilike: 'g%' } } },
    { where: { display_name: { gte: 'Alan', lt: 'Grace' } }, order: ['display_name.desc'] },
    { where: { email: { not: { is: null } } }, select: ['email'] },
    { order: ['family_name.desc', 'display_name'], limit: 3 },
    { order: 'family_name.nullsfirst', limit: 4 },
    { where: { id: { in: ['ada', 'alan', 'missing'] } }, select: ['given_name'] },
  ];
  for (const query of queries) {
    const server = (await people.list(query)).rows;
    const local = compileQuery<ContactsPeople>(query)(everything);
    assert.deepEqual(local, server, JSON.stringify(query));
  }
});

test('ifSeq: a write that expects an older version is refused with the row as it is now', async () => {
  const people = vault.table('contacts.people');
  const ada = await people.get('ada');
  const changed = await people.update('ada', { family_name: 'Lovelace' }, { ifSeq: ada._seq });
  assert.equal(changed.family_name, 'Lovelace');
  assert.ok(changed._seq > ada._seq);

  const stale = await people.update('ada', { email: 'ada@lovelace.example' }, { ifSeq: ada._seq }).then(
    () => assert.fail('a stale ifSeq was accepted'),
    (e: unknown) => e,
  );
  assert.ok(stale instanceof ConflictError);
  assert.equal(stale.status, 409);
  assert.deepEqual(stale.current, changed);
  assert.equal((await people.get('ada')).email, 'ada@example.com', 'nothing was written');

  await assert.rejects(people.delete('ada', { ifSeq: ada._seq }), ConflictError);
  const nobody = await people.get('nobody');
  await people.delete('nobody', { ifSeq: nobody._seq });
  await assert.rejects(people.get('nobody'), (e: unknown) => e instanceof CofferError && e.code === 'row-not-found');
});

test('batch update: every change applies or none does', async () => {
  const people = vault.table('contacts.people');
  const [grace, alan] = [await people.get('grace'), await people.get('alan')];
  const rows = await people.updateMany([
    { id: 'grace', set: { email: 'grace@navy.example' }, ifSeq: grace._seq },
    { id: 'alan', set: { email: 'alan@example.org' } },
  ]);
  assert.deepEqual(
    rows.map((r) => [r.id, r.email]),
    [
      ['grace', 'grace@navy.example'],
      ['alan', 'alan@example.org'],
    ],
  );
  const conflict = await people
    .updateMany([
      { id: 'alan', set: { email: 'turing@example.org' } },
      { id: 'grace', set: { email: 'hopper@example.org' }, ifSeq: grace._seq },
    ])
    .then(
      () => assert.fail('a stale if_seq was accepted'),
      (e: unknown) => e,
    );
  assert.ok(conflict instanceof ConflictError);
  assert.equal((conflict.current as ContactsPeople).id, 'grace');
  assert.equal((await people.get('alan')).email, 'alan@example.org', 'the other change was not applied either');
  void alan;
});

test('sql with parameters: a SELECT across granted tables, and a write answering its count', async () => {
  const select = await vault.sql<[string, string | null]>(
    'SELECT display_name, email FROM contacts.people WHERE given_name = $1 OR id = $2 ORDER BY display_name',
    ['Grace', 'ada'],
  );
  assert.deepEqual(select.columns, [
    { name: 'display_name', type: 'text' },
    { name: 'email', type: 'text' },
  ]);
  assert.deepEqual(select.rows, [
    ['Ada Lovelace', 'ada@example.com'],
    ['Grace Hopper', 'grace@navy.example'],
  ]);
  assert.equal(select.rowCount, 2);

  // A parameter is bound, never spliced: this is one odd name, not SQL.
  const odd = "x' OR '1'='1";
  const none = await vault.sql('SELECT id FROM contacts.people WHERE given_name = $1', [odd]);
  assert.deepEqual(none.rows, []);

  const update = await vault.sql('UPDATE contacts.people SET email = $1 WHERE id = $2', ['ada@example.net', 'ada']);
  assert.deepEqual(update.rows, [[1]]);
  assert.equal((await vault.table('contacts.people').get('ada')).email, 'ada@example.net');

  await assert.rejects(vault.sql('SELEKT 1'), (e: unknown) => e instanceof CofferError && e.code === 'invalid-sql' && e.status === 400);
});

test('a refused action names the missing right; requestMore asks for just that, and then it works', async () => {
  const notes = vault.table('notes.notes');
  const refused = await notes.insert({ title: 'Groceries' }).then(
    () => assert.fail('the insert was allowed'),
    (e: unknown) => e,
  );
  assert.ok(refused instanceof MissingRightError);
  assert.equal(refused.status, 403);
  assert.equal(refused.required, 'notes.notes:create');
  assert.equal(refused.problem?.type, 'urn:coffer:problem:missing-right');

  // A column outside the grant is refused the same way for a write.
  const column = await vault
    .table('notes.notes')
    .list({ select: ['body'] })
    .then(
      () => assert.fail('an ungranted column was read'),
      (e: unknown) => e,
    );
  assert.ok(column instanceof CofferError);
  assert.equal(column.code, 'unknown-column');

  opened.length = 0;
  await vault.requestMore(refused.required);
  // What the token held, and the missing right.
  assert.equal(
    new URL(opened[0]!).searchParams.get('scope'),
    'contacts.people:read+write notes.notes(pinned,title):read notes.notes:create',
  );
  const location = await user.consent(opened[0]!);
  const result = await vault.handleRedirect(location);
  assert.ok(result);
  assert.equal(result.tokens.scope, 'contacts.people:read+write notes.notes(pinned,title):read notes.notes:create');
  const note = await notes.insert({ title: 'Groceries' });
  assert.equal(note.title, 'Groceries');
  // What was allowed before is still allowed.
  assert.ok((await vault.table('contacts.people').list({ limit: 1 })).rows.length === 1);
});
