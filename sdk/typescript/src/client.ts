// The client an app holds: sign-in, typed tables (rows API), SQL, the
// change stream and live queries, all through one signed-in session.

import { Session, type AuthOptions, type SignInOptions, type SignInResult, type TokenSet } from './auth.js';
import { ChangeStream, type ChangeStreamHandlers, type ChangeStreamOptions, type StreamStatus } from './changes.js';
import { type ConflictError, errorFromResponse } from './errors.js';
import { LiveStore, type LiveCallbacks, type LiveInfo } from './live.js';
import { listParams, type AnyTables, type ColumnOf, type ListQuery, type Selected, type TableTypes } from './query.js';

/** Options of a vault client: see `AuthOptions`. */
export type VaultOptions = AuthOptions;

/** The tables a client is generic over: `Tables` from `coffer codegen --lang ts`, or `AnyTables`. */
export type TablesConstraint<S> = { [K in keyof S]: TableTypes };

/** One page of a listing. */
export interface Page<R> {
  /** The rows of this page. */
  rows: R[];
  /** Pass as `cursor` for the next page; `null` on the last page. */
  nextCursor: string | null;
}

/** Options of a conditional write. */
export interface WriteOptions {
  /**
   * Write only if the row's `_seq` is still this (optimistic concurrency);
   * otherwise the write is refused with a `ConflictError` holding the row as
   * it is now.
   */
  ifSeq?: number;
}

/** One change of a batch update. */
export interface BatchChange<Patch> {
  /** The row's id. */
  id: string;
  /** The columns to set (`null` clears a column that may be null). */
  set: Patch;
  /** Apply only if the row's `_seq` is still this. */
  ifSeq?: number;
}

/** A parameter of a SQL statement (`$1`, `$2`, …). */
export type SqlParam = string | number | boolean | null | SqlParam[] | { [key: string]: SqlParam };

/** The answer to a SQL statement. */
export interface SqlResult<Row extends unknown[] = unknown[]> {
  /** The columns, in order (two may share a name in a join). */
  columns: { name: string; type: string }[];
  /** The rows, each an array in column order. A write answers one column `count`. */
  rows: Row[];
  /** How many rows. */
  rowCount: number;
}

/** A live query's callback. */
export type LiveCallback<R> = (rows: R[], info: LiveInfo) => void;

/**
 * A client of one user's vault, generic over the tables' types.
 *
 * ```ts
 * import type { Tables } from './coffer-schemas.js'; // coffer codegen --lang ts
 * const vault = createVault<Tables>({ server, clientId, redirectUri, scope: 'contacts.people:read' });
 * ```
 */
export class Vault<S extends TablesConstraint<S> = AnyTables> {
  /** The sign-in session (tokens, refresh, DPoP). */
  readonly session: Session;
  private readonly live: LiveStore;

  /** A client with `options` (see `createVault`). */
  constructor(options: VaultOptions) {
    this.session = new Session(options);
    this.live = new LiveStore(this.session);
  }

  /** The server's base URL. */
  get server(): string {
    return this.session.server;
  }

  // ------------------------------------------------------------ sign-in

  /** Sends the user to Coffer to sign in and allow the scope. Complete it with `handleRedirect` on return. */
  signIn(options?: SignInOptions): Promise<void> {
    return this.session.signIn(options);
  }

  /** The URL `signIn` would open (the sign-in is prepared as by `signIn`). */
  authorizationUrl(options?: SignInOptions): Promise<string> {
    return this.session.authorizationUrl(options);
  }

  /**
   * Completes a sign-in on the redirect URI's page (checks `state` and `iss`,
   * exchanges the code). Resolves to `null` when the URL is no answer to a
   * sign-in of this client.
   */
  handleRedirect(url?: string): Promise<SignInResult | null> {
    return this.session.handleRedirect(url);
  }

