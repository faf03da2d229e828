// Uses the types `coffer codegen --lang ts` writes (`schemas.ts`), as an app
// and a client generic over `Tables` would. The HTTP-level test
// (vault-server/coffer/tests/http/codegen.rs) writes `schemas.ts` and
// `rows.ts` (rows the server answered, and the inserts that made them) next
// to this file and runs `tsc --noEmit --strict` on the three. Every
// `@ts-expect-error` must meet an error: a type that lets the wrong value
// through fails the check too.

import {
  COLUMNS,
  SCHEMA_VERSIONS,
  TABLES,
  type Columns,
  type ContactsPeople,
  type ContactsPeopleInsert,
  type ContactsPeoplePatch,
  type JsonValue,
  type TableName,
  type Tables,
  type TasksItems,
  type TasksItemsInsert,
  type TasksItemsPatch,
} from "./schemas";
import { inserts, rows } from "./rows";

/** A client generic over `Tables`, typed as an SDK would type one. */
interface Client {
  get<T extends TableName>(table: T, id: string): Promise<Tables[T]["row"]>;
  insert<T extends TableName>(table: T, row: Tables[T]["insert"]): Promise<Tables[T]["row"]>;
  update<T extends TableName>(table: T, id: string, patch: Tables[T]["patch"]): Promise<Tables[T]["row"]>;
  select<T extends TableName, C extends Columns<T>>(
    table: T,
    columns: readonly C[],
  ): Promise<Pick<Tables[T]["row"], C>[]>;
}

declare const client: Client;

/** `true` when `A` and `B` are the same type. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

export async function rowsAsTheServerAnswersThem(): Promise<void> {
  // Rows the server answered (rows.ts), with every column set and with
  // only the required ones (the others null).
  const ada: ContactsPeople = rows["contacts.people"][0];
  const name: string = ada.display_name;
  const email: string | null = ada.email;
  const birthday: string | null = ada.birthday;
  const emails: JsonValue = ada.emails;
  const seq: number = ada._seq;
  const createdBy: string = ada._created_by;
  const createdAt: string = ada._created_at;
  // @ts-expect-error a column that may be null is not always a string
  const notNull: string = ada.email;
  // @ts-expect-error rows have no such column
  ada.e_mail;

  const task: TasksItems = rows["tasks.items"][1];
  const done: boolean = task.completed;
  const priority: number | null = task.priority;
  const tags: JsonValue = task.tags;
  // @ts-expect-error an integer column is a number, not a string
  const priorityText: string | null = task.priority;

  const embedding: number[] | null = rows["notes.notes"][0].embedding;
  const photo: string = rows["journal.photos"][0].image;
  const sampleId: string | null = rows["health.measurements"][0].sample_id;
  const value: number = rows["health.measurements"][0].value;

  const firstInsert: ContactsPeopleInsert = inserts["contacts.people"][0];
  void [name, email, birthday, emails, seq, createdBy, createdAt, notNull, done, priority, tags, priorityText];
  void [embedding, photo, sampleId, value, firstInsert];
}

export async function writesThroughAGenericClient(): Promise<void> {
  const inserted = await client.insert(TABLES.ContactsPeople, { display_name: "Ada Lovelace" });
  const id: string = inserted.id;
  const withId: ContactsPeopleInsert = { id: "ada", display_name: "Ada", birthday: "1815-12-10", photo: null };
  // @ts-expect-error display_name may not be null, so an insert needs it
  await client.insert("contacts.people", { given_name: "Ada" });
  // @ts-expect-error display_name is text
  await client.insert("contacts.people", { display_name: 1 });
  // @ts-expect-error the system columns are the vault's to write
  await client.insert("contacts.people", { display_name: "Ada", _seq: 1 });
  // @ts-expect-error no table is called contacts.peoples
  await client.get("contacts.peoples", id);

  const item: TasksItemsInsert = { title: "Write the report", completed: false, tags: ["work", { due: 1 }] };
  // @ts-expect-error completed may not be null
  const noCompleted: TasksItemsInsert = { title: "Write the report" };
  const patch: TasksItemsPatch = { completed: true, notes: null };
  await client.update("tasks.items", "t1", patch);
  // @ts-expect-error completed may not be null, so a patch cannot clear it
  await client.update("tasks.items", "t1", { completed: null });
  const rename: ContactsPeoplePatch = { display_name: "Ada King" };
  // @ts-expect-error a patch cannot clear a column that may not be null
  const clear: ContactsPeoplePatch = { display_name: null };
  void [withId, item, noCompleted, rename, clear];
}

export async function columnsAndNames(): Promise<void> {
  const picked = await client.select("contacts.people", ["display_name", "birthday"] as const);
  const birthday: string | null = picked[0].birthday;
  // @ts-expect-error email was not selected
  picked[0].email;
  // @ts-expect-error contacts.people has no column nickname2
  await client.select("contacts.people", ["nickname2"] as const);

  const table: "tasks.items" = TABLES.TasksItems;
  const columns: readonly Columns<"tasks.items">[] = COLUMNS["tasks.items"];
  const first: "id" = COLUMNS["contacts.people"][0];
  const version: 1 = SCHEMA_VERSIONS.contacts;
  // `Columns<T>` (the row's keys) and `COLUMNS[T]` name the same columns.
  const sameColumns: Same<(typeof COLUMNS)["contacts.people"][number], Columns<"contacts.people">> = true;
  const sameItemColumns: Same<(typeof COLUMNS)["tasks.items"][number], Columns<"tasks.items">> = true;
  // @ts-expect-error (and `Same` tells different sets apart)
  const notSame: Same<(typeof COLUMNS)["tasks.items"][number], Columns<"tasks.lists">> = true;
  void [birthday, table, columns, first, version, sameColumns, sameItemColumns, notSame];
}
