// Sign-in for apps with no server of their own: the authorization code flow
// with PKCE S256 (and optionally PAR), the `state` and `iss` checks, refresh
// with rotation (each refresh token works once: the new one is kept at
// once), DPoP-bound tokens, and revocation on sign-out.

import { DpopSigner, generateDpopKeyPair } from './dpop.js';
import { NotSignedInError, OAuthError, errorFromResponse } from './errors.js';
import { pkcePair, randomToken } from './encoding.js';
import { memoryStore, webStorageStore, type VaultStore } from './storage.js';

/** How a client signs in and where it keeps what it holds. */
export interface AuthOptions {
  /** The Coffer server's public URL, e.g. `https://vault.example`. */
  server: string;
  /** The app's client id (from `coffer app register` or `/oauth/register`). */
  clientId: string;
  /** The registered redirect URI this page is served at (or listens on). */
  redirectUri: string;
  /** The scope `signIn()` asks for when given none, e.g. `contacts.people:read notes.notes:read+write`. */
  scope?: string;
  /**
   * Bind tokens to a non-extractable ES256 key (DPoP, RFC 9449), so a token
   * that leaks is useless elsewhere. Default `true`.
   */
  dpop?: boolean;
  /** Push the authorization request first (PAR, RFC 9126): the URL the user visits then holds only a reference. Default `false`. */
  par?: boolean;
  /** Where tokens and the DPoP key are kept. Default: in memory. */
  store?: VaultStore;
  /**
   * Where a sign-in in progress keeps its verifier and `state` across the
   * visit to the consent page. Default: `sessionStorage` in a browser,
   * else `store`.
   */
  pendingStore?: VaultStore;
  /** Sends the user to the authorization URL. Default: `location.assign(url)`. */
  navigate?: (url: string) => void | Promise<void>;
  /** The `fetch` to use. Default: the global one. */
  fetch?: typeof fetch;
}

/** One table permission of a grant, as RFC 9396 `authorization_details` gives it. */
export interface AuthorizationDetail {
  type: 'coffer_table';
  /** `schema.table`. */
  table: string;
  /** `read`, `create`, `update`, `delete`. */
  actions: string[];
  /** The columns, when not every column. */
  columns?: string[];
  /** `all`, or `own`: only rows this app created. */
  rows: 'all' | 'own';
}

/** The tokens of a signed-in user. */
export interface TokenSet {
  /** The access token (ten minutes). */
  accessToken: string;
  /** `DPoP` when bound to this client's key, else `Bearer`. */
  tokenType: 'DPoP' | 'Bearer';
  /** The refresh token: works once; each refresh gives a new one. */
  refreshToken?: string;
  /** When the access token expires (milliseconds since the epoch). */
  expiresAt: number;
  /** What the user allowed, in scope syntax (may be less than asked). */
  scope: string;
  /** The same as `scope`, one entry per table permission. */
  authorizationDetails: AuthorizationDetail[];
}

/** Options of one sign-in. */
export interface SignInOptions {
  /** The scope to ask for (default: the client's `scope`). */
  scope?: string;
  /** Push the request first (PAR); default: the client's `par`. */
  par?: boolean;
  /** Where to come back to after the redirect, kept for the app (`handleRedirect` returns it). */
  returnTo?: string;
}

/** What `handleRedirect` resolves to after a sign-in. */
export interface SignInResult {
  /** The new tokens. */
  tokens: TokenSet;
  /** The `returnTo` given to `signIn`. */
  returnTo: string | undefined;
}

/** The authorization server's metadata (RFC 8414), the members used here. */
interface Metadata {
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
  revocation_endpoint?: string;
  pushed_authorization_request_endpoint?: string;
}

/** A sign-in in progress. */
interface Pending {
  state: string;
  verifier: string;
  redirectUri: string;
  scope: string;
  returnTo?: string;
  createdAt: number;
}

/** The token endpoint's answer. */
interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in: number;
  refresh_token?: string;
  scope?: string;
  authorization_details?: AuthorizationDetail[];
}

/** A refresh this long before expiry avoids a refused request. */
const REFRESH_MARGIN_MS = 30_000;
/** A sign-in older than this is not completed. */
const PENDING_TTL_MS = 15 * 60_000;

