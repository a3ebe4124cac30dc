import { PitrError } from '../errors';

/**
 * PostgreSQL timestamps on the wire are microseconds since 2000-01-01 00:00:00 UTC. We keep
 * microseconds since the Unix epoch as bigint so nothing is rounded.
 */
export const PG_EPOCH_OFFSET_MICROS = 946_684_800_000_000n;

export function pgMicrosToUnixMicros(pgMicros: bigint): bigint {
  return pgMicros + PG_EPOCH_OFFSET_MICROS;
}

export function unixMicrosToPgMicros(unixMicros: bigint): bigint {
  return unixMicros - PG_EPOCH_OFFSET_MICROS;
}

export function nowUnixMicros(): bigint {
  return BigInt(Date.now()) * 1000n;
}

/** ISO 8601 in UTC with all six fractional digits, e.g. 2026-11-22T10:41:59.500000Z. */
export function formatUnixMicros(unixMicros: bigint): string {
  const millis = unixMicros / 1000n;
  const micros = ((unixMicros % 1_000_000n) + 1_000_000n) % 1_000_000n;
  const iso = new Date(Number(millis)).toISOString();
  return `${iso.slice(0, 19)}.${micros.toString().padStart(6, '0')}Z`;
}

/** The same instant in formatUnixMicros' form: every timestamp of a `--json` document has six fractional digits. */
export function isoMicros(text: string): string {
  return formatUnixMicros(parseIsoMicros(text));
}

/** Inverse of formatUnixMicros; also accepts any ISO form Date understands, keeping up to 6 fraction digits. */
export function parseIsoMicros(text: string): bigint {
  const match = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?(Z|[+-]\d\d:?\d\d)$/.exec(text);
  if (!match || match[1] === undefined || match[3] === undefined) throw new PitrError('Integrity', `invalid timestamp "${text}"`);
  const seconds = Date.parse(`${match[1]}${match[3]}`);
  if (Number.isNaN(seconds)) throw new PitrError('Integrity', `invalid timestamp "${text}"`);
  return BigInt(seconds) * 1000n + BigInt((match[2] ?? '').padEnd(6, '0'));
}
