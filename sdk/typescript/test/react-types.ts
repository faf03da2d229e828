// Type checks of the React entry point, compiled with the tests (tsc fails
// when a hook's types are wrong); nothing here runs, so React need not be
// installed. Every `@ts-expect-error` must meet an error.

import type { useQuery as UseQuery, useVault as UseVault, QueryState } from '@coffer/sdk/react';
import type { Vault } from '@coffer/sdk';

import type { Tables } from './generated/schemas.js';

declare const useQuery: typeof UseQuery;
declare const useVault: typeof UseVault;

export function People(vault: Vault<Tables>): string[] {
  const { rows, loading, error, dropped } = useQuery(vault.table('contacts.people'), {
    where: { email: { not: { is: null } } },
    select: ['display_name', 'email'],
    order: 'display_name.desc',
  });
  const state: QueryState<{ id: string; display_name: string; email: string | null }> = { rows, loading, error, dropped };
  // @ts-expect-error a column not selected is not in the rows
  void rows?.[0]?.given_name;
  // @ts-expect-error no such column to order by
  useQuery(vault.table('contacts.people'), { order: 'phone_number' });
  const typed = useVault<Tables>();
  // @ts-expect-error no such table in the generated types
  typed.table('contacts.peoples');
  return (state.rows ?? []).map((p) => p.display_name);
}
