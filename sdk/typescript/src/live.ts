// Live queries: a local copy of each table that a subscription reads, kept
// current by one change stream for all of them, with the purge
// instructions of a narrowed grant applied to it. Each subscription's query
// is evaluated over the copy and its callback called whenever its answer
// changes, once the stream is up to date.

import type { Session } from './auth.js';
import { ChangeStream, type Change, type PurgeEntry, type StreamStatus } from './changes.js';
import { CofferError } from './errors.js';
import { compileQuery, type AnyRow, type ListQuery } from './query.js';

/** What a live query's callback receives besides its rows. */
export interface LiveInfo {
  /** `schema.table`. */
  table: string;
  /** `true` when the grant no longer covers the table: the rows are gone and no more come. */
  dropped: boolean;
}

/** A live query's callbacks. */
export interface LiveCallbacks<R> {
  /** The query's rows, every time they change (first once the load is complete). */
  next(rows: R[], info: LiveInfo): void;
  /** The stream stopped for good (revoked, or an error that retrying cannot fix). */
  error?(error: CofferError): void;
}

interface Subscription {
  table: string;
  evaluate: (rows: Iterable<AnyRow>) => AnyRow[];
  callbacks: LiveCallbacks<AnyRow>;
  /** The ids and seqs of the rows last delivered, to skip repeats. */
  last: string | undefined;
}

/** How long the stream stays open after the last subscription goes (a remount picks it up again). */
const LINGER_MS = 1000;

/** The local copies and the stream that feeds them. One per `Vault`. */
export class LiveStore {
  private readonly session: Session;
  private readonly subscriptions = new Set<Subscription>();
  private readonly copies = new Map<string, Map<string, AnyRow>>();
  /** Tables the grant no longer covers. */
  private readonly dropped = new Set<string>();
  private stream: ChangeStream | undefined;
  private followed: string[] = [];
  private ready = false;
  private dirty = new Set<string>();
  private restartQueued = false;
  private linger: ReturnType<typeof setTimeout> | undefined;
  private readonly statusListeners = new Set<(status: StreamStatus) => void>();
  private lastError: CofferError | undefined;

  /** The live queries of `session`. */
  constructor(session: Session) {
    this.session = session;
    // A table dropped by a narrowed grant comes back when a new sign-in
    // (`requestMore`) allows reading it again.
    session.onChange((tokens) => {
      let regranted = false;
      for (const detail of tokens?.authorizationDetails ?? []) {
        if (detail.actions.includes('read') && this.dropped.delete(detail.table)) regranted = true;
      }
      if (regranted && this.subscriptions.size > 0) this.queueRestart();
    });
  }

  /** The stream's status (`closed` when no live query is open). */
  get status(): StreamStatus {
    return this.stream?.status ?? 'closed';
  }

  /** The stream under the live queries, while one is open (for its cursor and reconnects). */
  get changeStream(): ChangeStream | undefined {
    return this.stream;
  }

