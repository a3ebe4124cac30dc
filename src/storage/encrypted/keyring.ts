import { createHmac } from 'node:crypto';
import { PitrError } from '../../errors';

/** A key id: recorded in every sealed object's header (32 bytes at most). */
export const KEY_ID_PATTERN = /^[A-Za-z0-9._-]{1,32}$/;

/**
 * The encryption keys a command was given: `current` seals new objects, every key opens the objects
 * sealed with it (key rotation: a new current key, the older ones kept for reading).
 */
export interface Keyring {
  current: { id: string; key: Buffer };
  keys: ReadonlyMap<string, Buffer>;
}

/**
 * Keys as a key file or PITR_ENCRYPTION_KEY holds them: one per line (or separated by commas),
 * `KEYID:KEY` or a bare `KEY`, KEY being 32 bytes as 64 hex digits or base64; blank lines and lines
 * starting with '#' are ignored. The first key is the current one. A bare key's id is derived from it
 * (`k` + 12 hex digits of an HMAC of the key), so the same key always has the same id.
 * `origin` names where the text came from in messages; key material never appears in one.
 */
export function parseKeyring(text: string, origin: string): Keyring {
  const keys = new Map<string, Buffer>();
  let current: Keyring['current'] | undefined;
  const entries = text.split(/[\n,]/).map((line, i) => ({ line: line.trim(), number: i + 1 }));
  for (const { line, number } of entries) {
    if (line === '' || line.startsWith('#')) continue;
    const where = `${origin}, entry ${number}`;
    const colon = line.indexOf(':');
    const material = decodeKey(colon === -1 ? line : line.slice(colon + 1).trim(), where);
    const id = colon === -1 ? derivedKeyId(material) : line.slice(0, colon).trim();
    if (!KEY_ID_PATTERN.test(id))
      throw new PitrError(
        'Key',
        `${where}: invalid key id (1 to 32 letters, digits, '.', '_' or '-')`,
        'write each key as KEYID:KEY, e.g. k2026:<64 hex digits>',
      );
    const known = keys.get(id);
    if (known && !known.equals(material))
      throw new PitrError('Key', `${where}: key id "${id}" is given twice with different keys`, 'give every key its own id');
    keys.set(id, material);
    current ??= { id, key: material };
  }
  if (!current) throw new PitrError('Key', `${origin} holds no key`, 'write one key per line as KEYID:KEY (64 hex digits or base64 of 32 bytes)');
  return { current, keys };
}

function decodeKey(text: string, where: string): Buffer {
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  if (/^[A-Za-z0-9+/_-]{42,44}={0,2}$/.test(text)) {
    const bytes = Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (bytes.length === 32) return bytes;
  }
  throw new PitrError('Key', `${where}: the key is not 32 bytes written as 64 hex digits or base64`, 'generate one with: openssl rand -hex 32');
}

export const derivedKeyId = (key: Buffer): string => `k${createHmac('sha256', key).update('pitr key id v1').digest('hex').slice(0, 12)}`;
