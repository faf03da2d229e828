// @coffer/sdk/react: the vault in React components. A separate entry point,
// so apps without React do not load it; React is an optional peer
// dependency.

import { createContext, createElement, useContext, useEffect, useState, type ReactNode } from 'react';

import type { TokenSet } from './auth.js';
import type { AnyTables, ColumnOf, ListQuery, Selected } from './query.js';
import { CofferError } from './errors.js';
import type { Table, TablesConstraint, Vault } from './client.js';

const VaultContext = createContext<Vault<any> | null>(null);

/** Props of `VaultProvider`. */
export interface VaultProviderProps {
  /** The client the components below use. */
  vault: Vault<any>;
  /** The components. */
  children?: ReactNode;
}

/** Makes `vault` the client of the components below (`useVault`, `useQuery`). */
export function VaultProvider({ vault, children }: VaultProviderProps) {
  return createElement(VaultContext.Provider, { value: vault }, children);
}

/** The client of the nearest `VaultProvider`; pass your `Tables` type to have it typed. */
export function useVault<S extends TablesConstraint<S> = AnyTables>(): Vault<S> {
  const vault = useContext(VaultContext);
  if (!vault) throw new Error('useVault() needs a <VaultProvider vault={…}> above this component');
  return vault as Vault<S>;
}

/** What `useSession` returns. */
export interface SessionState {
  /** The tokens held, `undefined` when signed out. */
  tokens: TokenSet | undefined;
  /** `false` until the stored tokens were read. */
  ready: boolean;
}

/** The signed-in state, kept current on sign-in, refresh and sign-out. */
export function useSession(): SessionState {
  const vault = useVault();
  const [state, setState] = useState<SessionState>({ tokens: undefined, ready: false });
  useEffect(() => {
    let live = true;
    const stop = vault.onAuthChange((tokens) => live && setState({ tokens, ready: true }));
    vault.tokens().then((tokens) => live && setState({ tokens, ready: true }));
    return () => {
      live = false;
      stop();
    };
  }, [vault]);
  return state;
}

/** What `useQuery` returns. */
export interface QueryState<R> {
  /** The rows; `undefined` until loaded. */
  rows: R[] | undefined;
  /** `true` until the first rows arrive. */
  loading: boolean;
  /** Why the live query stopped, if it did. */
  error: CofferError | undefined;
  /** `true` when the grant no longer covers the table. */
  dropped: boolean;
}

/**
 * A live query in a component: the rows of `table` matching `query`, kept
 * current as the vault changes. `table` is a `vault.table(name)` (typed by
 * your generated types) or a table name on the provider's client.
 */
export function useQuery<Row extends { id: string }, const C extends ColumnOf<Row> = ColumnOf<Row>>(
  table: Table<Row, any, any> | string,
  query: Omit<ListQuery<Row, C>, 'cursor'> = {},
  options: { enabled?: boolean } = {},
): QueryState<Selected<Row, C>> {
  const vault = useContext(VaultContext);
  const enabled = options.enabled ?? true;
  const name = typeof table === 'string' ? table : table.name;
  const key = JSON.stringify(query);
  const [state, setState] = useState<QueryState<Selected<Row, C>>>({
    rows: undefined,
    loading: true,
    error: undefined,
    dropped: false,
  });
  useEffect(() => {
    if (!enabled) return undefined;
    const source = typeof table === 'string' ? vault : null;
    if (typeof table === 'string' && !source) throw new Error('useQuery(name) needs a <VaultProvider> above this component');
    const subscribe = typeof table === 'string' ? source!.table(name) : table;
    setState((s) => ({ ...s, loading: s.rows === undefined, error: undefined }));
    return subscribe.subscribe(JSON.parse(key) as ListQuery<Row, C>, {
      next: (rows, info) => setState({ rows: rows as Selected<Row, C>[], loading: false, error: undefined, dropped: info.dropped }),
      error: (error) => setState((s) => ({ ...s, loading: false, error })),
    });
    // `table` objects are made anew on each render: the name stands for them.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [vault, name, key, enabled]);
  return state;
}