  /** Calls `listener` when the stream's status changes; returns a function that stops it. */
  onStatus(listener: (status: StreamStatus) => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  /** Starts a live query; returns a function that ends it. */
  subscribe(table: string, query: ListQuery<any, any>, callbacks: LiveCallbacks<AnyRow>): () => void {
    const subscription: Subscription = { table, evaluate: compileQuery(query), callbacks, last: undefined };
    this.subscriptions.add(subscription);
    clearTimeout(this.linger);
    if (this.dropped.has(table)) {
      queueMicrotask(() => callbacks.next([], { table, dropped: true }));
    } else if (!this.followed.includes(table) || !this.stream) {
      this.queueRestart();
    } else if (this.ready) {
      queueMicrotask(() => this.deliver(subscription));
    }
    return () => {
      if (!this.subscriptions.delete(subscription)) return;
      if (this.subscriptions.size === 0) {
        this.linger = setTimeout(() => {
          if (this.subscriptions.size === 0) this.stop();
        }, LINGER_MS);
      }
    };
  }

  /** Closes the stream and forgets the copies (on sign-out). */
  stop(): void {
    this.stream?.close();
    this.stream = undefined;
    this.followed = [];
    this.copies.clear();
    this.ready = false;
  }

  private queueRestart(): void {
    if (this.restartQueued) return;
    this.restartQueued = true;
    // Subscriptions made together (one render) share one restart.
    setTimeout(() => {
      this.restartQueued = false;
      this.restart();
    }, 0);
  }

  /** A new stream for the tables the subscriptions read, from a load: a cursor belongs to one set of tables. */
  private restart(): void {
    const tables = [...new Set([...this.subscriptions].map((s) => s.table))].filter((t) => !this.dropped.has(t)).sort();
    if (tables.length === 0) {
      this.stop();
      return;
    }
    if (this.stream && tables.join() === this.followed.join()) return;
    this.stream?.close();
    this.followed = tables;
    this.copies.clear();
    for (const table of tables) this.copies.set(table, new Map());
    this.ready = false;
    this.lastError = undefined;
    const stream: ChangeStream = new ChangeStream(
      this.session,
      { tables },
      {
        change: (change) => this.stream === stream && this.apply(change),
        purge: (entries) => this.stream === stream && this.purge(entries),
        upToDate: () => {
          if (this.stream !== stream) return;
          this.ready = true;
          this.flush();
        },
        resync: () => {
          if (this.stream !== stream) return;
          for (const copy of this.copies.values()) copy.clear();
          for (const table of this.copies.keys()) this.dirty.add(table);
          this.ready = false;
        },
        stopped: (reason, error) => {
          if (this.stream !== stream || reason === 'closed') return;
          const gone = error?.code === 'table-not-found' ? String(error.problem?.table ?? '') : '';
          if (gone && this.followed.includes(gone) && stream.cursor !== undefined) {
            // A table the grant no longer names (its purge was missed):
            // dropped, and the others followed from a new load.
            this.purge([{ table: gone, drop: 'table' }]);
            this.stream = undefined;
            return;
          }
          this.lastError = error ?? new CofferError('the change stream stopped', 0, reason);
          for (const s of this.subscriptions) s.callbacks.error?.(this.lastError);
        },
        status: (status) => {
          for (const listener of this.statusListeners) listener(status);
        },
      },
    );
    this.stream = stream;
  }

  private apply(change: Change): void {
    const copy = this.copies.get(change.table);
    if (!copy) return;
    if (change.op === 'delete' || change.row === null) copy.delete(change.id);
    else copy.set(change.id, change.row as AnyRow);
    this.dirty.add(change.table);
    // Changes that arrive one by one once live are shown at once; a load
    // or a burst is shown when the stream says it is up to date.
  }

  private purge(entries: PurgeEntry[]): void {
    let tableGone = false;
    for (const entry of entries) {
      const copy = this.copies.get(entry.table);
      if (!copy) continue;
      this.dirty.add(entry.table);
      switch (entry.drop) {
        case 'table':
          copy.clear();
          this.copies.delete(entry.table);
          this.dropped.add(entry.table);
          tableGone = true;
          break;
        case 'columns':
          for (const [id, row] of copy) {
            const kept = { ...row };
            for (const column of entry.columns) delete kept[column];
            copy.set(id, kept);
          }
          break;
        case 'rows':
          for (const [id, row] of copy) {
            if (row._created_by !== this.session.clientId) copy.delete(id);
          }
          break;
      }
    }
    for (const s of this.subscriptions) {
      if (this.dropped.has(s.table) && s.last !== 'dropped') {
        s.last = 'dropped';
        s.callbacks.next([], { table: s.table, dropped: true });
      }
    }
    // The stream names the dropped table, which it may no longer ask for:
    // follow the others from a new load.
    if (tableGone) this.queueRestart();
  }

  private flush(): void {
    const tables = this.dirty;
    this.dirty = new Set();
    for (const s of this.subscriptions) {
      if (tables.has(s.table) || s.last === undefined) this.deliver(s);
    }
  }

  private deliver(s: Subscription): void {
    const copy = this.copies.get(s.table);
    if (!copy || !this.ready || !this.subscriptions.has(s)) return;
    const rows = s.evaluate(copy.values());
    const signature = JSON.stringify(rows);
    if (signature === s.last) return;
    s.last = signature;
    s.callbacks.next(rows, { table: s.table, dropped: false });
  }
}
