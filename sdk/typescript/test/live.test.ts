// Live queries against a real `coffer serve`: another app's writes arrive
// in a subscription as they commit, and when the user narrows the grant on
// the dashboard the local copy drops what the app may no longer keep.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import type { LiveInfo, Vault } from '@coffer/sdk';

import type { Tables } from './generated/schemas.js';
import { eventually, newUser, signedIn, startCoffer, type Browser, type Coffer } from './coffer.js';

let coffer: Coffer;
let user: Browser;

before(async () => {
  // Heartbeats (which also check the token again) twice a second, so a
  // narrowed grant ends a stream at once.
  coffer = await startCoffer({ COFFER_STREAM_HEARTBEAT_SECS: '0.5' });
  user = await newUser(coffer, 'katherine@example.org');
});

after(async () => {
  await coffer?.stop();
});

/** Every delivery of a subscription, newest last. */
function recorder<R>() {
  const seen: { rows: R[]; info: LiveInfo }[] = [];
  return {
    seen,
    next: (rows: R[], info: LiveInfo) => void seen.push({ rows, info }),
    last: () => seen[seen.length - 1],
  };
}

test("subscribe: the app's rows, then another app's writes as they commit", async (t) => {
  const { vault: writer } = await signedIn<Tables>(coffer, user, 'Writer', 'contacts.people:read+write');
  const { vault: reader } = await signedIn<Tables>(coffer, user, 'Reader', 'contacts.people(display_name,email):read');
  await writer.table('contacts.people').insert({ id: 'ada', display_name: 'Ada Lovelace', email: 'ada@example.com' });

  const everyone = recorder<{ id: string; display_name: string; email: string | null }>();
  const stopEveryone = reader.subscribe('contacts.people', { select: ['display_name', 'email'], order: 'display_name' }, everyone.next);
  const graces = recorder<{ id: string; display_name: string }>();
  const stopGraces = reader
    .table('contacts.people')
    .subscribe({ where: { display_name: { like: 'Grace*' } }, select: ['display_name'] }, graces.next);
  t.after(() => {
    stopEveryone();
    stopGraces();
    reader.liveStream?.close();
  });

  await eventually('the load', () => everyone.last());
  assert.deepEqual(everyone.last()!.rows, [{ id: 'ada', display_name: 'Ada Lovelace', email: 'ada@example.com' }]);
  await eventually('the empty answer of the other query', () => graces.last());
  assert.deepEqual(graces.last()!.rows, []);

  await writer.table('contacts.people').insert({ id: 'grace', display_name: 'Grace Hopper' });
  await eventually('the insert', () => (everyone.last()!.rows.length === 2 ? true : undefined));
  assert.deepEqual(everyone.last()!.rows, [
    { id: 'ada', display_name: 'Ada Lovelace', email: 'ada@example.com' },
    { id: 'grace', display_name: 'Grace Hopper', email: null },
  ]);
  await eventually('the insert in the filtered query', () => (graces.last()!.rows.length === 1 ? true : undefined));
  assert.deepEqual(graces.last()!.rows, [{ id: 'grace', display_name: 'Grace Hopper' }]);
  const gracesCalls = graces.seen.length;

  await writer.table('contacts.people').update('ada', { email: 'ada@lovelace.example', given_name: 'Ada' });
  await eventually('the update', () => (everyone.last()!.rows[0]!.email === 'ada@lovelace.example' ? true : undefined));
  await writer.table('contacts.people').delete('grace');
  await eventually('the delete', () => (everyone.last()!.rows.length === 1 ? true : undefined));
  await eventually('the delete in the filtered query', () => (graces.last()!.rows.length === 0 ? true : undefined));
  assert.equal(graces.seen.length, gracesCalls + 1, 'a change that leaves a query as it was does not call it');
  assert.ok(everyone.seen.every((d) => d.rows.every((r) => !('given_name' in r))), 'no column outside the grant');

});

