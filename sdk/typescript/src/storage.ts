// Where a vault client keeps its tokens and its DPoP key: in memory (the
// default), in IndexedDB (kept across reloads; the key stays a
// non-extractable `CryptoKey`), or any store of the app's own.

/**
 * A small asynchronous key-value store. Values are structured-cloneable
 * (plain data, and `CryptoKeyPair` for the DPoP key).
 */
export interface VaultStore {
  /** The value under `key`, or `undefined`. */
  get<T>(key: string): Promise<T | undefined>;
  /** Stores `value` under `key`. */
  set(key: string, value: unknown): Promise<void>;
  /** Removes `key`. */
  delete(key: string): Promise<void>;
}

/** A store in memory: gone when the page or process goes (the safest default). */
export function memoryStore(): VaultStore {
  const values = new Map<string, unknown>();
  return {
    async get<T>(key: string) {
      return values.get(key) as T | undefined;
    },
    async set(key, value) {
      values.set(key, value);
    },
    async delete(key) {
      values.delete(key);
    },
  };
}

/**
 * A store in IndexedDB (database `name`, one object store): tokens and the
 * DPoP key survive reloads, and the key stays non-extractable. Browsers only.
 */
export function indexedDbStore(name = 'coffer-sdk'): VaultStore {
  const STORE = 'kv';
  let opened: Promise<IDBDatabase> | undefined;
  const db = (): Promise<IDBDatabase> => {
    opened ??= new Promise((resolve, reject) => {
      if (typeof indexedDB === 'undefined') {
        reject(new Error('IndexedDB is not available here; use memoryStore() or a store of your own'));
        return;
      }
      const request = indexedDB.open(name, 1);
      request.onupgradeneeded = () => request.result.createObjectStore(STORE);
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
    return opened;
  };
  const run = async <T>(mode: IDBTransactionMode, op: (store: IDBObjectStore) => IDBRequest): Promise<T> => {
    const database = await db();
    return new Promise<T>((resolve, reject) => {
      const tx = database.transaction(STORE, mode);
      const request = op(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(request.result as T);
      tx.onerror = () => reject(tx.error ?? request.error);
      tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
    });
  };
  return {
    get: <T>(key: string) => run<T | undefined>('readonly', (s) => s.get(key)),
    set: async (key, value) => {
      await run('readwrite', (s) => s.put(value, key));
    },
    delete: async (key) => {
      await run('readwrite', (s) => s.delete(key));
    },
  };
}

/**
 * A store over a Web Storage area (`sessionStorage` by default) for JSON
 * values: where a sign-in in progress keeps its PKCE verifier and `state`
 * while the browser visits the consent page. Not for the DPoP key.
 */
export function webStorageStore(storage: Storage = sessionStorage, prefix = 'coffer-sdk:'): VaultStore {
  return {
    async get<T>(key: string) {
      const text = storage.getItem(prefix + key);
      return text === null ? undefined : (JSON.parse(text) as T);
    },
    async set(key, value) {
      storage.setItem(prefix + key, JSON.stringify(value));
    },
    async delete(key) {
      storage.removeItem(prefix + key);
    },
  };
}
