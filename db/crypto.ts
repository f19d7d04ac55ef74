import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

const VERSION = 'v1';
const IV_BYTES = 12;

/** One derivation per key: webhook ingest decrypts a secret per delivery. */
const derivedKeys = new Map<string, Buffer>();

function deriveKey(secretKey: string): Buffer {
  if (!secretKey) throw new Error('secret key is empty');
  let key = derivedKeys.get(secretKey);
  if (!key) {
    key = createHash('sha256').update(secretKey, 'utf8').digest();
    // A process has one or two keys (rotation); tests make many.
    if (derivedKeys.size >= 16) derivedKeys.clear();
    derivedKeys.set(secretKey, key);
  }
  return key;
}

/** AES-256-GCM; output `v1:<iv b64>:<tag b64>:<ciphertext b64>`. */
export function encryptSecret(secretKey: string, plaintext: string): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', deriveKey(secretKey), iv);
  const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  const tag = cipher.getAuthTag();
  return [VERSION, iv.toString('base64'), tag.toString('base64'), ct.toString('base64')].join(':');
}

/** Throws when the value is malformed, was encrypted with another key, or was tampered with. */
export function decryptSecret(secretKey: string, ciphertext: string): string {
  const parts = ciphertext.split(':');
  if (parts.length !== 4 || parts[0] !== VERSION) throw new Error('unrecognised encrypted secret format');
  const [, ivB64, tagB64, ctB64] = parts as [string, string, string, string];
  const iv = Buffer.from(ivB64, 'base64');
  const tag = Buffer.from(tagB64, 'base64');
  if (iv.length !== IV_BYTES || tag.length !== 16) throw new Error('unrecognised encrypted secret format');
  const decipher = createDecipheriv('aes-256-gcm', deriveKey(secretKey), iv);
  decipher.setAuthTag(tag);
  return Buffer.concat([decipher.update(Buffer.from(ctB64, 'base64')), decipher.final()]).toString('utf8');
}