/** Signs a user in and keeps their tokens current. Used through `Vault`. */
export class Session {
  /** The server's base URL, without a trailing slash. */
  readonly server: string;
  /** The app's client id. */
  readonly clientId: string;
  /** The redirect URI sign-ins come back to. */
  readonly redirectUri: string;
  /** The scope a sign-in asks for when given none. */
  readonly defaultScope: string;
  /** Whether tokens are bound to the DPoP key. */
  readonly dpop: boolean;
  /** Whether sign-ins push their request first (PAR). */
  readonly par: boolean;
  /** The `fetch` every request goes through. */
  readonly fetch: typeof fetch;
  private readonly store: VaultStore;
  private readonly pendingStore: VaultStore;
  private readonly navigate: (url: string) => void | Promise<void>;
  private metadataPromise: Promise<Metadata> | undefined;
  private signerPromise: Promise<DpopSigner> | undefined;
  private current: TokenSet | undefined;
  private loaded = false;
  private refreshing: Promise<TokenSet> | undefined;
  private readonly listeners = new Set<(tokens: TokenSet | undefined) => void>();

  /** A session with the options of `createVault`. */
  constructor(options: AuthOptions) {
    this.server = options.server.replace(/\/+$/, '');
    this.clientId = options.clientId;
    this.redirectUri = options.redirectUri;
    this.defaultScope = options.scope ?? '';
    this.dpop = options.dpop ?? true;
    this.par = options.par ?? false;
    this.fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.store = options.store ?? memoryStore();
    this.pendingStore =
      options.pendingStore ?? (typeof sessionStorage !== 'undefined' ? webStorageStore(sessionStorage) : this.store);
    this.navigate =
      options.navigate ??
      ((url) => {
        if (typeof location === 'undefined') throw new Error('no `location` here: pass `navigate` to open the URL');
        location.assign(url);
      });
  }

  private key(name: string): string {
    return `${this.clientId}:${name}`;
  }

  /** The server's metadata, fetched once. */
  metadata(): Promise<Metadata> {
    this.metadataPromise ??= (async () => {
      const response = await this.fetch(`${this.server}/.well-known/oauth-authorization-server`);
      if (!response.ok) throw await errorFromResponse(response);
      return (await response.json()) as Metadata;
    })();
    this.metadataPromise.catch(() => (this.metadataPromise = undefined));
    return this.metadataPromise;
  }

  /** The DPoP signer, with the key pair from the store (made and stored on first use). */
  signer(): Promise<DpopSigner> {
    this.signerPromise ??= (async () => {
      let pair = await this.store.get<CryptoKeyPair>(this.key('dpop-key'));
      if (!pair) {
        pair = await generateDpopKeyPair();
        await this.store.set(this.key('dpop-key'), pair);
      }
      return DpopSigner.create(pair);
    })();
    this.signerPromise.catch(() => (this.signerPromise = undefined));
    return this.signerPromise;
  }

  /** The stored tokens, or `undefined` when signed out. */
  async tokens(): Promise<TokenSet | undefined> {
    if (!this.loaded) {
      this.current = await this.store.get<TokenSet>(this.key('tokens'));
      this.loaded = true;
    }
    return this.current;
  }

  /** Calls `listener` whenever the tokens change (sign-in, refresh, sign-out); returns a function that stops it. */
  onChange(listener: (tokens: TokenSet | undefined) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private async save(tokens: TokenSet | undefined): Promise<void> {
    if (tokens) await this.store.set(this.key('tokens'), tokens);
    else await this.store.delete(this.key('tokens'));
    this.current = tokens;
    this.loaded = true;
    for (const listener of this.listeners) listener(tokens);
  }

  /**
   * Prepares a sign-in and returns the URL to send the user to (what
   * `signIn` opens). The verifier and `state` are kept in the pending store
   * until `handleRedirect`.
   */
  async authorizationUrl(options: SignInOptions = {}): Promise<string> {
    const meta = await this.metadata();
    const scope = options.scope ?? this.defaultScope;
    const { verifier, challenge } = await pkcePair();
    const state = randomToken(16);
    const pending: Pending = { state, verifier, redirectUri: this.redirectUri, scope, createdAt: Date.now() };
    if (options.returnTo !== undefined) pending.returnTo = options.returnTo;
    const params: Record<string, string> = {
      response_type: 'code',
      client_id: this.clientId,
      redirect_uri: this.redirectUri,
      state,
      code_challenge: challenge,
      code_challenge_method: 'S256',
    };
    if (scope) params.scope = scope;
    await this.pendingStore.set(this.key('pending'), pending);
    const authorize = new URL(meta.authorization_endpoint);
    if (options.par ?? this.par) {
      if (!meta.pushed_authorization_request_endpoint) throw new Error('the server does not take pushed authorization requests');
      const response = await this.fetch(meta.pushed_authorization_request_endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(params),
      });
      if (!response.ok) throw await errorFromResponse(response);
      const pushed = (await response.json()) as { request_uri: string };
      authorize.search = new URLSearchParams({ client_id: this.clientId, request_uri: pushed.request_uri }).toString();
    } else {
      authorize.search = new URLSearchParams(params).toString();
    }
    return authorize.toString();
  }

