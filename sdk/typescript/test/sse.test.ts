// The SSE parser against the WHATWG standard's rules, fed whole and in
// every split of the input, so no event depends on where chunks end.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { SseParser, readEvents, type SseEvent } from '@coffer/sdk';

/** Parses `input` pushed in pieces cut at `cuts`; the events and comments. */
function parse(input: string, cuts: number[] = []): { events: SseEvent[]; comments: string[]; retries: number[] } {
  const events: SseEvent[] = [];
  const comments: string[] = [];
  const retries: number[] = [];
  const parser = new SseParser({
    event: (e) => events.push(e),
    comment: (c) => comments.push(c),
    retry: (ms) => retries.push(ms),
  });
  let at = 0;
  for (const cut of [...cuts, input.length]) {
    parser.push(input.slice(at, cut));
    at = cut;
  }
  parser.end();
  return { events, comments, retries };
}

/** The same result for every way of cutting `input` in two and in three. */
function parseEverySplit(input: string): ReturnType<typeof parse> {
  const whole = parse(input);
  for (let i = 0; i <= input.length; i++) {
    assert.deepEqual(parse(input, [i]), whole, `cut at ${i} of ${JSON.stringify(input)}`);
    for (let j = i; j <= input.length; j += 3) {
      assert.deepEqual(parse(input, [i, j]), whole, `cut at ${i} and ${j}`);
    }
  }
  return whole;
}

test('the stream of the sync guide: events, ids, data', () => {
  const input =
    'event: up-to-date\nid: c1\ndata: {}\n\n' +
    'event: change\nid: c2\ndata: {"op":"insert","id":"grace"}\n\n' +
    ': heartbeat\n\n';
  const { events, comments } = parseEverySplit(input);
  assert.deepEqual(events, [
    { type: 'up-to-date', data: '{}', lastEventId: 'c1' },
    { type: 'change', data: '{"op":"insert","id":"grace"}', lastEventId: 'c2' },
  ]);
  assert.deepEqual(comments, ['heartbeat']);
});

test('CRLF, CR and LF all end lines, also when a CRLF is cut between two chunks', () => {
  const input = 'data: a\r\ndata: b\rdata: c\n\r\nevent: x\rdata: d\r\r';
  const { events } = parseEverySplit(input);
  assert.deepEqual(events, [
    { type: 'message', data: 'a\nb\nc', lastEventId: '' },
    { type: 'x', data: 'd', lastEventId: '' },
  ]);
});

test('the last event id persists across events until an id field changes it', () => {
  const { events } = parseEverySplit('id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: 2\u0000x\ndata: d\n\n');
  assert.deepEqual(
    events.map((e) => [e.data, e.lastEventId]),
    [
      ['a', '1'],
      ['b', '1'],
      // `id` with no value resets it; an id holding NUL is ignored.
      ['c', ''],
      ['d', ''],
    ],
  );
});

test('one leading space is stripped from a value, no more; a field without a colon has an empty value', () => {
  const { events } = parseEverySplit('data:  two spaces\ndata:none\ndata\n\n');
  assert.deepEqual(events, [{ type: 'message', data: ' two spaces\nnone\n', lastEventId: '' }]);
});

test('an event without data is not dispatched, and its type does not leak into the next', () => {
  const { events } = parseEverySplit('event: purge\n\ndata: x\n\n');
  assert.deepEqual(events, [{ type: 'message', data: 'x', lastEventId: '' }]);
});

test('an event the stream ends in the middle of is dropped', () => {
  const { events } = parseEverySplit('data: complete\n\nevent: change\ndata: partial\n');
  assert.deepEqual(events, [{ type: 'message', data: 'complete', lastEventId: '' }]);
});

test('unknown fields are ignored, retry takes only digits, and a BOM at the start is dropped', () => {
  const { events, retries } = parseEverySplit('\ufeffdata: a\nfoo: bar\nretry: 1500\nretry: 1x\n\n');
  assert.deepEqual(events, [{ type: 'message', data: 'a', lastEventId: '' }]);
  assert.deepEqual(retries, [1500]);
});

test('readEvents decodes UTF-8 split across chunks', async () => {
  const bytes = new TextEncoder().encode('event: change\ndata: {"name":"Zoë 🦋"}\n\n');
  // Cut inside the two-byte ë and the four-byte emoji.
  const cuts = [bytes.indexOf(0xc3) + 1, bytes.indexOf(0xf0) + 2, bytes.length];
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      let at = 0;
      for (const cut of cuts) {
        controller.enqueue(bytes.slice(at, cut));
        at = cut;
      }
      controller.close();
    },
  });
  const events: SseEvent[] = [];
  for await (const event of readEvents(body)) events.push(event);
  assert.deepEqual(events, [{ type: 'change', data: '{"name":"Zoë 🦋"}', lastEventId: '' }]);
});
