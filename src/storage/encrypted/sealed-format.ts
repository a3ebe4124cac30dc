import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { PitrError } from '../../errors';
import { KEY_ID_PATTERN, type Keyring } from './keyring';

/**
 * The sealed object format (docs/format.md, "Encryption"): a fixed header, the plaintext in chunks of
 * CHUNK_BYTES each sealed with AES-256-GCM, and a trailer holding the SHA-256 of everything before it.
 *
 *   header (74 bytes): magic "PITRAES1" · version (1) · key id length · key id (32, zero padded)
 *                      · salt (16, random per object) · key check (8) · header digest (8)
 *   chunks:            ciphertext of up to CHUNK_BYTES + 16-byte tag; every chunk but the last is full,
 *                      an empty object is one empty chunk
 *   trailer (32):      SHA-256 of header and chunks (checkable without the key)
 *
 * Each object has its own key, HKDF-SHA256(master key, salt, "pitr object key v1"), so nonces (the
 * chunk index) never repeat under one key. Each chunk's additional authenticated data is the header, the
 * chunk index, a final-chunk flag and the object name: a truncated object, chunks reordered, and an
 * object stored under another name all fail authentication.
 *
 * Wrong key or damage: the header digest covers the header, so a header that checks itself names its
 * key id and key check truthfully. A key of that id whose check value differs is the wrong key (Key);
 * with the right key check, a chunk failing authentication is damage (Integrity).
 */
export const SEALED_MAGIC = Buffer.from('PITRAES1', 'ascii');
export const SEALED_VERSION = 1;
export const CHUNK_BYTES = 64 * 1024;
export const TAG_BYTES = 16;
export const TRAILER_BYTES = 32;
const KEY_ID_BYTES = 32;
const SALT_BYTES = 16;
const CHECK_BYTES = 8;
const DIGEST_BYTES = 8;
const KEY_ID_AT = SEALED_MAGIC.length + 2;
const SALT_AT = KEY_ID_AT + KEY_ID_BYTES;
const CHECK_AT = SALT_AT + SALT_BYTES;
const DIGEST_AT = CHECK_AT + CHECK_BYTES;
export const HEADER_BYTES = DIGEST_AT + DIGEST_BYTES;

export interface SealedHeader {
  bytes: Buffer;
  keyId: string;
  salt: Buffer;
  keyCheck: Buffer;
}

const derive = (key: Buffer, salt: Buffer, info: string, length: number): Buffer => Buffer.from(hkdfSync('sha256', key, salt, info, length));

/** A new header for an object sealed with `key` (id `keyId`), and the object's own key. */
export function newHeader(keyId: string, key: Buffer): { header: SealedHeader; objectKey: Buffer } {
  const bytes = Buffer.alloc(HEADER_BYTES);
  SEALED_MAGIC.copy(bytes, 0);
  bytes[SEALED_MAGIC.length] = SEALED_VERSION;
  bytes[SEALED_MAGIC.length + 1] = Buffer.byteLength(keyId, 'ascii');
  bytes.write(keyId, KEY_ID_AT, 'ascii');
  const salt = randomBytes(SALT_BYTES);
  salt.copy(bytes, SALT_AT);
  const keyCheck = derive(key, salt, 'pitr key check v1', CHECK_BYTES);
  keyCheck.copy(bytes, CHECK_AT);
  headerDigest(bytes).copy(bytes, DIGEST_AT);
  return { header: { bytes, keyId, salt, keyCheck }, objectKey: derive(key, salt, 'pitr object key v1', 32) };
}

const headerDigest = (bytes: Buffer): Buffer => createHash('sha256').update(bytes.subarray(0, DIGEST_AT)).digest().subarray(0, DIGEST_BYTES);

const corrupt = (name: string, what: string): PitrError =>
  new PitrError(
    'Integrity',
    `object ${name} is corrupt: ${what}`,
    'run "pitr verify" to list damaged objects; restore it from a copy (pitr copy, pitr verify --repair)',
  );

/** The header of a sealed object, checked; throws Integrity when it is not one (or is damaged). */
export function parseHeader(bytes: Buffer, name: string): SealedHeader {
  if (bytes.length < HEADER_BYTES || !bytes.subarray(0, SEALED_MAGIC.length).equals(SEALED_MAGIC))
    throw corrupt(name, `not an encrypted object (no ${SEALED_MAGIC.toString('ascii')} header)`);
  const version = bytes[SEALED_MAGIC.length] as number;
  const header = bytes.subarray(0, HEADER_BYTES);
  if (!headerDigest(header).equals(header.subarray(DIGEST_AT))) throw corrupt(name, 'its encryption header is damaged');
  if (version !== SEALED_VERSION)
    throw new PitrError(
      'Repository',
      `object ${name} is encrypted in format version ${version}, this pitr reads version ${SEALED_VERSION}`,
      'use a newer pitr',
    );
  const idLength = header[SEALED_MAGIC.length + 1] as number;
  const keyId = header.toString('ascii', KEY_ID_AT, KEY_ID_AT + idLength);
  if (!KEY_ID_PATTERN.test(keyId)) throw corrupt(name, 'its encryption header names no valid key id');
  return { bytes: Buffer.from(header), keyId, salt: header.subarray(SALT_AT, CHECK_AT), keyCheck: header.subarray(CHECK_AT, DIGEST_AT) };
}