  /** Sends the user to Coffer to sign in and allow `scope`; `handleRedirect` completes it on return. */
  async signIn(options: SignInOptions = {}): Promise<void> {
    await this.navigate(await this.authorizationUrl(options));
  }

  /**
   * Completes a sign-in on the redirect URI's page: checks `state` (and
   * `iss`), exchanges the code with the PKCE verifier, and stores the
   * tokens. Resolves to `null` when `url` is not an answer to a sign-in of
   * this client (so it can be called on every page load).
   */
  async handleRedirect(url: string = typeof location === 'undefined' ? '' : location.href): Promise<SignInResult | null> {
    const answer = new URL(url);
    const params = answer.searchParams;
    const state = params.get('state');
    if (state === null || (!params.has('code') && !params.has('error'))) return null;
    const pending = await this.pendingStore.get<Pending>(this.key('pending'));
    if (!pending) return null;
    // An answer to a request this client did not make (or an old one):
    // refused, and the sign-in in progress stays as it is.
    if (pending.state !== state) {
      throw new OAuthError(400, 'invalid_state', 'the answer does not match the sign-in in progress');
    }
    await this.pendingStore.delete(this.key('pending'));
    if (Date.now() - pending.createdAt > PENDING_TTL_MS) {
      throw new OAuthError(400, 'expired_sign_in', 'the sign-in took too long; start it again');
    }
    const meta = await this.metadata();
    const iss = params.get('iss');
    if (iss !== null && iss !== meta.issuer) {
      throw new OAuthError(400, 'invalid_issuer', `the answer came from ${iss}, not ${meta.issuer}`);
    }
    const error = params.get('error');
    if (error !== null) throw new OAuthError(400, error, params.get('error_description') ?? undefined);
    const code = params.get('code') ?? '';
    const tokens = await this.tokenRequest({
      grant_type: 'authorization_code',
      code,
      redirect_uri: pending.redirectUri,
      client_id: this.clientId,
      code_verifier: pending.verifier,
    });
    await this.save(tokens);
    return { tokens, returnTo: pending.returnTo };
  }

  private async tokenRequest(form: Record<string, string>): Promise<TokenSet> {
    const meta = await this.metadata();
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
    if (this.dpop) headers.dpop = await (await this.signer()).proof('POST', meta.token_endpoint);
    const response = await this.fetch(meta.token_endpoint, {
      method: 'POST',
      headers,
      body: new URLSearchParams(form),
    });
    if (!response.ok) throw await errorFromResponse(response);
    const body = (await response.json()) as TokenResponse;
    const tokens: TokenSet = {
      accessToken: body.access_token,
      tokenType: body.token_type.toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer',
      expiresAt: Date.now() + body.expires_in * 1000,
      scope: body.scope ?? '',
      authorizationDetails: body.authorization_details ?? [],
    };
    if (body.refresh_token !== undefined) tokens.refreshToken = body.refresh_token;
    if (this.dpop && tokens.tokenType !== 'DPoP') {
      throw new OAuthError(400, 'dpop_not_bound', 'the server answered a Bearer token to a DPoP token request');
    }
    return tokens;
  }

  /**
   * Tokens good for a request now: the stored ones, refreshed first when the
   * access token expires within 30 seconds.
   */
  async fresh(): Promise<TokenSet> {
    const tokens = await this.tokens();
    if (!tokens) throw new NotSignedInError();
    if (tokens.expiresAt - Date.now() > REFRESH_MARGIN_MS || !tokens.refreshToken) return tokens;
    return this.refresh(tokens);
  }

