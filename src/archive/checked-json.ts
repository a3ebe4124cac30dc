import { createHash } from 'node:crypto';
import { PitrError } from '../errors';

/**
 * JSON documents stored in the repository carry a SHA-256 of their own content (the document without
 * its `checksum` field, serialized with two-space indentation), checked whenever they are read.
 */
export function encodeCheckedJson(doc: object): Buffer {
  const body = JSON.stringify(doc, null, 2);
  const checksum = createHash('sha256').update(body).digest('hex');
  return Buffer.from(JSON.stringify({ ...doc, checksum }, null, 2) + '\n');
}

export function decodeCheckedJson<T extends object>(bytes: Buffer, name: string): T {
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new PitrError('Integrity', `object ${name} is corrupt: not valid JSON`, 'run "pitr verify" to list damaged objects');
  }
  const { checksum, ...doc } = parsed;
  const actual = createHash('sha256')
    .update(JSON.stringify(doc, null, 2))
    .digest('hex');
  if (checksum !== actual) throw new PitrError('Integrity', `object ${name} is corrupt: checksum mismatch`, 'run "pitr verify" to list damaged objects');
  return doc as T;
}
