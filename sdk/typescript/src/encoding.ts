// Base64url, random strings and SHA-256 over WebCrypto (browsers and
// Node 20 alike).

/** `bytes` as base64url without padding (RFC 4648 §5). */
export function base64url(bytes: Uint8Array | ArrayBuffer): string {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let binary = '';
  for (let i = 0; i < view.length; i += 0x8000) {
    binary += String.fromCharCode(...view.subarray(i, i + 0x8000));
  }
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** `text` (UTF-8) as base64url without padding. */
export function base64urlText(text: string): string {
  return base64url(new TextEncoder().encode(text));
}

/** `size` random bytes from the platform's CSPRNG, as base64url. */
export function randomToken(size = 32): string {
  return base64url(crypto.getRandomValues(new Uint8Array(size)));
}

/** The SHA-256 of `text` (UTF-8), as base64url. */
export async function sha256(text: string): Promise<string> {
  return base64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
}

/** A PKCE pair (RFC 7636, S256): a 43-character verifier and its challenge. */
export async function pkcePair(): Promise<{ verifier: string; challenge: string }> {
  const verifier = randomToken(32);
  return { verifier, challenge: await sha256(verifier) };
}
