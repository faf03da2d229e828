// Sign-in against a real `coffer serve`: PKCE and the token exchange, the
// `state` check, PAR, DPoP-bound requests (and the same token refused
// without its proof), refresh with rotation, and sign-out revoking.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { InvalidTokenError, OAuthError, NotSignedInError, type TokenSet } from '@coffer/sdk';

import { REDIRECT, newUser, registerApp, signedIn, startCoffer, testVault, type Browser, type Coffer } from './coffer.js';

let coffer: Coffer;
let user: Browser;

before(async () => {
  coffer = await startCoffer();
  user = await newUser(coffer, 'ada@example.org');
});

after(async () => {
  await coffer?.stop();
});

/** A raw request to the data API with `authorization` (and `dpop`) as given. */
async function raw(path: string, headers: Record<string, string>): Promise<{ status: number; body: any }> {
  const response = await fetch(`${coffer.base}${path}`, { headers });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** A form POST to an OAuth endpoint. */
async function oauthPost(path: string, form: Record<string, string>): Promise<{ status: number; body: any }> {
  const response = await fetch(`${coffer.base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

test('sign-in with PKCE S256: the authorization URL, the consent, the code exchanged for DPoP-bound tokens', async () => {
  const clientId = registerApp(coffer, 'Sign-in');
  const { vault, opened } = testVault(coffer, clientId, { scope: 'contacts.people:read' });
  assert.equal(await vault.isSignedIn(), false);
  await assert.rejects(vault.table('contacts.people').list(), NotSignedInError);

  await vault.signIn({ returnTo: '/people' });
  assert.equal(opened.length, 1);
  const url = new URL(opened[0]!);
  assert.equal(url.pathname, '/oauth/authorize');
  assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
  assert.match(url.searchParams.get('code_challenge')!, /^[A-Za-z0-9_-]{43}$/);
  assert.match(url.searchParams.get('state')!, /^[A-Za-z0-9_-]{22}$/);
  assert.equal(url.searchParams.get('scope'), 'contacts.people:read');
  assert.equal(url.searchParams.get('redirect_uri'), REDIRECT);
  assert.equal(url.searchParams.get('code_verifier'), null, 'the verifier never leaves the client');

  const location = await user.consent(opened[0]!);
  // Not an answer to this sign-in: another state, or no code at all.
  const forged = new URL(location);
  forged.searchParams.set('state', 'forged');
  await assert.rejects(vault.handleRedirect(forged.toString()), (e: unknown) => e instanceof OAuthError && e.error === 'invalid_state');
  assert.equal(await vault.handleRedirect(`${REDIRECT}?foo=bar`), null);
  assert.equal(await vault.isSignedIn(), false);

  const result = await vault.handleRedirect(location);
  assert.ok(result);
  assert.equal(result.returnTo, '/people');
  assert.equal(result.tokens.tokenType, 'DPoP');
  assert.equal(result.tokens.scope, 'contacts.people:read');
  assert.deepEqual(result.tokens.authorizationDetails, [
    { type: 'coffer_table', table: 'contacts.people', actions: ['read'], rows: 'all' },
  ]);
  assert.ok(result.tokens.refreshToken);
  assert.ok(result.tokens.expiresAt > Date.now() + 60_000);
  // The same answer a second time: the sign-in is over.
  assert.equal(await vault.handleRedirect(location), null);
  assert.deepEqual((await vault.table('contacts.people').list()).rows, []);
});

test('a DPoP-bound token works with a proof of its key only: as Bearer, or with another key, it is refused', async () => {
  const { vault } = await signedIn(coffer, user, 'DPoP', 'contacts.people:read');
  const tokens = (await vault.tokens())!;
  assert.equal(tokens.tokenType, 'DPoP');
  const signer = await vault.session.signer();
  // The private key cannot be read out of WebCrypto.
  assert.equal(signer.keyPair.privateKey.extractable, false);
  await assert.rejects(crypto.subtle.exportKey('jwk', signer.keyPair.privateKey));

  const path = '/v1/tables/contacts.people/rows';
  const url = `${coffer.base}${path}`;
  const proof = await signer.proof('GET', url, tokens.accessToken);
  const good = await raw(path, { authorization: `DPoP ${tokens.accessToken}`, dpop: proof });
  assert.equal(good.status, 200, JSON.stringify(good.body));

  const replayed = await raw(path, { authorization: `DPoP ${tokens.accessToken}`, dpop: proof });
  assert.equal(replayed.status, 401);
  assert.equal(replayed.body.reason, 'invalid_dpop_proof');

  const bearer = await raw(path, { authorization: `Bearer ${tokens.accessToken}` });
  assert.equal(bearer.status, 401);
  assert.equal(bearer.body.reason, 'dpop_required');

  const noProof = await raw(path, { authorization: `DPoP ${tokens.accessToken}` });
  assert.equal(noProof.status, 401);
  assert.equal(noProof.body.reason, 'invalid_dpop_proof');

  // A stolen token with the thief's own key.
  const { vault: thief } = testVault(coffer, 'someone-else');
  const thiefProof = await (await thief.session.signer()).proof('GET', url, tokens.accessToken);
  const stolen = await raw(path, { authorization: `DPoP ${tokens.accessToken}`, dpop: thiefProof });
  assert.equal(stolen.status, 401);
  assert.equal(stolen.body.reason, 'invalid_dpop_proof');

  // Through the client, every request carries a fresh proof.
  for (let i = 0; i < 3; i++) assert.deepEqual((await vault.table('contacts.people').list()).rows, []);
});

test('without DPoP the client gets and sends a Bearer token', async () => {
  const { vault } = await signedIn(coffer, user, 'Bearer app', 'contacts.people:read', { dpop: false });
  const tokens = (await vault.tokens())!;
  assert.equal(tokens.tokenType, 'Bearer');
  const answer = await raw('/v1/tables/contacts.people/rows', { authorization: `Bearer ${tokens.accessToken}` });
  assert.equal(answer.status, 200);
  assert.deepEqual((await vault.table('contacts.people').list()).rows, []);
});

test('sign-in with a pushed authorization request (PAR): the URL holds only a reference', async () => {
  const { vault } = await signedIn(coffer, user, 'PAR app', 'notes.notes:read', { par: true });
  const tokens = (await vault.tokens())!;
  assert.equal(tokens.scope, 'notes.notes:read');
  assert.equal(tokens.tokenType, 'DPoP');
  const { vault: parVault, opened: parOpened } = testVault(coffer, registerApp(coffer, 'PAR check'), {
    scope: 'notes.notes:read',
    par: true,
  });
  await parVault.signIn();
  const url = new URL(parOpened[0]!);
  assert.match(url.searchParams.get('request_uri')!, /^urn:ietf:params:oauth:request_uri:/);
  assert.equal(url.searchParams.get('scope'), null);
  assert.equal(url.searchParams.get('code_challenge'), null);
});

test('refresh rotates: each refresh token works once, the client keeps the new one, concurrent callers share one refresh', async () => {
  let tokenRequests = 0;
  const counting: typeof fetch = (input, init) => {
    if (String(input).endsWith('/oauth/token')) tokenRequests++;
    return fetch(input, init);
  };
  const { vault, clientId } = await signedIn(coffer, user, 'Refresher', 'contacts.people:read', { fetch: counting });
  const first = (await vault.tokens())!;
  tokenRequests = 0;
  const [a, b, c] = await Promise.all([vault.session.refresh(first), vault.session.refresh(first), vault.session.refresh(first)]);
  assert.equal(tokenRequests, 1, 'one refresh for three callers');
  assert.equal(a, b);
  assert.equal(b, c);
  const second = (await vault.tokens())!;
  assert.notEqual(second.accessToken, first.accessToken);
  assert.notEqual(second.refreshToken, first.refreshToken);
  assert.equal(second.tokenType, 'DPoP');
  assert.deepEqual((await vault.table('contacts.people').list()).rows, []);

  // A caller holding the old tokens gets the new ones without another refresh.
  assert.equal((await vault.session.refresh(first)).accessToken, second.accessToken);
  assert.equal(tokenRequests, 1);

  // The used refresh token is refused (the server then revokes the whole sign-in).
  const reused = await oauthPost('/oauth/token', {
    grant_type: 'refresh_token',
    refresh_token: first.refreshToken!,
    client_id: clientId,
  });
  assert.equal(reused.status, 400);
  assert.equal(reused.body.error, 'invalid_grant');
  await assert.rejects(vault.session.refresh(), (e: unknown) => e instanceof OAuthError && e.error === 'invalid_grant');
  assert.equal(await vault.isSignedIn(), false, 'a refused refresh signs out');
});

test('an access token about to expire is refreshed before the request', async () => {
  const { vault } = await signedIn(coffer, user, 'Early refresher', 'contacts.people:read');
  const before = (await vault.tokens())!;
  // As if ten minutes had passed: the stored token expires in 10 s.
  const stale: TokenSet = { ...before, expiresAt: Date.now() + 10_000 };
  await (vault.session as unknown as { save(t: TokenSet): Promise<void> }).save(stale);
  assert.deepEqual((await vault.table('contacts.people').list()).rows, []);
  const after = (await vault.tokens())!;
  assert.notEqual(after.refreshToken, before.refreshToken);
  assert.ok(after.expiresAt > Date.now() + 60_000);
});

test('signOut revokes the refresh and the access token at the server, then forgets them', async () => {
  const { vault, clientId } = await signedIn(coffer, user, 'Leaver', 'contacts.people:read');
  const tokens = (await vault.tokens())!;
  const signer = await vault.session.signer();
  const changes: (TokenSet | undefined)[] = [];
  vault.onAuthChange((t) => changes.push(t));
  await vault.signOut();
  assert.equal(await vault.isSignedIn(), false);
  assert.deepEqual(changes, [undefined]);

  const path = '/v1/tables/contacts.people/rows';
  const proof = await signer.proof('GET', `${coffer.base}${path}`, tokens.accessToken);
  const refused = await raw(path, { authorization: `DPoP ${tokens.accessToken}`, dpop: proof });
  assert.equal(refused.status, 401);
  assert.equal(refused.body.reason, 'revoked');

  const refresh = await oauthPost('/oauth/token', {
    grant_type: 'refresh_token',
    refresh_token: tokens.refreshToken!,
    client_id: clientId,
  });
  assert.equal(refresh.status, 400);
  assert.equal(refresh.body.error, 'invalid_grant');
  await assert.rejects(vault.table('contacts.people').list(), NotSignedInError);
  // A new sign-in gets a new DPoP key.
  assert.notEqual((await vault.session.signer()).thumbprint, signer.thumbprint);
});

test('a refused token surfaces as InvalidTokenError with its reason', async () => {
  const { vault } = await signedIn(coffer, user, 'Revoked elsewhere', 'contacts.people:read', { dpop: false });
  const tokens = (await vault.tokens())!;
  const clientId = vault.session.clientId;
  // Revoked at the server behind the client's back, the refresh token too.
  await oauthPost('/oauth/revoke', { token: tokens.refreshToken!, client_id: clientId });
  await oauthPost('/oauth/revoke', { token: tokens.accessToken, client_id: clientId });
  await assert.rejects(vault.table('contacts.people').list(), (e: unknown) => e instanceof InvalidTokenError && e.reason === 'revoked');
  // No token of that sign-in works again: the app is signed out.
  assert.equal(await vault.isSignedIn(), false);
});
