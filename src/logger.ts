import pino, { type Logger } from 'pino';

export type { Logger };

/** Paths whose values never reach a log line. */
const REDACT = [
  'password',
  '*.password',
  'connectionString',
  '*.connectionString',
  'config.password',
  'config.connectionString',
  'libpq.env.PGPASSWORD',
  'config.libpq.env.PGPASSWORD',
  '*.config.libpq.env.PGPASSWORD',
];

/** JSON log lines on stderr (stdout stays free for command output). */
export function createLogger(level: string, destination: NodeJS.WritableStream = process.stderr): Logger {
  return pino({ level, base: { pid: process.pid }, redact: { paths: REDACT, censor: '[redacted]' } }, destination as pino.DestinationStream);
}
