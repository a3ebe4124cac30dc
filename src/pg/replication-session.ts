/**
 * The part of a replication connection (`replication: 'database'`) the identity checks use: the simple
 * query protocol only, since a walsender accepts no bound parameters. A pg Client satisfies it.
 */
export interface ReplicationSession {
  query(sql: string): Promise<{ rows: unknown[] }>;
}
