import type { Client, ClientConfig } from 'pg';
import { connectSource } from './connect';
import type { PgConnectConfig } from './pg-connect-config';

/** Where to connect: settings for node-postgres and the same place without a password, for messages. */
export interface PgEndpoint {
  config: PgConnectConfig;
  display: string;
}

/**
 * Opens one session for the unit of work `fn` and always closes it afterwards, whatever `fn` does.
 * Connection failures become PitrError('Connection') naming `endpoint.display`.
 */
export async function withClient<T>(endpoint: PgEndpoint, fn: (client: Client) => Promise<T>, extra: Partial<ClientConfig> = {}): Promise<T> {
  const client = await connectSource(endpoint.config, endpoint.display, extra);
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Runs `fn` inside one transaction of `client`: committed when `fn` resolves, rolled back when it
 * throws (the error is rethrown as is). `begin` may name the isolation level and access mode.
 */
export async function withTransaction<T>(client: Client, fn: () => Promise<T>, begin = 'BEGIN'): Promise<T> {
  await client.query(begin);
  let result: T;
  try {
    result = await fn();
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
  await client.query('COMMIT');
  return result;
}
