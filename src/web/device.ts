/**
 * The page's device key: a non-extractable ECDSA P-256 key pair kept in
 * IndexedDB, one per origin, that proves the page to hosts with an
 * authorized-client list (docs/WEB.md, Device authentication).
 */
import { PunktfunkError } from '../errors.js'
import { PROTOCOL, toHex } from './wire.js'

const DB = 'punktfunk'
const STORE = 'device'
const KEY = 'key'
const ALGORITHM: EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' }

function request<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result)
    r.onerror = () => reject(r.error ?? new Error('IndexedDB request failed'))
  })
}

function openDb(): Promise<IDBDatabase> {
  const open = indexedDB.open(DB, 1)
  open.onupgradeneeded = () => {
    if (!open.result.objectStoreNames.contains(STORE)) open.result.createObjectStore(STORE)
  }
  return request(open)
}

function isKeyPair(v: unknown): v is CryptoKeyPair {
  const p = v as Partial<CryptoKeyPair> | undefined
  return p?.privateKey instanceof CryptoKey && p.publicKey instanceof CryptoKey
}

/**
 * The page's device key pair, created on first use and kept in IndexedDB
 * (database `punktfunk`, store `device`): ECDSA P-256, the private key
 * non-extractable. Every tab of one origin gets the same pair. Rejects with
 * `ERR_PF_INTERNAL` where IndexedDB or WebCrypto is unavailable (WebCrypto
 * needs a secure context: https, or http on localhost).
 */
export async function deviceKey(): Promise<CryptoKeyPair> {
  if (typeof indexedDB === 'undefined' || typeof crypto === 'undefined' || crypto.subtle === undefined) {
    throw new PunktfunkError('ERR_PF_INTERNAL', 'a device key needs IndexedDB and WebCrypto (a secure context: https, or http on localhost)')
  }
  const db = await openDb()
  try {
    const stored: unknown = await request(db.transaction(STORE).objectStore(STORE).get(KEY))
    if (isKeyPair(stored)) return stored
    const fresh = await crypto.subtle.generateKey(ALGORITHM, false, ['sign', 'verify'])
    // Another tab may have stored one meanwhile: keep whichever is there.
    const tx = db.transaction(STORE, 'readwrite')
    const store = tx.objectStore(STORE)
    const again: unknown = await request(store.get(KEY))
    if (isKeyPair(again)) return again
    store.put(fresh, KEY)
    await new Promise<void>((resolve, reject) => {
      tx.oncomplete = () => resolve()
      tx.onerror = () => reject(tx.error ?? new Error('IndexedDB transaction failed'))
      tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'))
    })
    return fresh
  } finally {
    db.close()
  }
}

/** The 65-byte uncompressed P-256 point of a key pair's public key. */
export async function rawPublicKey(key: CryptoKeyPair): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await crypto.subtle.exportKey('raw', key.publicKey))
}

/**
 * The device fingerprint hosts list (`--allow`, `authorizedClients`): SHA-256
 * of the 65-byte public key, 64 lower-case hex digits. Of `key`, by default
 * the page's own {@link deviceKey}.
 */
export async function deviceFingerprint(key?: CryptoKeyPair): Promise<string> {
  const raw = await rawPublicKey(key ?? (await deviceKey()))
  return toHex(new Uint8Array(await crypto.subtle.digest('SHA-256', raw)))
}

/**
 * Hello's signature: ECDSA P-256 / SHA-256 over `"punktfunk-web/1 device
 * proof" ‖ nonce ‖ certificate hash`, 64 bytes r‖s (WebCrypto's own format).
 */
export async function signProof(key: CryptoKeyPair, nonce: Uint8Array, certHash: Uint8Array): Promise<Uint8Array> {
  const label = new TextEncoder().encode(`${PROTOCOL} device proof`)
  const msg = new Uint8Array(label.length + nonce.length + certHash.length)
  msg.set(label, 0)
  msg.set(nonce, label.length)
  msg.set(certHash, label.length + nonce.length)
  return new Uint8Array(await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, key.privateKey, msg))
}