  /**
   * Asks the user for more: a new authorization request for `scopes` (e.g.
   * a `MissingRightError`'s `required`). The consent page asks only for what
   * is new; the request also names what the tokens already hold, since the
   * server mints a token for the scope requested, so the new token keeps
   * every right the old one had.
   */
  async requestMore(scopes: string | readonly string[], options: Omit<SignInOptions, 'scope'> = {}): Promise<void> {
    const more = typeof scopes === 'string' ? scopes : scopes.join(' ');
    const held = (await this.session.tokens())?.scope ?? '';
    const scope = [...new Set(`${held} ${more}`.split(' ').filter(Boolean))].join(' ');
    return this.session.signIn({ ...options, scope });
  }

  /** Revokes the tokens at the server and forgets them, the DPoP key and the live copies. */
  async signOut(): Promise<void> {
    this.live.stop();
    await this.session.signOut();
  }

  /** The tokens held, or `undefined` when signed out. */
  tokens(): Promise<TokenSet | undefined> {
    return this.session.tokens();
  }

  /** Whether tokens are held. */
  async isSignedIn(): Promise<boolean> {
    return (await this.session.tokens()) !== undefined;
  }

  /** Calls `listener` on sign-in, refresh and sign-out; returns a function that stops it. */
  onAuthChange(listener: (tokens: TokenSet | undefined) => void): () => void {
    return this.session.onChange(listener);
  }

  // ------------------------------------------------------------ data

  /** A request to the data API with the token; the parsed JSON answer, or a typed error. */
  async call<T>(method: string, path: string, body?: unknown, query?: URLSearchParams): Promise<T> {
    const search = query?.toString();
    const url = `${this.server}${path}${search ? `?${search}` : ''}`;
    const init: RequestInit = {};
    if (body !== undefined) {
      init.headers = { 'content-type': 'application/json' };
      init.body = JSON.stringify(body);
    }
    const response = await this.session.request(method, url, init);
    if (!response.ok) throw await errorFromResponse(response);
    if (response.status === 204) return undefined as T;
    return (await response.json()) as T;
  }

  /** The rows API of one table, typed by the generated types. */
  table<T extends keyof S & string>(name: T): Table<S[T]['row'], S[T]['insert'], S[T]['patch']> {
    return new Table(this, name);
  }

  /**
   * Runs one SQL statement on `POST /v1/sql`, parameters bound to `$1`,
   * `$2`, … (never spliced into the text).
   */
  async sql<Row extends unknown[] = unknown[]>(text: string, params: readonly SqlParam[] = []): Promise<SqlResult<Row>> {
    const answer = await this.call<{ columns: SqlResult['columns']; rows: Row[]; row_count: number }>('POST', '/v1/sql', {
      sql: text,
      params,
    });
    return { columns: answer.columns, rows: answer.rows, rowCount: answer.row_count };
  }

  /** Follows the change stream directly (most apps use `subscribe`). Close it with `close()`. */
  changes(options: ChangeStreamOptions, handlers: ChangeStreamHandlers): ChangeStream {
    return new ChangeStream(this.session, options, handlers);
  }

  /**
   * A live query: `callback` receives the query's rows once they are
   * loaded, and again whenever a change (of this app or any other) alters
   * them. Returns a function that ends it.
   */
  subscribe<T extends keyof S & string, const C extends ColumnOf<S[T]['row']> = ColumnOf<S[T]['row']>>(
    table: T,
    query: Omit<ListQuery<S[T]['row'], C>, 'cursor'>,
    callback: LiveCallback<Selected<S[T]['row'], C>> | LiveCallbacks<Selected<S[T]['row'], C>>,
  ): () => void {
    const callbacks = typeof callback === 'function' ? { next: callback } : callback;
    return this.live.subscribe(table, query, callbacks as unknown as LiveCallbacks<any>);
  }

  /** The live queries' stream status. */
  get liveStatus(): StreamStatus {
    return this.live.status;
  }

  /** The change stream under the live queries, while one is open. */
  get liveStream(): ChangeStream | undefined {
    return this.live.changeStream;
  }
}

/** The rows of one table. Made by `vault.table(name)`. */
export class Table<Row extends { id: string }, Insert, Patch> {
  /** `schema.table`. */
  readonly name: string;
  private readonly vault: Vault<any>;

  /** The rows of `name` through `vault` (use `vault.table(name)`). */
  constructor(vault: Vault<any>, name: string) {
    this.vault = vault;
    this.name = name;
  }

