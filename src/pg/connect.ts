import { Client, type ClientConfig } from 'pg';
import { PitrError, isPitrError } from '../errors';
import { clientConfigFor, switchSslAfter, type PgConnectConfig } from './pg-connect-config';
import type { ReplicationSession } from './replication-session';
import { timelineHistory, type TimelineSwitch } from './timeline-history';

/**
 * Connects a regular session to the source, turning connection failures into one clear error. Under
 * sslmode prefer or allow, a refusal the other way may cure is tried once more that way, as libpq does.
 */
export async function connectSource(config: PgConnectConfig, display: string, extra: Partial<ClientConfig> = {}): Promise<Client> {
  try {
    return await attempt(config, extra);
  } catch (error) {
    if (!switchSslAfter(config, error)) throw connectionError(error, display, config);
    try {
      return await attempt(config, extra);
    } catch (second) {
      throw connectionError(second, display, config);
    }
  }
}

async function attempt(config: PgConnectConfig, extra: Partial<ClientConfig>): Promise<Client> {
  const client = new Client({ connectionTimeoutMillis: 15_000, ...clientConfigFor(config), ...extra });
  client.on('error', () => undefined); // reported through the failing query instead
  try {
    await client.connect();
    return client;
  } catch (error) {
    await client.end().catch(() => undefined);
    throw error;
  }
}

const TLS_UNTRUSTED = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
]);

/**
 * Maps node-postgres / server / TLS errors met while connecting to one PitrError with a hint:
 * Connection (exit 4) for reaching and authenticating, SourceConfig (exit 3) for a role that may not
 * replicate. A PitrError (the missing password, say) passes through.
 */
export function connectionError(error: unknown, display: string, config: PgConnectConfig = {}): PitrError {
  if (isPitrError(error)) return error;
  const e = error as { code?: string; message?: string };
  const detail = (e.message ?? String(error)).replace(/password=[^\s]*/g, 'password=****');
  const sslmode = config.libpq?.sslmode;
  const user = config.libpq?.user ?? (typeof config.user === 'string' ? config.user : '<role>');
  if (e.code && TLS_UNTRUSTED.has(e.code))
    return new PitrError(
      'Connection',
      `cannot connect to ${display}: the server's certificate is not trusted (${detail})`,
      `sslmode=${sslmode ?? 'verify-full'} checks it against sslrootcert (~/.postgresql/root.crt): give the CA's certificate there, or use sslmode=require to encrypt without checking`,
      { cause: error },
    );
  if (e.code === 'ERR_TLS_CERT_ALTNAME_INVALID')
    return new PitrError(
      'Connection',
      `cannot connect to ${display}: the server's certificate does not name this host (${detail})`,
      'sslmode=verify-full checks the host name: connect by a name the certificate carries, or use sslmode=verify-ca to check the chain only',
      { cause: error },
    );
  if (/server does not support SSL/i.test(detail))
    return new PitrError(
      'Connection',
      `cannot connect to ${display}: the server does not accept SSL connections (sslmode=${sslmode ?? 'require'})`,
      'turn ssl on in the server (ssl = on, with a certificate), or use sslmode=prefer or disable',
      { cause: error },
    );
  switch (e.code) {
    case 'ECONNREFUSED':
    case 'ENOENT':
      return new PitrError(
        'Connection',
        `cannot connect to ${display}: connection refused`,
        'check that PostgreSQL is running and the host and port are right',
        { cause: error },
      );
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new PitrError('Connection', `cannot connect to ${display}: host not found`, 'check the host name in the connection settings', { cause: error });
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return new PitrError('Connection', `cannot connect to ${display}: host unreachable`, 'check the network path and firewall', { cause: error });
    case '42501':
      if (/replication/i.test(detail))
        return new PitrError(
          'SourceConfig',
          `role "${user}" may not start a replication connection on ${display}`,
          `ALTER ROLE ${user} REPLICATION (as a superuser), and allow "replication" connections for it in pg_hba.conf`,
          { cause: error },
        );
      return new PitrError('Connection', `cannot connect to ${display}: ${detail}`, "check the role's privileges (CONNECT on the database, LOGIN)", {
        cause: error,
      });
    case '28000':
      if (/pg_hba\.conf/.test(detail))
        return new PitrError(
          'Connection',
          `cannot connect to ${display}: ${detail}`,
          'add a line for this host, role and database to pg_hba.conf ("replication" as the database for the archiver\'s connections) and reload the server',
          { cause: error },
        );
    // falls through
    case '28P01':
      return new PitrError(
        'Connection',
        `cannot connect to ${display}: authentication failed`,
        'check the role and its password (PGPASSWORD, ~/.pgpass or the service file) and pg_hba.conf',
        { cause: error },
      );
    case '3D000':
      return new PitrError('Connection', `cannot connect to ${display}: ${detail}`, 'check the database name in the connection settings', { cause: error });
    default:
      if (/timeout/i.test(detail))
        return new PitrError('Connection', `cannot connect to ${display}: timed out`, 'check that the host is reachable', { cause: error });
      return new PitrError('Connection', `cannot connect to ${display}: ${detail}`, undefined, { cause: error });
  }
}

export interface SystemIdentity {
  systemIdentifier: string;
  timeline: number;
  /** The server's WAL flush position. */
  xlogPos: string;
  database: string;
  /** Where each earlier timeline of the current one's history ended (TIMELINE_HISTORY); empty on timeline 1. */
  history: TimelineSwitch[];
}

/** IDENTIFY_SYSTEM (and the timeline history) on an open replication session. */
export async function identifySession(session: ReplicationSession): Promise<SystemIdentity> {
  const result = await session.query('IDENTIFY_SYSTEM');
  const row = result.rows[0] as { systemid: string; timeline: string; xlogpos: string; dbname: string } | undefined;
  if (!row) throw new PitrError('Internal', 'IDENTIFY_SYSTEM returned no row');
  const timeline = Number(row.timeline);
  return {
    systemIdentifier: String(row.systemid),
    timeline,
    xlogPos: row.xlogpos,
    database: row.dbname,
    history: await timelineHistory(session, timeline),
  };
}

/** IDENTIFY_SYSTEM on a replication connection: needs only the REPLICATION attribute. */
export async function identifySystem(config: PgConnectConfig, display: string): Promise<SystemIdentity> {
  const client = await connectSource(config, display, { replication: 'database' } as Partial<ClientConfig>);
  try {
    return await identifySession(client);
  } catch (error) {
    if (error instanceof PitrError) throw error;
    const e = error as { code?: string; message?: string };
    if (e.code === '42501' || /must be superuser or replication role/i.test(e.message ?? ''))
      throw connectionError({ code: '42501', message: e.message ?? 'must be superuser or replication role' }, display, config);
    throw error;
  } finally {
    await client.end().catch(() => undefined);
  }
}