  /**
   * Exchanges the refresh token for new tokens, once however many callers
   * ask at the same time (and once across tabs where the Web Locks API
   * exists): a refresh token works once, and presenting a used one revokes
   * the whole sign-in. `stale` is the token set the caller found wanting;
   * when the tokens changed since, the new ones are returned as they are.
   */
  refresh(stale?: TokenSet): Promise<TokenSet> {
    this.refreshing ??= this.withLock(async () => {
      // Another tab (sharing the store) may have refreshed already.
      const stored = await this.store.get<TokenSet>(this.key('tokens'));
      if (stored) this.current = stored;
      const tokens = this.current;
      if (!tokens) throw new NotSignedInError();
      if (stale && tokens.accessToken !== stale.accessToken) return tokens;
      if (!tokens.refreshToken) throw new NotSignedInError('the access token expired and there is no refresh token: sign in again');
      try {
        const next = await this.tokenRequest({
          grant_type: 'refresh_token',
          refresh_token: tokens.refreshToken,
          client_id: this.clientId,
        });
        // Rotation: the old refresh token is used up; keep the new one now.
        await this.save(next);
        return next;
      } catch (error) {
        if (error instanceof OAuthError && error.error === 'invalid_grant') await this.save(undefined);
        throw error;
      }
    }).finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async withLock<T>(work: () => Promise<T>): Promise<T> {
    const locks = (globalThis.navigator as Navigator | undefined)?.locks;
    if (!locks) return work();
    return locks.request(`coffer-sdk:refresh:${this.clientId}`, work) as Promise<T>;
  }

  /**
   * Sends a request with the access token (and a fresh DPoP proof), renewing
   * the token first when it is about to expire, and once more when the
   * server says it expired or the grant changed.
   */
  async request(method: string, url: string, init: RequestInit = {}): Promise<Response> {
    let tokens = await this.fresh();
    for (let attempt = 0; ; attempt++) {
      const headers = new Headers(init.headers);
      headers.set('authorization', `${tokens.tokenType} ${tokens.accessToken}`);
      if (tokens.tokenType === 'DPoP') {
        headers.set('dpop', await (await this.signer()).proof(method, url, tokens.accessToken));
      }
      const response = await this.fetch(url, { ...init, method, headers });
      if (response.status !== 401) return response;
      const reason = await response
        .clone()
        .json()
        .then((p: { reason?: string }) => p.reason)
        .catch(() => undefined);
      // Revoked (the user disconnected the app, or signed it out
      // elsewhere): no token of this sign-in works again, so it is
      // forgotten and the app is signed out.
      if (reason === 'revoked' || reason === 'unknown_grant') {
        await this.forget();
        return response;
      }
      if (attempt > 0 || !tokens.refreshToken) return response;
      if (reason !== 'expired' && reason !== 'grant_changed') return response;
      tokens = await this.refresh(tokens);
    }
  }

  /**
   * Signs out: revokes the refresh token and the access token at the server
   * (RFC 7009), then forgets them and the DPoP key. The local copy is
   * cleared even when the server cannot be reached; the error is thrown
   * afterwards.
   */
  async signOut(): Promise<void> {
    const tokens = await this.tokens();
    let failure: unknown;
    if (tokens) {
      try {
        const meta = await this.metadata();
        if (!meta.revocation_endpoint) throw new Error('the server names no revocation endpoint');
        const revoke = async (token: string, hint: string) => {
          const response = await this.fetch(meta.revocation_endpoint!, {
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
            body: new URLSearchParams({ token, token_type_hint: hint, client_id: this.clientId }),
          });
          if (!response.ok) throw await errorFromResponse(response);
        };
        if (tokens.refreshToken) await revoke(tokens.refreshToken, 'refresh_token');
        await revoke(tokens.accessToken, 'access_token');
      } catch (error) {
        failure = error;
      }
    }
    await this.forget();
    if (failure !== undefined) throw failure;
  }

  /**
   * Forgets the tokens and the DPoP key without asking the server (they no
   * longer work there): the app is signed out, and listeners are told.
   */
  async forget(): Promise<void> {
    await this.save(undefined);
    await this.store.delete(this.key('dpop-key'));
    this.signerPromise = undefined;
  }
}
