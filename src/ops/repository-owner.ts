import type { RepositoryIdentity } from '../archive/repository';
import { withClient, type PgEndpoint } from '../pg/with-client';

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
export function foreignRepositoryReason(source: PgEndpoint, owner: RepositoryOwner): Promise<string | null> {
  const timeouts = { connectionTimeoutMillis: TIMEOUT_MS, statement_timeout: TIMEOUT_MS, query_timeout: TIMEOUT_MS };
  return withClient(source, timeouts, async (client) => {
    const { rows } = await client.query<{ sid: string; db: string }>(
      'SELECT system_identifier::text AS sid, current_database() AS db FROM pg_catalog.pg_control_system()',
    );
    const row = rows[0];
    if (!row || (row.sid === owner.systemIdentifier && row.db === owner.database)) return null;
    return (
      `repository ${owner.location} belongs to another database (system identifier ${owner.systemIdentifier}, database "${owner.database}"), ` +
      `not to the source ${source.display} (system identifier ${row.sid}, database "${row.db}"): point --repo at this source's repository, or --source at that database`
    );
  }).catch(() => null);
}

export function ownerOf(location: string, identity: RepositoryIdentity): RepositoryOwner {
  return { location, systemIdentifier: identity.systemIdentifier, database: identity.database };
}