test('when the user narrows the grant, the local copy drops the table, the columns and the rows it may no longer keep', async (t) => {
  const { vault: writer } = await signedIn<Tables>(coffer, user, 'Team app', 'contacts.people:read+write tasks.lists:read+create');
  const { vault: narrowed, clientId } = await signedIn<Tables>(
    coffer,
    user,
    'Narrowed',
    'contacts.people:read+create tasks.lists:read',
  );
  await writer.table('contacts.people').insert({ id: 'other', display_name: 'Written by the team app', email: 'x@example.org' });
  await writer.table('tasks.lists').insert({ id: 'home', name: 'Home' });
  await narrowed.table('contacts.people').insert({ id: 'mine', display_name: 'Written by me', email: 'me@example.org' });

  const people = recorder<Tables['contacts.people']['row']>();
  const lists = recorder<Tables['tasks.lists']['row']>();
  const stopPeople = narrowed.subscribe(
    'contacts.people',
    { where: { id: { in: ['mine', 'mine-2', 'other', 'other-2'] } }, order: 'id' },
    people.next,
  );
  const stopLists = narrowed.subscribe('tasks.lists', {}, lists.next);
  t.after(() => {
    stopPeople();
    stopLists();
    narrowed.liveStream?.close();
  });
  await eventually('the load', () => (people.last() && lists.last() ? true : undefined));
  assert.deepEqual(
    people.last()!.rows.map((r) => [r.id, r.email]),
    [
      ['mine', 'me@example.org'],
      ['other', 'x@example.org'],
    ],
  );
  assert.deepEqual(
    lists.last()!.rows.map((r) => r.name),
    ['Home'],
  );

  // Only the display name of its own rows, and no lists any more.
  await user.narrow('Narrowed', ['contacts.people(display_name):read+create:own']);

  await eventually('the dropped table', () => (lists.last()!.info.dropped ? true : undefined));
  assert.deepEqual(lists.last()!.rows, []);
  await eventually('the purged rows', () => (people.last()!.rows.length === 1 ? true : undefined));
  const [mine] = people.last()!.rows;
  assert.equal(mine!.id, 'mine');
  assert.equal(mine!.display_name, 'Written by me');
  assert.equal('email' in mine!, false, 'the column is gone from the copy');
  assert.equal(mine!._created_by, clientId);

  // The stream goes on with what is still granted.
  await narrowed.table('contacts.people').insert({ id: 'mine-2', display_name: 'Also mine' });
  await writer.table('contacts.people').insert({ id: 'other-2', display_name: 'Not for the narrowed app' });
  await eventually('the new own row', () => (people.last()!.rows.length === 2 ? true : undefined));
  assert.deepEqual(
    people.last()!.rows.map((r) => [r.id, 'email' in r]),
    [
      ['mine', false],
      ['mine-2', false],
    ],
  );
  assert.equal((await narrowed.tokens())!.scope, 'contacts.people(display_name):read+create:own');

});

test('a revoked sign-out stops live queries with an error', async (t) => {
  const { vault } = await signedIn<Tables>(coffer, user, 'Short-lived', 'contacts.people:read', { dpop: false });
  const errors: unknown[] = [];
  const seen = recorder<unknown>();
  const stop = (vault as Vault<Tables>).subscribe('contacts.people', {}, { next: seen.next, error: (e) => errors.push(e) });
  t.after(stop);
  await eventually('the load', () => seen.last());
  const tokens = (await vault.tokens())!;
  // Revoked at the server (as on another device): the stream ends.
  for (const token of [tokens.refreshToken!, tokens.accessToken]) {
    await fetch(`${coffer.base}/oauth/revoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token, client_id: vault.session.clientId }),
    });
  }
  await eventually('the error', () => errors[0]);
  assert.equal(vault.liveStatus, 'closed');
  assert.equal(await vault.isSignedIn(), false, 'a revoked sign-in is forgotten');
});
