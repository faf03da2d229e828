// Typed errors: the data API's problem documents (RFC 9457) and the OAuth
// endpoints' error answers (RFC 6749 §5.2), each as a class an app can test
// with `instanceof`.

/** An RFC 9457 problem document as the data API answers it. */
export interface Problem {
  /** `urn:coffer:problem:CODE`. */
  type: string;
  /** A short human title. */
  title: string;
  /** The HTTP status. */
  status: number;
  /** What went wrong, in plain words. */
  detail: string;
  /** Members that depend on the type (`required`, `current`, `reason`, `table`, …). */
  [member: string]: unknown;
}

/** The problem codes the data API answers with (the end of `type`). */
export type ProblemCode =
  | 'invalid-token'
  | 'missing-right'
  | 'table-not-found'
  | 'row-not-found'
  | 'unknown-column'
  | 'invalid-filter'
  | 'invalid-body'
  | 'invalid-row'
  | 'conflict'
  | 'id-in-use'
  | 'invalid-sql'
  | 'unreadable-request'
  | 'body-too-large'
  | 'query-limit'
  | 'too-many-requests'
  | 'query-timeout'
  | 'resync-required'
  | 'server-error'
  | 'no-such-route'
  | 'method-not-allowed'
  | (string & {});

/** Any error this SDK raises for an answer of the server. */
export class CofferError extends Error {
  /** The HTTP status (0 when the server was not reached). */
  readonly status: number;
  /** The problem code (`missing-right`, `conflict`, …) or the OAuth `error`. */
  readonly code: ProblemCode;
  /** The problem document as received, when there was one. */
  readonly problem: Problem | undefined;

  /** An error of an answer with `status`, `code` and its problem document. */
  constructor(message: string, status: number, code: ProblemCode, problem?: Problem) {
    super(message);
    this.name = 'CofferError';
    this.status = status;
    this.code = code;
    this.problem = problem;
  }
}

/**
 * 403: the grant does not include an action (or a column for it). `required`
 * is the missing right in scope syntax (`contacts.people:create`,
 * `contacts.people(email):update`): pass it to `vault.requestMore()` to ask
 * the user for just that.
 */
export class MissingRightError extends CofferError {
  /** The missing right as a scope token. */
  readonly required: string;

  /** The error of a `missing-right` problem. */
  constructor(problem: Problem) {
    super(problem.detail, 403, 'missing-right', problem);
    this.name = 'MissingRightError';
    this.required = String(problem.required ?? '');
  }
}

/**
 * 409: an `ifSeq` did not match. `current` is the row as it is now (as the
 * token may read it), or `null` when it was deleted.
 */
export class ConflictError<Row = Record<string, unknown>> extends CofferError {
  /** The row as it is now, `null` when it is gone. */
  readonly current: Row | null;

  /** The error of a `conflict` problem. */
  constructor(problem: Problem) {
    super(problem.detail, 409, 'conflict', problem);
    this.name = 'ConflictError';
    this.current = (problem.current ?? null) as Row | null;
  }
}

/**
 * 401: the token was refused and could not be renewed. `reason` says why
 * (`expired`, `revoked`, `grant_changed`, `dpop_required`,
 * `invalid_dpop_proof`, …); the app signs the user in again.
 */
export class InvalidTokenError extends CofferError {
  /** Why the token was refused. */
  readonly reason: string;

  /** The error of an `invalid-token` problem. */
  constructor(problem: Problem) {
    super(problem.detail, 401, 'invalid-token', problem);
    this.name = 'InvalidTokenError';
    this.reason = String(problem.reason ?? 'invalid_token');
  }
}

/** An error answer of an OAuth endpoint (`access_denied`, `invalid_grant`, …). */
export class OAuthError extends CofferError {
  /** The OAuth `error` code. */
  readonly error: string;
  /** The server's `error_description`, when given. */
  readonly description: string | undefined;

  /** The error of an OAuth error answer. */
  constructor(status: number, error: string, description?: string) {
    super(description ? `${error}: ${description}` : error, status, error);
    this.name = 'OAuthError';
    this.error = error;
    this.description = description;
  }
}

/** Not signed in: no tokens are stored (or they were revoked). */
export class NotSignedInError extends CofferError {
  /** The error of a request made while signed out. */
  constructor(message = 'not signed in: call signIn() first') {
    super(message, 401, 'not-signed-in');
    this.name = 'NotSignedInError';
  }
}

/** The typed error for a problem document. */
export function problemError(problem: Problem): CofferError {
  const code = problem.type.startsWith('urn:coffer:problem:')
    ? problem.type.slice('urn:coffer:problem:'.length)
    : problem.type;
  switch (code) {
    case 'missing-right':
      return new MissingRightError(problem);
    case 'conflict':
      return new ConflictError(problem);
    case 'invalid-token':
      return new InvalidTokenError(problem);
    default:
      return new CofferError(problem.detail || problem.title, problem.status, code, problem);
  }
}

/** The typed error for a failed answer (problem JSON, or anything else). */
export async function errorFromResponse(response: Response): Promise<CofferError> {
  const text = await response.text().catch(() => '');
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  if (isProblem(body)) return problemError(body);
  if (body && typeof body === 'object' && typeof (body as { error?: unknown }).error === 'string') {
    const { error, error_description: description } = body as { error: string; error_description?: string };
    return new OAuthError(response.status, error, description);
  }
  return new CofferError(
    `the server answered ${response.status}${text ? `: ${text.slice(0, 200)}` : ''}`,
    response.status,
    `http-${response.status}`,
  );
}

function isProblem(body: unknown): body is Problem {
  return (
    !!body &&
    typeof body === 'object' &&
    typeof (body as Problem).type === 'string' &&
    typeof (body as Problem).status === 'number'
  );
}
