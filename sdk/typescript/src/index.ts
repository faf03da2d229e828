// @coffer/sdk: a client for apps of a Coffer vault.

export { createVault, Vault, Table } from './client.js';
export type {
  BatchChange,
  LiveCallback,
  Page,
  RowConflict,
  SqlParam,
  SqlResult,
  TablesConstraint,
  VaultOptions,
  WriteOptions,
} from './client.js';
export { Session } from './auth.js';
export type { AuthOptions, AuthorizationDetail, SignInOptions, SignInResult, TokenSet } from './auth.js';
export { ChangeStream } from './changes.js';
export type { Change, ChangeStreamHandlers, ChangeStreamOptions, PurgeEntry, StreamStatus } from './changes.js';
export type { LiveCallbacks, LiveInfo } from './live.js';
export { compileQuery, listParams } from './query.js';
export type {
  AnyRow,
  AnyTables,
  ColumnOf,
  Condition,
  FilterValue,
  ListQuery,
  Operators,
  OrderTerm,
  Selected,
  TableTypes,
  Where,
} from './query.js';
export {
  CofferError,
  ConflictError,
  InvalidTokenError,
  MissingRightError,
  NotSignedInError,
  OAuthError,
  errorFromResponse,
  problemError,
} from './errors.js';
export type { Problem, ProblemCode } from './errors.js';
export { indexedDbStore, memoryStore, webStorageStore } from './storage.js';
export type { VaultStore } from './storage.js';
export { DpopSigner, generateDpopKeyPair } from './dpop.js';
export type { EcPublicJwk } from './dpop.js';
export { SseParser, readEvents } from './sse.js';
export type { SseEvent, SseHandlers } from './sse.js';
