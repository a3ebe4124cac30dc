import type { Client, ClientConfig } from 'pg';
import { connectSource } from './connect';
import type { PgConnectConfig } from './pg-connect-config';

/** Where to connect: settings for node-postgres and the same place without a password, for messages. */
export interface PgEndpoint {
  config: PgConnectConfig;
  display: string;
}

/** What a transaction needs of a session (a Client, or a test's stand-in). */
export interface Queryable {
  query(text: string): Promise<unknown>;
}

/**
 * Opens one session for the unit of work `fn` and always closes it afterwards, whatever `fn` does;
 * `settings` (timeouts, application_name, session options) apply to this session only.
 * Connection failures become PitrError('Connection') naming `endpoint.display`.
 */
export function withClient<T>(endpoint: PgEndpoint, fn: (client: Client) => Promise<T>): Promise<T>;
export function withClient<T>(endpoint: PgEndpoint, settings: Partial<ClientConfig>, fn: (client: Client) => Promise<T>): Promise<T>;
export async function withClient<T>(
  endpoint: PgEndpoint,
  settingsOrFn: Partial<ClientConfig> | ((client: Client) => Promise<T>),
  maybeFn?: (client: Client) => Promise<T>,
): Promise<T> {
  const [settings, fn] = typeof settingsOrFn === 'function' ? [{}, settingsOrFn] : [settingsOrFn, maybeFn as (client: Client) => Promise<T>];
  const client = await connectSource(endpoint.config, endpoint.display, settings);
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Opens `count` sessions for one unit of work, one after the other, and always closes every one that
 * opened afterwards, also when opening a later one fails.
 */
export async function withClients<T>(endpoint: PgEndpoint, settings: Partial<ClientConfig>, count: number, fn: (clients: Client[]) => Promise<T>): Promise<T> {
  const clients: Client[] = [];
  try {
    for (let i = 0; i < count; i++) clients.push(await connectSource(endpoint.config, endpoint.display, settings));
    return await fn(clients);
  } finally {
    for (const client of clients) await client.end().catch(() => undefined);
  }
}

/**
 * Runs `fn` inside one transaction of `client`: committed when `fn` resolves, rolled back when it (or
 * the COMMIT) throws, the error rethrown as is. `begin` may name the isolation level and access mode.
 */
export function withTransaction<T>(client: Queryable, fn: () => Promise<T>): Promise<T>;
export function withTransaction<T>(client: Queryable, begin: string, fn: () => Promise<T>): Promise<T>;
export async function withTransaction<T>(client: Queryable, beginOrFn: string | (() => Promise<T>), maybeFn?: () => Promise<T>): Promise<T> {
  const [begin, fn] = typeof beginOrFn === 'function' ? ['BEGIN', beginOrFn] : [beginOrFn, maybeFn as () => Promise<T>];
  await client.query(begin);
  try {
    const result = await fn();
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}
