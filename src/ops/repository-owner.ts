import type { ClientConfig } from 'pg';
import type { RepositoryIdentity } from '../archive/repository';
import { connectSource } from '../pg/connect';

/** Which source a repository belongs to, as `pitr status` reports it. */
export interface RepositoryOwner {
  location: string;
  systemIdentifier: string;
  database: string;
}

/** Connecting to the source and asking it who it is each give up after this long. */
const TIMEOUT_MS = 5_000;

/**
 * The broken-reason when the repository belongs to another database than the source status looks at,
 * else null. Asks the source over a short-lived regular session (pg_control_system(), no replication
 * privilege needed); a source that cannot be reached is reported by the slot check, not here.
 */
export async function foreignRepositoryReason(source: { config: ClientConfig; display: string }, owner: RepositoryOwner): Promise<string | null> {
  let client;
  try {
    client = await connectSource(source.config, source.display, {
      connectionTimeoutMillis: TIMEOUT_MS,
      statement_timeout: TIMEOUT_MS,
      query_timeout: TIMEOUT_MS,
    });
  } catch {
    return null;
  }
  try {
    const { rows } = await client.query<{ sid: string; db: string }>(
      'SELECT system_identifier::text AS sid, current_database() AS db FROM pg_catalog.pg_control_system()',
    );
    const row = rows[0];
    if (!row || (row.sid === owner.systemIdentifier && row.db === owner.database)) return null;
    return (
      `repository ${owner.location} belongs to another database (system identifier ${owner.systemIdentifier}, database "${owner.database}"), ` +
      `not to the source ${source.display} (system identifier ${row.sid}, database "${row.db}"): point --repo at this source's repository, or --source at that database`
    );
  } catch {
    return null;
  } finally {
    await client.end().catch(() => undefined);
  }
}

export function ownerOf(location: string, identity: RepositoryIdentity): RepositoryOwner {
  return { location, systemIdentifier: identity.systemIdentifier, database: identity.database };
}
