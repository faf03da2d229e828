// The client side of Server-Sent Events, read from a `fetch` body (which,
// unlike `EventSource`, can send `Authorization` and `DPoP` headers). The
// parsing follows the WHATWG HTML standard's "Interpreting an event stream"
// (https://html.spec.whatwg.org/multipage/server-sent-events.html): lines
// end with CRLF, LF or CR; `:` starts a comment; a blank line dispatches
// the event, unless its data is empty; the last event id persists from one
// event to the next; an event the stream ends in the middle of is dropped.

/** One dispatched event. */
export interface SseEvent {
  /** The `event` field, `message` when there was none. */
  type: string;
  /** The `data` lines joined with `\n`. */
  data: string;
  /** The last `id` field seen so far in the stream (it persists across events). */
  lastEventId: string;
}

/** What a parser reports besides events. */
export interface SseHandlers {
  /** Each event. */
  event(event: SseEvent): void;
  /** Each comment line's text (after the `:`), e.g. a heartbeat. */
  comment?(text: string): void;
  /** A `retry` field: the reconnection time the server asks for, in milliseconds. */
  retry?(ms: number): void;
}

/** An incremental parser: `push` decoded text as it arrives, in any pieces. */
export class SseParser {
  private readonly handlers: SseHandlers;
  private buffer = '';
  private started = false;
  /** The previous piece ended in CR: an LF at the start of the next one belongs to it. */
  private afterCR = false;
  private data: string[] = [];
  private type = '';
  private lastEventId = '';

  /** A parser reporting to `handlers`. */
  constructor(handlers: SseHandlers) {
    this.handlers = handlers;
  }

  /** Parses `chunk`, dispatching every event it completes. */
  push(chunk: string): void {
    if (chunk === '') return;
    if (!this.started && chunk.length > 0) {
      this.started = true;
      if (chunk.charCodeAt(0) === 0xfeff) chunk = chunk.slice(1);
    }
    if (this.afterCR && chunk.startsWith('\n')) chunk = chunk.slice(1);
    this.afterCR = false;
    this.buffer += chunk;
    let start = 0;
    for (;;) {
      const cr = this.buffer.indexOf('\r', start);
      const lf = this.buffer.indexOf('\n', start);
      let end: number;
      if (cr === -1 && lf === -1) break;
      if (cr === -1 || (lf !== -1 && lf < cr)) {
        end = lf;
        this.line(this.buffer.slice(start, end));
        start = end + 1;
      } else {
        end = cr;
        this.line(this.buffer.slice(start, end));
        if (end + 1 === this.buffer.length) {
          // Whether an LF follows is known only with the next piece.
          this.afterCR = true;
          start = end + 1;
        } else {
          start = this.buffer[end + 1] === '\n' ? end + 2 : end + 1;
        }
      }
    }
    this.buffer = this.buffer.slice(start);
  }

  /** The stream ended: an event not yet completed by a blank line is dropped. */
  end(): void {
    this.buffer = '';
    this.data = [];
    this.type = '';
    this.afterCR = false;
  }

  private line(line: string): void {
    if (line === '') {
      this.dispatch();
      return;
    }
    if (line.startsWith(':')) {
      this.handlers.comment?.(line.slice(1).replace(/^ /, ''));
      return;
    }
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'event':
        this.type = value;
        break;
      case 'data':
        this.data.push(value);
        break;
      case 'id':
        if (!value.includes('\0')) this.lastEventId = value;
        break;
      case 'retry':
        if (/^[0-9]+$/.test(value)) this.handlers.retry?.(Number(value));
        break;
      default:
      // Other fields are ignored.
    }
  }

  private dispatch(): void {
    const data = this.data;
    const type = this.type;
    this.data = [];
    this.type = '';
    if (data.length === 0) return;
    this.handlers.event({ type: type || 'message', data: data.join('\n'), lastEventId: this.lastEventId });
  }
}

/**
 * Reads a response body as a stream of events, decoding UTF-8 across chunk
 * boundaries. Ends when the body ends; an aborted or failed read rejects.
 */
export async function* readEvents(
  body: ReadableStream<Uint8Array>,
  handlers: Omit<SseHandlers, 'event'> = {},
): AsyncGenerator<SseEvent> {
  const queue: SseEvent[] = [];
  const parser = new SseParser({ ...handlers, event: (e) => queue.push(e) });
  const decoder = new TextDecoder();
  const reader = body.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        parser.push(decoder.decode());
        parser.end();
        yield* queue.splice(0);
        return;
      }
      parser.push(decoder.decode(value, { stream: true }));
      yield* queue.splice(0);
    }
  } finally {
    reader.cancel().catch(() => {});
    try {
      reader.releaseLock();
    } catch {
      // Already released.
    }
  }
}
