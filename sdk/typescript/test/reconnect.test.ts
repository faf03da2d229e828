// The change stream resumes from its cursor: when the server ends each
// stream after a second (its lifetime, shortened here), and when the
// connection drops in the middle of an event, every change arrives once,
// in order, none missed.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import type { Change, ChangeStream, Vault } from '@coffer/sdk';

import type { Tables } from './generated/schemas.js';
import { eventually, newUser, signedIn, startCoffer, type Browser, type Coffer } from './coffer.js';

let coffer: Coffer;
let user: Browser;
let writer: Vault<Tables>;

before(async () => {
  coffer = await startCoffer({ COFFER_STREAM_MAX_LIFETIME_SECS: '1', COFFER_STREAM_HEARTBEAT_SECS: '0.5' });
  user = await newUser(coffer, 'hedy@example.org');
  ({ vault: writer } = await signedIn<Tables>(coffer, user, 'Writer', 'tasks.items:read+create tasks.lists:read+create'));
});

after(async () => {
  await coffer?.stop();
});

/** Follows `table` from now on; the inserted ids as they arrive. */
async function follow(vault: Vault<Tables>, table: 'tasks.items' | 'tasks.lists'): Promise<{ stream: ChangeStream; ids: string[]; retried: unknown[] }> {
  const ids: string[] = [];
  const retried: unknown[] = [];
  let upToDate = false;
  const stream = vault.changes(
    { tables: [table] },
    {
      change: (change: Change) => ids.push(change.id),
      upToDate: () => (upToDate = true),
      retrying: (error) => retried.push(error),
    },
  );
  await eventually('the load', () => (upToDate ? true : undefined));
  return { stream, ids, retried };
}

/** Inserts `count` rows with ids `prefix-N` into `table`, `pauseMs` apart; their ids. */
async function write(table: 'tasks.items' | 'tasks.lists', prefix: string, count: number, pauseMs: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const id = `${prefix}-${String(i).padStart(2, '0')}`;
    if (table === 'tasks.items') await writer.table(table).insert({ id, title: `Task ${i}`, completed: false });
    else await writer.table(table).insert({ id, name: `List ${i}` });
    ids.push(id);
    await new Promise((r) => setTimeout(r, pauseMs));
  }
  return ids;
}

test('streams that end at their lifetime resume from the last id: no change missed, none twice', async (t) => {
  const { vault } = await signedIn<Tables>(coffer, user, 'Follower', 'tasks.items:read');
  const { stream, ids } = await follow(vault, 'tasks.items');
  t.after(() => stream.close());
  const written = await write('tasks.items', 'lifetime', 30, 100);
  await eventually('every change', () => (ids.length >= written.length ? true : undefined), 15_000);
  // Anything extra would have come by now.
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(ids, written);
  assert.ok(stream.connections >= 3, `only ${stream.connections} connections: the streams did not end and resume`);
  stream.close();
  await stream.done;
  assert.equal(stream.status, 'closed');
});

test('a connection cut in the middle of an event resumes from the last complete one', async (t) => {
  let cuts = 0;
  // Each stream's connection breaks after 700 bytes, mostly mid-event.
  const cutting: typeof fetch = async (input, init) => {
    const response = await fetch(input, init);
    if (!String(input).includes('/v1/changes/stream') || !response.body) return response;
    const reader = response.body.getReader();
    let passed = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const { value, done } = await reader.read();
        if (done) {
          controller.close();
          return;
        }
        const room = 700 - passed;
        if (value.length >= room) {
          controller.enqueue(value.slice(0, room));
          cuts++;
          await reader.cancel();
          controller.error(new TypeError('the connection was reset'));
          return;
        }
        passed += value.length;
        controller.enqueue(value);
      },
      cancel: () => reader.cancel(),
    });
    return new Response(body, { status: response.status, headers: response.headers });
  };
  const { vault } = await signedIn<Tables>(coffer, user, 'Unlucky follower', 'tasks.lists:read', { fetch: cutting });
  const { stream, ids, retried } = await follow(vault, 'tasks.lists');
  t.after(() => stream.close());
  const written = await write('tasks.lists', 'cut', 12, 150);
  await eventually('every change', () => (ids.length >= written.length ? true : undefined), 20_000);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(ids, written);
  assert.ok(cuts >= 3, `only ${cuts} connections were cut`);
  assert.ok(retried.length >= cuts, 'each cut was retried');
  stream.close();
  await stream.done;
});
