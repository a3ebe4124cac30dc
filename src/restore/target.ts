import type { Client } from 'pg';
import { formatLsn, parseLsn, type Lsn } from '../pg/lsn';
import { parseIsoMicros } from '../pg/pg-time';
import { PitrError } from '../errors';
import { withTransaction } from '../pg/with-client';

/** What `--to` asked for, before it is located in the archive. */
export type TargetSpec =
  | { kind: 'latest' }
  | { kind: 'lsn'; lsn: Lsn }
  | { kind: 'xid'; xid: number }
  | { kind: 'mark'; name: string }
  | { kind: 'time'; input: string; micros: bigint };

const USAGE_HINT = 'use a timestamp (2026-11-22 10:41:59.5+01), latest, lsn:X/Y, xid:N or mark:NAME';

/**
 * Parses `--to`. Timestamps are read by PostgreSQL itself (any form timestamptz accepts), in the
 * machine's time zone when the text has none, and kept to the microsecond.
 */
export async function parseTarget(input: string, client: Client): Promise<TargetSpec> {
  const text = input.trim();
  if (text === 'latest') return { kind: 'latest' };
  if (text.startsWith('lsn:')) {
    try {
      return { kind: 'lsn', lsn: parseLsn(text.slice(4)) };
    } catch {
      throw new PitrError('Usage', `invalid restore target "${input}": bad LSN`, 'write LSNs as lsn:X/Y, e.g. lsn:0/16B3748');
    }
  }
  if (text.startsWith('xid:')) {
    if (!/^\d+$/.test(text.slice(4)) || Number(text.slice(4)) > 0xffffffff)
      throw new PitrError('Usage', `invalid restore target "${input}": bad transaction id`, 'e.g. xid:123456');
    return { kind: 'xid', xid: Number(text.slice(4)) };
  }
  if (text.startsWith('mark:')) {
    if (text.length === 5) throw new PitrError('Usage', `invalid restore target "${input}": empty mark name`, USAGE_HINT);
    return { kind: 'mark', name: text.slice(5) };
  }
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  try {
    const { rows } = await withTransaction(client, async () => {
      // set_config(..., true): for this transaction only
      await client.query("SELECT set_config('TimeZone', $1, true), set_config('DateStyle', 'ISO, YMD', true)", [zone]);
      return client.query<{ utc: string }>(`SELECT to_char($1::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS utc`, [text]);
    });
    return { kind: 'time', input: text, micros: parseIsoMicros((rows[0] as { utc: string }).utc) };
  } catch (error) {
    if (error instanceof PitrError) throw error;
    throw new PitrError('Usage', `invalid restore target "${input}": ${(error as Error).message}`, USAGE_HINT);
  }
}

export function describeTarget(spec: TargetSpec): string {
  switch (spec.kind) {
    case 'latest':
      return 'latest';
    case 'lsn':
      return `lsn:${formatLsn(spec.lsn)}`;
    case 'xid':
      return `xid:${spec.xid}`;
    case 'mark':
      return `mark:${spec.name}`;
    case 'time':
      return spec.input;
    default: {
      const never: never = spec;
      return String(never);
    }
  }
}
