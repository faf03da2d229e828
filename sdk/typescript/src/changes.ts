// Following the vault's live change stream (`GET /v1/changes/stream`):
// reconnects from the last event id after a network drop or the stream's
// end, renews the token when the stream says it expired or the grant
// changed, and starts again from a load when the cursor is too old.

import type { Session } from './auth.js';
import { CofferError, InvalidTokenError, NotSignedInError, errorFromResponse } from './errors.js';
import type { AnyRow } from './query.js';
import { readEvents } from './sse.js';

/** One change of the feed: a row that appeared, changed or went. */
export interface Change<Row = AnyRow> {
  /** `insert` (created, or first seen in a load), `update`, or `delete` (`row` is null). */
  op: 'insert' | 'update' | 'delete';
  /** `schema.table`. */
  table: string;
  /** The row's id. */
  id: string;
  /** The change's sequence number (the row's `_seq` after it). */
  seq: number;
  /** The whole row as the token may read it; `null` for a delete. */
  row: Row | null;
}

/** What a narrowed grant no longer lets the app keep. */
export type PurgeEntry =
  | { table: string; drop: 'table' }
  | { table: string; drop: 'columns'; columns: string[] }
  | { table: string; drop: 'rows' };

/** Where a change stream stands. */
export type StreamStatus = 'connecting' | 'loading' | 'live' | 'reconnecting' | 'closed';

/** What a change stream reports. Every handler is optional. */
export interface ChangeStreamHandlers {
  /** A change; `cursor` is where the stream stands after it. */
  change?(change: Change, cursor: string): void;
  /** What to remove from a local copy before the changes that follow. */
  purge?(entries: PurgeEntry[]): void;
  /** Every change so far was sent. */
  upToDate?(cursor: string): void;
  /** The cursor can no longer resume: drop the local copy; a load from scratch follows. */
  resync?(): void;
  /** The stream stopped for good (`revoked`: the user revoked the app; otherwise an error that retrying cannot fix). */
  stopped?(reason: 'closed' | 'revoked' | 'error', error?: CofferError): void;
  /** A failure the stream recovers from by reconnecting. */
  retrying?(error: unknown, delayMs: number): void;
  /** The status changed. */
  status?(status: StreamStatus): void;
}

/** Options of a change stream. */
export interface ChangeStreamOptions {
  /** The tables to follow (default: every table the token may read). Keep the same ones for one cursor. */
  tables?: readonly string[];
  /** Resume after this cursor (a feed cursor or an event id); without it the stream starts with a load. */
  since?: string;
  /** Reconnect when nothing (not even a heartbeat) arrived for this long. Default 45 s (three heartbeats). */
  stallTimeoutMs?: number;
}

const MIN_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 30_000;

/** A live change stream, reconnecting until closed. Made by `vault.changes()`. */
export class ChangeStream {
  /** Where the stream stands: resume from here (store it with a local copy). */
  cursor: string | undefined;
  /** Connections made so far (the first one included). */
  connections = 0;
  /** Resolves when the stream has stopped. */
  readonly done: Promise<void>;
  private readonly session: Session;
  private readonly handlers: ChangeStreamHandlers;
  private readonly tables: readonly string[] | undefined;
  private readonly stallTimeoutMs: number;
  private readonly controller = new AbortController();
  private connection: AbortController | undefined;
  private state: StreamStatus = 'connecting';

  /** Opens the stream at once; it reconnects until `close()`. */
  constructor(session: Session, options: ChangeStreamOptions, handlers: ChangeStreamHandlers) {
    this.session = session;
    this.handlers = handlers;
    this.tables = options.tables;
    this.cursor = options.since;
    this.stallTimeoutMs = options.stallTimeoutMs ?? 45_000;
    this.done = this.run();
  }

  /** The stream's status now. */
  get status(): StreamStatus {
    return this.state;
  }

  /** Stops the stream. */
  close(): void {
    this.controller.abort();
  }

  /** Drops the connection now and reconnects from the cursor (as after a network failure). */
  reconnect(): void {
    this.connection?.abort();
  }

  private setStatus(status: StreamStatus): void {
    if (this.state === status) return;
    this.state = status;
    this.handlers.status?.(status);
  }

