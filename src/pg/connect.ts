import { Client, type ClientConfig } from 'pg';
import { PitrError } from '../errors';
import type { ReplicationSession } from './replication-session';
import { timelineHistory, type TimelineSwitch } from './timeline-history';

/** Connects a regular session to the source, turning connection failures into one clear error. */
export async function connectSource(config: ClientConfig, display: string, extra: Partial<ClientConfig> = {}): Promise<Client> {
  const client = new Client({ connectionTimeoutMillis: 15_000, ...config, ...extra });
  client.on('error', () => undefined); // reported through the failing query instead
  try {
    await client.connect();
    return client;
  } catch (error) {
    await client.end().catch(() => undefined);
    throw connectionError(error, display);
  }
}

/** Maps node-postgres / server errors met while connecting to PitrError('Connection') with a hint. */
export function connectionError(error: unknown, display: string): PitrError {
  const e = error as { code?: string; message?: string };
  const detail = (e.message ?? String(error)).replace(/password=[^\s]*/g, 'password=****');
  switch (e.code) {
    case 'ECONNREFUSED':
      return new PitrError(
        'Connection',
        `cannot connect to ${display}: connection refused`,
        'check that PostgreSQL is running and the host and port are right',
        { cause: error },
      );
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new PitrError('Connection', `cannot connect to ${display}: host not found`, 'check the host name in the connection URL', { cause: error });
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return new PitrError('Connection', `cannot connect to ${display}: host unreachable`, 'check the network path and firewall', { cause: error });
    case '28P01':
    case '28000':
      return new PitrError(
        'Connection',
        `cannot connect to ${display}: authentication failed`,
        'check the user and password (PGPASSWORD or the URL) and pg_hba.conf',
        { cause: error },
      );
    case '3D000':
      return new PitrError('Connection', `cannot connect to ${display}: ${detail}`, 'check the database name in the connection URL', { cause: error });
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
export async function identifySystem(config: ClientConfig, display: string): Promise<SystemIdentity> {
  const client = await connectSource(config, display, { replication: 'database' } as Partial<ClientConfig>);
  try {
    return await identifySession(client);
  } catch (error) {
    if (error instanceof PitrError) throw error;
    const e = error as { code?: string; message?: string };
    if (e.code === '42501' || /must be superuser or replication role/i.test(e.message ?? ''))
      throw new PitrError(
        'SourceConfig',
        `role may not replicate on ${display}`,
        'ALTER ROLE <user> REPLICATION; and allow "replication" connections in pg_hba.conf',
      );
    throw error;
  } finally {
    await client.end().catch(() => undefined);
  }
}
