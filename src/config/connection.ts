import type { ClientConfig } from 'pg';
import { PitrError } from '../errors';
import type { PgEndpoint } from '../pg/with-client';

/**
 * The source's connection settings. The URL may leave parts out; node-postgres then takes them from the
 * libpq variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE), as psql would.
 */
export type SourceConnection = PgEndpoint;

export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '****';
    return parsed.toString();
  } catch {
    return url.replace(/:\/\/([^:@/]*):[^@/]*@/, '://$1:****@');
  }
}

/** The same connection settings pointed at another database of the same server (the URL's own when omitted). */
export function configForDatabase(url: string, database?: string): ClientConfig {
  if (!database) return { connectionString: url };
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return { connectionString: parsed.toString() };
}

export function sourceConnection(url: string | undefined, applicationName: string): SourceConnection {
  if (url === undefined || url === '') {
    const display = `${process.env.PGUSER ?? ''}@${process.env.PGHOST ?? 'localhost'}:${process.env.PGPORT ?? '5432'}/${process.env.PGDATABASE ?? ''}`;
    return { config: { application_name: applicationName }, display };
  }
  if (!/^postgres(ql)?:\/\//.test(url)) {
    throw new PitrError('Usage', `invalid connection URL ${redactUrl(url)}`, 'use postgresql://user:password@host:port/database');
  }
  try {
    new URL(url);
  } catch {
    throw new PitrError(
      'Usage',
      `invalid connection URL ${redactUrl(url)}`,
      'use postgresql://user:password@host:port/database; percent-encode special characters in the password',
    );
  }
  return { config: { connectionString: url, application_name: applicationName }, display: redactUrl(url) };
}
