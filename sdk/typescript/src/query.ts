// Queries over one table as typed objects: their encoding in the rows API's
// query string (`col=op.value`, `select`, `order`, `limit`, `cursor`), and
// the same query evaluated over a local copy for live queries, with the
// server's semantics (SQL nulls, typed comparisons, `like` patterns, nulls
// sorting as if larger than every value, `id` breaking ties).

/** The types of one table: its row, what an insert sends, what a patch sends. */
export interface TableTypes {
  row: { id: string };
  insert: object;
  patch: object;
}

/** Any row: the system columns and columns of unknown type. */
export interface AnyRow {
  id: string;
  _seq: number;
  _created_by: string;
  _updated_by: string;
  _created_at: string;
  _updated_at: string;
  [column: string]: unknown;
}

/**
 * The tables of a client that was given no generated types: any table name,
 * rows of unknown columns. `coffer codegen --lang ts` writes a `Tables`
 * interface to use instead.
 */
export type AnyTables = Record<string, { row: AnyRow; insert: Record<string, unknown>; patch: Record<string, unknown> }>;

/** A column name of a row type. */
export type ColumnOf<Row> = keyof Row & string;

/** A value a filter compares a column of type `V` with (a `Date` for a timestamp or date column). */
export type FilterValue<V> = Extract<NonNullable<V>, string | number | boolean> | (string extends NonNullable<V> ? Date : never);

/**
 * The operators of one column's filter; several in one object must all
 * hold (`{ gte: 1, lt: 4 }` is a range).
 */
export interface Operators<V> {
  /** Equal to. */
  eq?: FilterValue<V>;
  /** Not equal to (never matches null, as in SQL). */
  neq?: FilterValue<V>;
  /** Greater than. */
  gt?: FilterValue<V>;
  /** Greater than or equal to. */
  gte?: FilterValue<V>;
  /** Less than. */
  lt?: FilterValue<V>;
  /** Less than or equal to. */
  lte?: FilterValue<V>;
  /** A pattern: `*` or `%` matches any run of characters, `_` one character. */
  like?: string;
  /** `like`, ignoring case. */
  ilike?: string;
  /** One of these values. */
  in?: readonly FilterValue<V>[];
  /** `null`, `true` or `false`. */
  is?: null | boolean;
  /** The negation of exactly one operator: `{ not: { is: null } }`. */
  not?: Omit<Operators<V>, 'not'>;
}

/** A column's condition: a value (equal to it), `null` (is null), or operators. */
export type Condition<V> = FilterValue<V> | null | Operators<V>;

/** Conditions on columns, all of which must hold. */
export type Where<Row> = { [K in ColumnOf<Row>]?: Condition<Row[K]> };

type Direction = 'asc' | 'desc';
type Nulls = 'nullsfirst' | 'nullslast';
/** A sort key: `column`, `column.desc`, `column.asc.nullsfirst`, … */
export type OrderTerm<C extends string> = C | `${C}.${Direction}` | `${C}.${Nulls}` | `${C}.${Direction}.${Nulls}`;

/** A query of the rows of one table. `C` are the selected columns. */
export interface ListQuery<Row, C extends ColumnOf<Row> = ColumnOf<Row>> {
  /** Conditions on columns, all of which must hold. */
  where?: Where<Row>;
  /** Only these columns (`id` always comes too). */
  select?: readonly C[];
  /** Sort keys, first one first; `id` breaks ties. */
  order?: OrderTerm<ColumnOf<Row>> | readonly OrderTerm<ColumnOf<Row>>[];
  /** At most this many rows (1 to 1000; the server's default is 100). */
  limit?: number;
  /** The `nextCursor` of the previous page, with the same conditions and order. */
  cursor?: string;
}

/** A row with only the selected columns (and `id`). */
export type Selected<Row, C extends keyof Row> = Pick<Row, C | ('id' extends keyof Row ? 'id' : never)>;

/** The parameters the rows API reserves: no column filter may use these names. */
const RESERVED = new Set(['select', 'order', 'limit', 'cursor']);
const OPERATORS = ['eq', 'neq', 'gt', 'gte', 'lt', 'lte', 'like', 'ilike', 'in', 'is'] as const;
type Op = (typeof OPERATORS)[number];

/** One filter as the rows API takes it. */
interface Filter {
  column: string;
  negated: boolean;
  op: Op;
  value: unknown;
}