/** The object key for a parsed header: Key error when no key of its id is given, or the one given is another key. */
export function objectKeyFor(header: SealedHeader, keyring: Keyring | undefined, name: string, location: string): Buffer {
  if (!keyring)
    throw new PitrError(
      'Key',
      `repository ${location} is encrypted and no encryption key was given (object ${name} is sealed with key "${header.keyId}")`,
      'give the key file with --encryption-key-file or PITR_ENCRYPTION_KEY_FILE, or the key in PITR_ENCRYPTION_KEY (docs/runbooks/encryption-keys.md)',
    );
  const key = keyring.keys.get(header.keyId);
  if (!key)
    throw new PitrError(
      'Key',
      `object ${name} is sealed with encryption key "${header.keyId}", which is not among the keys given (${[...keyring.keys.keys()].join(', ')})`,
      `add the line ${header.keyId}:KEY to the key file: every key that ever wrote to the repository stays needed to read it (docs/runbooks/encryption-keys.md)`,
    );
  const check = derive(key, header.salt, 'pitr key check v1', CHECK_BYTES);
  if (!timingSafeEqual(check, header.keyCheck))
    throw new PitrError(
      'Key',
      `the encryption key given as "${header.keyId}" is not the key object ${name} is sealed with`,
      `the key under id "${header.keyId}" in the key file (or PITR_ENCRYPTION_KEY) differs from the one that wrote the repository: give the original key`,
    );
  return derive(key, header.salt, 'pitr object key v1', 32);
}

function nonce(index: number): Buffer {
  const iv = Buffer.alloc(12);
  iv.writeBigUInt64BE(BigInt(index), 4);
  return iv;
}

function aad(header: SealedHeader, name: string, index: number, final: boolean): Buffer {
  const position = Buffer.alloc(9);
  position.writeBigUInt64BE(BigInt(index), 0);
  position[8] = final ? 1 : 0;
  return Buffer.concat([header.bytes, position, Buffer.from(name, 'utf8')]);
}

/** Ciphertext and tag of one chunk. */
export function sealChunk(objectKey: Buffer, header: SealedHeader, name: string, index: number, final: boolean, plain: Buffer): Buffer {
  const cipher = createCipheriv('aes-256-gcm', objectKey, nonce(index));
  cipher.setAAD(aad(header, name, index, final));
  return Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
}

/** The plaintext of one chunk; Integrity error when it fails authentication (damaged, truncated, moved). */
export function openChunk(objectKey: Buffer, header: SealedHeader, name: string, index: number, final: boolean, sealed: Buffer): Buffer {
  if (sealed.length < TAG_BYTES) throw corrupt(name, `chunk ${index} is cut short`);
  const decipher = createDecipheriv('aes-256-gcm', objectKey, nonce(index));
  decipher.setAAD(aad(header, name, index, final));
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  try {
    return Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES)), decipher.final()]);
  } catch {
    throw chunkFailure(name, index);
  }
}

/** A chunk that fails authentication, or is missing where the object was cut short. */
export const chunkFailure = (name: string, index: number): PitrError =>
  corrupt(name, `chunk ${index} fails authentication (changed, truncated, reordered or stored under another name)`);

export const trailerMismatch = (name: string): PitrError => corrupt(name, 'the SHA-256 in its trailer does not match its bytes');

/** Stored size of a sealed object holding `plainBytes`. */
export function sealedSize(plainBytes: number): number {
  const chunks = Math.max(1, Math.ceil(plainBytes / CHUNK_BYTES));
  return HEADER_BYTES + plainBytes + chunks * TAG_BYTES + TRAILER_BYTES;
}

/** Plaintext size of a sealed object of `storedBytes` (the layout fixes it), or undefined when no sealed object has that size. */
export function plainSize(storedBytes: number): number | undefined {
  const body = storedBytes - HEADER_BYTES - TRAILER_BYTES;
  if (body < TAG_BYTES) return undefined;
  const chunks = Math.ceil(body / (CHUNK_BYTES + TAG_BYTES));
  const plain = body - chunks * TAG_BYTES;
  return sealedSize(plain) === storedBytes ? plain : undefined;
}
