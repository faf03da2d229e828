// Queries as the rows API's query string, and evaluated locally (live
// queries). The data tests check the same queries against the server.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { compileQuery, listParams, type AnyRow } from '@coffer/sdk';

function pairs(params: URLSearchParams): [string, string][] {
  return [...params.entries()];
}

test('conditions, columns, order and limit as the rows API takes them', () => {
  const params = listParams({
    where: {
      given_name: 'Ada',
      priority: { gte: 1, lt: 4 },
      email: null,
      family_name: { not: { is: null } },
      display_name: { in: ['Ada', 'Grace, Jr', 'say "hi"', 'back\\slash'] },
      title: { ilike: 'gro*' },
      done: false,
      due: { lt: new Date(Date.UTC(2026, 0, 2, 3, 4, 5)) },
    },
    select: ['display_name', 'email'],
    order: ['display_name.desc', 'id'],
    limit: 10,
    cursor: 'abc',
  });
  assert.deepEqual(pairs(params), [
    ['given_name', 'eq.Ada'],
    ['priority', 'gte.1'],
    ['priority', 'lt.4'],
    ['email', 'is.null'],
    ['family_name', 'not.is.null'],
    ['display_name', 'in.("Ada","Grace, Jr","say \\"hi\\"","back\\\\slash")'],
    ['title', 'ilike.gro*'],
    ['done', 'eq.false'],
    ['due', 'lt.2026-01-02T03:04:05.000Z'],
    ['select', 'display_name,email'],
    ['order', 'display_name.desc,id'],
    ['limit', '10'],
    ['cursor', 'abc'],
  ]);
  // `+`, `&`, `%` and spaces survive the query string.
  assert.equal(listParams({ where: { title: 'a+b & 100% c' } }).toString(), 'title=eq.a%2Bb+%26+100%25+c');
});

test('what the rows API could not take is refused before sending', () => {
  assert.throws(() => listParams({ where: { limit: 3 } }), /parameter of the rows API/);
  assert.throws(() => listParams({ where: { a: { not: { eq: 1, gt: 2 } } } }), /exactly one operator/);
  assert.throws(() => listParams({ where: { a: { in: [] } } }), /non-empty list/);
  assert.throws(() => listParams({ where: { a: { between: 1 } as never } }), /unknown operator/);
  assert.throws(() => listParams({ where: { a: '' } }), /empty string/);
  assert.throws(() => listParams({ limit: 0 }), /1 to 1000/);
  assert.throws(() => listParams({ limit: 1001 }), /1 to 1000/);
});

function row(id: string, columns: Record<string, unknown>): AnyRow {
  return {
    id,
    _seq: 1,
    _created_by: 'app',
    _updated_by: 'app',
    _created_at: '2026-01-01T00:00:00Z',
    _updated_at: '2026-01-01T00:00:00Z',
    ...columns,
  };
}

const rows = [
  row('a', { name: 'Ada', priority: 3, done: false, due: '2026-03-01T10:00:00.250000Z' }),
  row('b', { name: 'grace', priority: null, done: true, due: null }),
  row('c', { name: 'Alan', priority: 1, done: null, due: '2026-03-01T10:00:00.000001Z' }),
  row('d', { name: 'Ada', priority: 3, done: false, due: '2026-02-01T00:00:00Z' }),
];

function ids(query: Parameters<typeof compileQuery>[0]): string[] {
  return compileQuery<AnyRow>(query)(rows).map((r) => r.id);
}

test('local evaluation follows SQL nulls: a comparison with null is unknown, also negated', () => {
  assert.deepEqual(ids({ where: { priority: { neq: 3 } } }), ['c']);
  assert.deepEqual(ids({ where: { priority: { not: { eq: 3 } } } }), ['c']);
  assert.deepEqual(ids({ where: { priority: null } }), ['b']);
  assert.deepEqual(ids({ where: { priority: { not: { is: null } } } }), ['a', 'c', 'd']);
  assert.deepEqual(ids({ where: { done: { is: false } } }), ['a', 'd']);
  assert.deepEqual(ids({ where: { done: { not: { is: true } } } }), ['a', 'c', 'd']);
});

test('local evaluation: ranges, in, patterns, timestamps to the microsecond', () => {
  assert.deepEqual(ids({ where: { priority: { gte: 1, lt: 3 } } }), ['c']);
  assert.deepEqual(ids({ where: { name: { in: ['Ada', 'Alan'] } } }), ['a', 'c', 'd']);
  assert.deepEqual(ids({ where: { name: { like: 'A%' } } }), ['a', 'c', 'd']);
  assert.deepEqual(ids({ where: { name: { like: 'A_a' } } }), ['a', 'd']);
  assert.deepEqual(ids({ where: { name: { ilike: 'G*' } } }), ['b']);
  assert.deepEqual(ids({ where: { name: { like: 'g.*' } } }), [], 'a dot is no wildcard');
  assert.deepEqual(ids({ where: { due: { gt: '2026-03-01T10:00:00Z' } } }), ['a', 'c']);
  assert.deepEqual(ids({ where: { due: { gt: '2026-03-01T10:00:00.000001Z' } } }), ['a']);
  assert.deepEqual(ids({ where: { due: { lt: '2026-03-01' } } }), ['d'], 'a date compares as its midnight');
});

test('local evaluation sorts nulls as larger than every value, id breaking ties; limit and select', () => {
  assert.deepEqual(ids({ order: 'priority' }), ['c', 'a', 'd', 'b']);
  assert.deepEqual(ids({ order: 'priority.desc' }), ['b', 'a', 'd', 'c']);
  assert.deepEqual(ids({ order: 'priority.desc.nullslast' }), ['a', 'd', 'c', 'b']);
  assert.deepEqual(ids({ order: ['name.desc', 'priority'] }), ['b', 'c', 'a', 'd']);
  assert.deepEqual(ids({ order: 'priority', limit: 2 }), ['c', 'a']);
  assert.deepEqual(compileQuery<AnyRow>({ select: ['name'], where: { id: 'c' } })(rows), [{ id: 'c', name: 'Alan' }]);
});