function isOperators(condition: unknown): condition is Record<string, unknown> {
  return typeof condition === 'object' && condition !== null && !(condition instanceof Date) && !Array.isArray(condition);
}

/** The filters of `where`, checked. */
function filters(where: Record<string, unknown> | undefined): Filter[] {
  const out: Filter[] = [];
  for (const [column, condition] of Object.entries(where ?? {})) {
    if (condition === undefined) continue;
    if (RESERVED.has(column)) throw new TypeError(`\`${column}\` is a parameter of the rows API, not a column to filter on`);
    if (condition === null) {
      out.push({ column, negated: false, op: 'is', value: null });
    } else if (!isOperators(condition)) {
      out.push({ column, negated: false, op: 'eq', value: condition });
    } else {
      for (const [key, value] of Object.entries(condition)) {
        if (value === undefined) continue;
        if (key === 'not') {
          const inner = Object.entries((value ?? {}) as Record<string, unknown>).filter(([, v]) => v !== undefined);
          const [first] = inner;
          if (inner.length !== 1 || !first || !(OPERATORS as readonly string[]).includes(first[0])) {
            throw new TypeError(`\`${column}\`: \`not\` takes exactly one operator`);
          }
          out.push({ column, negated: true, op: first[0] as Op, value: first[1] });
        } else if ((OPERATORS as readonly string[]).includes(key)) {
          out.push({ column, negated: false, op: key as Op, value });
        } else {
          throw new TypeError(`\`${column}\`: unknown operator \`${key}\``);
        }
      }
    }
  }
  return out;
}

/** A value in a filter's text form. */
function text(value: unknown): string {
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  throw new TypeError(`a filter compares with a string, number, boolean or Date, not ${JSON.stringify(value)}`);
}

function operand(filter: Filter): string {
  switch (filter.op) {
    case 'is':
      if (filter.value !== null && filter.value !== true && filter.value !== false) {
        throw new TypeError(`\`${filter.column}\`: \`is\` takes null, true or false`);
      }
      return String(filter.value);
    case 'in': {
      if (!Array.isArray(filter.value) || filter.value.length === 0) {
        throw new TypeError(`\`${filter.column}\`: \`in\` takes a non-empty list`);
      }
      // Every value quoted: a `,`, `)` or `"` inside stays part of it.
      const items = filter.value.map((v) => `"${text(v).replace(/[\\"]/g, (c) => `\\${c}`)}"`);
      return `(${items.join(',')})`;
    }
    default: {
      const value = text(filter.value);
      if (value === '' && filter.op !== 'like' && filter.op !== 'ilike') {
        throw new TypeError(`\`${filter.column}\`: the rows API cannot compare with an empty string; use sql()`);
      }
      return value;
    }
  }
}

function orderTerms(order: ListQuery<AnyRow>['order']): string[] {
  if (order === undefined) return [];
  return typeof order === 'string' ? [order] : [...(order as readonly string[])];
}

/** The query string of a listing, as `GET /v1/tables/{t}/rows` takes it. */
export function listParams(query: ListQuery<any, any> = {}): URLSearchParams {
  const params = new URLSearchParams();
  for (const filter of filters(query.where as Record<string, unknown> | undefined)) {
    params.append(filter.column, `${filter.negated ? 'not.' : ''}${filter.op}.${operand(filter)}`);
  }
  if (query.select?.length) params.set('select', [...query.select].join(','));
  const order = orderTerms(query.order);
  if (order.length) params.set('order', order.join(','));
  if (query.limit !== undefined) {
    if (!Number.isInteger(query.limit) || query.limit < 1 || query.limit > 1000) {
      throw new RangeError('limit: expected 1 to 1000');
    }
    params.set('limit', String(query.limit));
  }
  if (query.cursor !== undefined) params.set('cursor', query.cursor);
  return params;
}

// ---------------------------------------------------------------- local evaluation

const INSTANT = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2})?)(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?)?$/i;

/** An RFC 3339 timestamp or a date as microseconds since the epoch. */
function instant(value: string): number | undefined {
  const m = INSTANT.exec(value);
  if (!m) return undefined;
  const [, date, time = '00:00:00', fraction = '', zone = 'Z'] = m;
  const base = Date.parse(`${date}T${time.length === 5 ? `${time}:00` : time}${zone.toUpperCase()}`);
  if (Number.isNaN(base)) return undefined;
  return base * 1000 + Number(fraction.padEnd(6, '0').slice(0, 6) || '0');
}

