// Coffer's Postgres wire protocol through node-postgres (`pg`), as an app
// would use it. The connection comes from the environment (PGHOST, PGPORT,
// PGUSER = the app's client id, PGPASSWORD = an access token,
// PGDATABASE = vault). The token's grant is expected to be
//   contacts.people(birthday,display_name,favorite,given_name):read+write
//   tasks.lists:read
// Asserts as it goes (exit status 1 with the reason on failure) and prints
// one JSON line of what it saw.

import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

import pg from 'pg';

const seen = { driver: `pg ${createRequire(import.meta.url)('pg/package.json').version}` };
const client = new pg.Client();
await client.connect();

/** The SQLSTATE `statement` fails with (it must fail). */
async function refusal(text, values = []) {
  try {
    await client.query(text, values);
  } catch (e) {
    assert.ok(e instanceof pg.DatabaseError, `${text}: ${e}`);
    return e.code;
  }
  assert.fail(`${text} was not refused`);
}

try {
  // A driver probe.
  const { rows: version } = await client.query({ text: 'SELECT version()', rowMode: 'array' });
  assert.match(version[0][0], /^PostgreSQL 16.*Coffer/);
  seen.version = version[0][0];

  // Insert with parameters (sent untyped, as text: the server infers them).
  const insert = 'INSERT INTO contacts.people (display_name, given_name, favorite, birthday) VALUES ($1, $2, $3, $4)';
  const added = await client.query(insert, ['Ada Lovelace', 'Ada', true, '1815-12-10']);
  assert.equal(added.command, 'INSERT');
  assert.equal(added.rowCount, 1);
  await client.query(insert, ['Charles Babbage', null, false, '1791-12-26']);

  // Select with a parameter, as a named (server-side prepared) statement
  // run twice: the types come back as JavaScript's.
  const byName = {
    name: 'person-by-name',
    text: 'SELECT id, display_name, given_name, favorite, birthday, _seq FROM contacts.people WHERE display_name = $1',
  };
  const { rows } = await client.query({ ...byName, values: ['Ada Lovelace'] });
  assert.equal(rows.length, 1);
  const ada = rows[0];
  assert.equal(typeof ada.id, 'string');
  assert.equal(ada.display_name, 'Ada Lovelace');
  assert.equal(ada.given_name, 'Ada');
  assert.equal(ada.favorite, true);
  // A `date` is a Date at local midnight; `int8` a string (pg's default:
  // a 64-bit integer does not fit a JavaScript number).
  assert.ok(ada.birthday instanceof Date, `birthday: ${ada.birthday}`);
  assert.deepEqual([ada.birthday.getFullYear(), ada.birthday.getMonth() + 1, ada.birthday.getDate()], [1815, 12, 10]);
  assert.match(ada._seq, /^[0-9]+$/);
  const again = await client.query({ ...byName, values: ['Charles Babbage'] });
  assert.equal(again.rows.length, 1);
  assert.equal(again.rows[0].given_name, null);
  assert.equal(again.rows[0].favorite, false);

  // A number: `int4` is one.
  const counted = await client.query(
    'SELECT CAST(count(*) AS INTEGER) AS n FROM contacts.people WHERE favorite = $1 AND birthday < $2',
    [true, '1900-01-01'],
  );
  assert.deepEqual(counted.rows, [{ n: 1 }]);
  seen.types = Object.fromEntries(
    Object.entries({ ...ada, n: counted.rows[0].n }).map(([k, v]) => [k, v instanceof Date ? 'Date' : typeof v]),
  );

  // Update and delete with parameters.
  const updated = await client.query('UPDATE contacts.people SET given_name = $1, favorite = $2 WHERE id = $3', [
    'Augusta Ada',
    false,
    ada.id,
  ]);
  assert.equal(updated.rowCount, 1);
  const deleted = await client.query('DELETE FROM contacts.people WHERE display_name = $1', ['Charles Babbage']);
  assert.equal(deleted.rowCount, 1);
  const left = await client.query('SELECT display_name, given_name, favorite FROM contacts.people ORDER BY display_name');
  assert.deepEqual(left.rows, [{ display_name: 'Ada Lovelace', given_name: 'Augusta Ada', favorite: false }]);
  // A page size as a parameter: node `pg` sends it as text, read as bigint.
  const page = await client.query('SELECT display_name FROM contacts.people ORDER BY display_name LIMIT $1 OFFSET $2', [1, 0]);
  assert.deepEqual(page.rows, [{ display_name: 'Ada Lovelace' }]);

  // What the grant leaves out does not exist, or is a missing right.
  seen.refused = {
    table: await refusal('SELECT name FROM contacts.groups WHERE name = $1', ['Family']),
    column: await refusal('SELECT email FROM contacts.people WHERE id = $1', [ada.id]),
    right: await refusal('INSERT INTO tasks.lists (name) VALUES ($1)', ['Groceries']),
  };
  assert.deepEqual(seen.refused, { table: '42P01', column: '42703', right: '42501' });

  // The session goes on after a refusal; an unnamed count is `count`, as
  // in Postgres.
  const still = await client.query('SELECT count(*) FROM contacts.people');
  assert.deepEqual(still.rows, [{ count: '1' }]);

  seen.id = ada.id;
} finally {
  await client.end();
}
console.log(JSON.stringify(seen));