  private url(): string {
    const params = new URLSearchParams();
    if (this.tables) params.set('tables', this.tables.join(','));
    if (this.cursor !== undefined) params.set('since', this.cursor);
    const query = params.toString();
    return `${this.session.server}/v1/changes/stream${query ? `?${query}` : ''}`;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const signal = this.controller.signal;
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  private async run(): Promise<void> {
    let failures = 0;
    const backoff = () => {
      const ceiling = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** failures++);
      return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    };
    const stop = (reason: 'closed' | 'revoked' | 'error', error?: CofferError) => {
      this.setStatus('closed');
      this.handlers.stopped?.(reason, error);
    };
    while (!this.controller.signal.aborted) {
      this.setStatus(this.connections === 0 ? 'connecting' : 'reconnecting');
      const connection = new AbortController();
      this.connection = connection;
      const onAbort = () => connection.abort();
      this.controller.signal.addEventListener('abort', onAbort, { once: true });
      let stall: ReturnType<typeof setTimeout> | undefined;
      const alive = () => {
        clearTimeout(stall);
        stall = setTimeout(() => connection.abort(), this.stallTimeoutMs);
      };
      // How the connection ended, when the server said.
      let ending: string | undefined;
      try {
        const tokensUsed = await this.session.tokens();
        this.connections++;
        alive();
        const response = await this.session.request('GET', this.url(), {
          headers: { accept: 'text/event-stream' },
          signal: connection.signal,
        });
        if (!response.ok) {
          const error = await errorFromResponse(response);
          if (error.status === 410) {
            // Too old a cursor: load again from scratch.
            this.cursor = undefined;
            this.handlers.resync?.();
            continue;
          }
          if (error.status === 429 || error.status >= 500) {
            const wait = Number(response.headers.get('retry-after')) * 1000 || backoff();
            this.handlers.retrying?.(error, wait);
            await this.sleep(wait);
            continue;
          }
          stop(error instanceof InvalidTokenError && error.reason === 'revoked' ? 'revoked' : 'error', error);
          return;
        }
        if (!response.body) throw new CofferError('the change stream has no body', response.status, 'no-body');
        this.setStatus(this.cursor === undefined ? 'loading' : 'live');
        for await (const event of readEvents(response.body, { comment: alive })) {
          alive();
          failures = 0;
          const id = event.lastEventId || this.cursor;
          switch (event.type) {
            case 'change': {
              const change = JSON.parse(event.data) as Change;
              this.cursor = event.lastEventId;
              this.handlers.change?.(change, event.lastEventId);
              break;
            }
            case 'purge':
              this.handlers.purge?.((JSON.parse(event.data) as { purge: PurgeEntry[] }).purge);
              break;
            case 'up-to-date':
              this.cursor = id;
              this.setStatus('live');
              this.handlers.upToDate?.(id ?? '');
              break;
            case 'resync-required':
              ending = event.type;
              this.cursor = undefined;
              this.handlers.resync?.();
              break;
            case 'grant-revoked': {
              const detail = JSON.parse(event.data) as { reason?: string; detail?: string };
              // No token of this sign-in works again: signed out.
              await this.session.forget();
              stop('revoked', new CofferError(detail.detail ?? 'the user revoked the app', 401, 'grant-revoked'));
              return;
            }
            case 'token-expired':
            case 'grant-changed':
            case 'reconnect':
            case 'server-error':
              ending = event.type;
              this.cursor = id;
              break;
            default:
            // An event this client does not know: ignored.
          }
        }
        if (ending === 'token-expired' || ending === 'grant-changed') {
          // A new token first: the old one is refused from now on.
          if (tokensUsed) await this.session.refresh(tokensUsed);
        } else if (ending === 'server-error' || ending === undefined) {
          const wait = backoff();
          this.handlers.retrying?.(new CofferError(`the change stream ended (${ending ?? 'no reason given'})`, 0, 'stream-ended'), wait);
          await this.sleep(wait);
        }
      } catch (error) {
        if (this.controller.signal.aborted) break;
        if (error instanceof NotSignedInError || error instanceof InvalidTokenError) {
          stop('error', error);
          return;
        }
        if (error instanceof CofferError && error.status >= 400 && error.status < 500 && error.status !== 408) {
          // A refresh refused (the grant was revoked): nothing to retry.
          stop(error.code === 'invalid_grant' ? 'revoked' : 'error', error);
          return;
        }
        // A dropped connection (or a stalled one): resume from the cursor.
        const wait = connection.signal.aborted ? 0 : backoff();
        this.handlers.retrying?.(error, wait);
        await this.sleep(wait);
      } finally {
        clearTimeout(stall);
        this.controller.signal.removeEventListener('abort', onAbort);
      }
    }
    stop('closed');
  }
}