/** Compares two non-null values the way the server's column types do. */
function compare(a: unknown, b: unknown): number {
  if (typeof a === 'number' || typeof b === 'number') {
    const x = Number(a);
    const y = Number(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (typeof a === 'boolean' || typeof b === 'boolean') {
    const x = a === true || a === 'true' ? 1 : 0;
    const y = b === true || b === 'true' ? 1 : 0;
    return x - y;
  }
  const x = a instanceof Date ? a.toISOString() : String(a);
  const y = b instanceof Date ? b.toISOString() : String(b);
  const ix = instant(x);
  const iy = instant(y);
  if (ix !== undefined && iy !== undefined) return ix - iy;
  return x < y ? -1 : x > y ? 1 : 0;
}

function likeRegExp(pattern: string, caseInsensitive: boolean): RegExp {
  let source = '';
  for (const c of pattern) {
    if (c === '*' || c === '%') source += '.*';
    else if (c === '_') source += '.';
    else source += c.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
  }
  return new RegExp(`^${source}$`, caseInsensitive ? 'sui' : 'su');
}

/** Whether one filter holds for `value`; `undefined` when unknown (SQL null). */
function holds(filter: Filter, value: unknown): boolean | undefined {
  if (filter.op === 'is') {
    return filter.value === null ? value === null || value === undefined : value === filter.value;
  }
  if (value === null || value === undefined) return undefined;
  switch (filter.op) {
    case 'eq':
      return compare(value, filter.value) === 0;
    case 'neq':
      return compare(value, filter.value) !== 0;
    case 'gt':
      return compare(value, filter.value) > 0;
    case 'gte':
      return compare(value, filter.value) >= 0;
    case 'lt':
      return compare(value, filter.value) < 0;
    case 'lte':
      return compare(value, filter.value) <= 0;
    case 'like':
    case 'ilike':
      return likeRegExp(String(filter.value), filter.op === 'ilike').test(String(value));
    case 'in':
      return (filter.value as unknown[]).some((v) => compare(value, v) === 0);
  }
}

/** The sort keys of `order`, with `id` appended to break ties. */
function sortKeys(order: ListQuery<AnyRow>['order']): { column: string; descending: boolean; nullsFirst: boolean }[] {
  const keys = orderTerms(order).map((term) => {
    const [column = '', ...modifiers] = term.split('.');
    const descending = modifiers.includes('desc');
    const nullsFirst = modifiers.includes('nullsfirst') ? true : modifiers.includes('nullslast') ? false : descending;
    return { column, descending, nullsFirst };
  });
  if (!keys.some((k) => k.column === 'id')) keys.push({ column: 'id', descending: false, nullsFirst: false });
  return keys;
}

/**
 * A function that evaluates `query` over rows held locally: the rows that
 * match, sorted, limited and projected as the rows API would answer (the
 * cursor is ignored: a live query shows its first page).
 */
export function compileQuery<Row extends { id: string }>(query: ListQuery<any, any> = {}): (rows: Iterable<Row>) => Row[] {
  const conditions = filters(query.where as Record<string, unknown> | undefined);
  // Checks the operands now, as the server would.
  conditions.forEach(operand);
  const keys = sortKeys(query.order);
  const select = query.select?.length ? new Set<string>(['id', ...query.select]) : undefined;
  const limit = query.limit ?? 100;
  return (rows) => {
    const matching: Row[] = [];
    for (const row of rows) {
      const record = row as unknown as Record<string, unknown>;
      if (conditions.every((f) => (f.negated ? holds(f, record[f.column]) === false : holds(f, record[f.column]) === true))) {
        matching.push(row);
      }
    }
    matching.sort((a, b) => {
      for (const key of keys) {
        const x = (a as unknown as Record<string, unknown>)[key.column];
        const y = (b as unknown as Record<string, unknown>)[key.column];
        const xNull = x === null || x === undefined;
        const yNull = y === null || y === undefined;
        if (xNull || yNull) {
          if (xNull && yNull) continue;
          return xNull === key.nullsFirst ? -1 : 1;
        }
        const c = compare(x, y);
        if (c !== 0) return key.descending ? -c : c;
      }
      return 0;
    });
    const page = matching.slice(0, limit);
    if (!select) return page;
    return page.map((row) => {
      const picked: Record<string, unknown> = {};
      for (const column of select) {
        if (column in row) picked[column] = (row as unknown as Record<string, unknown>)[column];
      }
      return picked as unknown as Row;
    });
  };
}
