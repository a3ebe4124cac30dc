import { PitrError } from '../errors';

/**
 * A PostgreSQL WAL position (LSN): a 64-bit unsigned integer, printed as two hex halves `X/Y`.
 * Kept as bigint everywhere so positions compare exactly; strings are only for display and input.
 */
export type Lsn = bigint;

const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

export function parseLsn(text: string): Lsn {
  const match = LSN_TEXT.exec(text.trim());
  if (!match || match[1] === undefined || match[2] === undefined) throw new PitrError('Integrity', `invalid LSN "${text}": expected X/Y in hexadecimal`);
  return (BigInt('0x' + match[1]) << 32n) | BigInt('0x' + match[2]);
}

/** PostgreSQL's own notation: upper half unpadded, lower half unpadded, uppercase (e.g. 0/16B3748). */
export function formatLsn(lsn: Lsn): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** Fixed-width hex, so that object names sort in LSN order. */
export function lsnToSortableHex(lsn: Lsn): string {
  return lsn.toString(16).toUpperCase().padStart(16, '0');
}

export function lsnFromSortableHex(hex: string): Lsn {
  return BigInt('0x' + hex);
}

export function readLsn(buffer: Buffer, offset: number): Lsn {
  return buffer.readBigUInt64BE(offset);
}