  private path(id?: string): string {
    const base = `/v1/tables/${encodeURIComponent(this.name)}/rows`;
    return id === undefined ? base : `${base}/${encodeURIComponent(id)}`;
  }

  /** One page of rows matching `query`. */
  async list<const C extends ColumnOf<Row> = ColumnOf<Row>>(query: ListQuery<Row, C> = {}): Promise<Page<Selected<Row, C>>> {
    const answer = await this.vault.call<{ rows: Selected<Row, C>[]; next_cursor: string | null }>(
      'GET',
      this.path(),
      undefined,
      listParams(query),
    );
    return { rows: answer.rows, nextCursor: answer.next_cursor };
  }

  /** Every row matching `query`, page after page (keyset pages: none repeats or is skipped). */
  async *iterate<const C extends ColumnOf<Row> = ColumnOf<Row>>(query: ListQuery<Row, C> = {}): AsyncGenerator<Selected<Row, C>> {
    let cursor = query.cursor;
    for (;;) {
      const page: Page<Selected<Row, C>> = await this.list<C>(cursor === undefined ? query : { ...query, cursor });
      yield* page.rows;
      if (page.nextCursor === null) return;
      cursor = page.nextCursor;
    }
  }

  /** Every row matching `query`, in one array. */
  async all<const C extends ColumnOf<Row> = ColumnOf<Row>>(query: ListQuery<Row, C> = {}): Promise<Selected<Row, C>[]> {
    const rows: Selected<Row, C>[] = [];
    for await (const row of this.iterate<C>(query)) rows.push(row);
    return rows;
  }

  /** One row by id (a `CofferError` with code `row-not-found` when there is none the token may read). */
  get(id: string): Promise<Row> {
    return this.vault.call<Row>('GET', this.path(id));
  }

  /** Inserts one row; the id is generated when left out. */
  insert(row: Insert): Promise<Row> {
    return this.vault.call<Row>('POST', this.path(), row);
  }

  /** Inserts rows atomically: all or none. */
  async insertMany(rows: readonly Insert[]): Promise<Row[]> {
    return (await this.vault.call<{ rows: Row[] }>('POST', this.path(), rows)).rows;
  }

  /** Changes some columns of a row; with `ifSeq`, only if nobody changed it since. */
  update(id: string, patch: Patch, options: WriteOptions = {}): Promise<Row> {
    return this.vault.call<Row>('PATCH', this.path(id), patch, seqParams(options));
  }

  /** Changes several rows atomically (every change applies or none); the rows after, in the order sent. */
  async updateMany(changes: readonly BatchChange<Patch>[]): Promise<Row[]> {
    const body = changes.map(({ id, set, ifSeq }) => (ifSeq === undefined ? { id, set } : { id, set, if_seq: ifSeq }));
    return (await this.vault.call<{ rows: Row[] }>('PATCH', this.path(), body)).rows;
  }

  /** Deletes a row; with `ifSeq`, only if nobody changed it since. */
  async delete(id: string, options: WriteOptions = {}): Promise<void> {
    await this.vault.call<void>('DELETE', this.path(id), undefined, seqParams(options));
  }

  /** A live query of this table: see `Vault.subscribe`. */
  subscribe<const C extends ColumnOf<Row> = ColumnOf<Row>>(
    query: Omit<ListQuery<Row, C>, 'cursor'>,
    callback: LiveCallback<Selected<Row, C>> | LiveCallbacks<Selected<Row, C>>,
  ): () => void {
    return (this.vault as Vault<AnyTables>).subscribe(this.name, query as any, callback as any);
  }
}

function seqParams(options: WriteOptions): URLSearchParams | undefined {
  return options.ifSeq === undefined ? undefined : new URLSearchParams({ if_seq: String(options.ifSeq) });
}

/** A conflict's row, typed: `ConflictError<Row>` as thrown by a table's writes. */
export type RowConflict<Row> = ConflictError<Row>;

/** A vault client generic over the generated `Tables` type. */
export function createVault<S extends TablesConstraint<S> = AnyTables>(options: VaultOptions): Vault<S> {
  return new Vault<S>(options);
}
