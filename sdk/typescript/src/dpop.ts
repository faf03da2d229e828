// DPoP (RFC 9449) proofs signed with a non-extractable ES256 key: a stolen
// access or refresh token is useless without the key, which never leaves
// WebCrypto.

import { base64url, base64urlText, randomToken, sha256 } from './encoding.js';

/** The public half of a P-256 key as a JWK (only the members a thumbprint uses). */
export interface EcPublicJwk {
  kty: 'EC';
  crv: 'P-256';
  x: string;
  y: string;
}

/**
 * A new ES256 key pair for DPoP. The private key is not extractable: it can
 * sign, but no script (this one included) can read it out, and it is stored
 * as a `CryptoKey` (IndexedDB keeps it as such).
 */
export function generateDpopKeyPair(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']);
}

/** Signs DPoP proofs with one key pair. */
export class DpopSigner {
  /** The key pair (its private key not extractable when made by `generateDpopKeyPair`). */
  readonly keyPair: CryptoKeyPair;
  /** The public key as a JWK. */
  readonly jwk: EcPublicJwk;
  /** The key's JWK SHA-256 thumbprint (RFC 7638), base64url: the token's `cnf.jkt`. */
  readonly thumbprint: string;

  private constructor(keyPair: CryptoKeyPair, jwk: EcPublicJwk, thumbprint: string) {
    this.keyPair = keyPair;
    this.jwk = jwk;
    this.thumbprint = thumbprint;
  }

  /** A signer for `keyPair` (an ECDSA P-256 pair). */
  static async create(keyPair: CryptoKeyPair): Promise<DpopSigner> {
    const exported = (await crypto.subtle.exportKey('jwk', keyPair.publicKey)) as JsonWebKey;
    if (exported.kty !== 'EC' || exported.crv !== 'P-256' || !exported.x || !exported.y) {
      throw new TypeError('a DPoP key must be an ECDSA P-256 key');
    }
    const jwk: EcPublicJwk = { kty: 'EC', crv: 'P-256', x: exported.x, y: exported.y };
    // RFC 7638: the required members in lexicographic order, no spaces.
    const thumbprint = await sha256(`{"crv":"P-256","kty":"EC","x":"${jwk.x}","y":"${jwk.y}"}`);
    return new DpopSigner(keyPair, jwk, thumbprint);
  }

  /**
   * A proof for one request: `method` and `url` (its query and fragment are
   * left out of `htu`), and `ath` when an access token goes with it.
   */
  async proof(method: string, url: string, accessToken?: string): Promise<string> {
    const target = new URL(url);
    const htu = `${target.origin}${target.pathname}`;
    const header = { typ: 'dpop+jwt', alg: 'ES256', jwk: this.jwk };
    const claims: Record<string, unknown> = {
      jti: randomToken(18),
      htm: method.toUpperCase(),
      htu,
      iat: Math.floor(Date.now() / 1000),
    };
    if (accessToken !== undefined) claims.ath = await sha256(accessToken);
    const input = `${base64urlText(JSON.stringify(header))}.${base64urlText(JSON.stringify(claims))}`;
    // WebCrypto's ECDSA signature is r || s, the form JWS uses for ES256.
    const signature = await crypto.subtle.sign(
      { name: 'ECDSA', hash: 'SHA-256' },
      this.keyPair.privateKey,
      new TextEncoder().encode(input),
    );
    return `${input}.${base64url(signature)}`;
  }
}
