import type { ClientConfig } from 'pg';

/** libpq's sslmode values. https://www.postgresql.org/docs/current/libpq-ssl.html#LIBPQ-SSL-PROTECTION */
export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

/** What libpq does that node-postgres does not do alone; set by src/config/connection.ts. */
export interface LibpqSettings {
  sslmode: SslMode;
  /** The role connecting, for hints. */
  user: string;
  /**
   * prefer and allow: whether the next connection tries SSL. prefer starts with SSL and goes without when
   * the server has none; allow the other way round when the server refuses connections without SSL. What
   * one connection learnt, the next one of the same settings tries first.
   */
  negotiation?: { trySsl: boolean };
  /** The same settings as libpq environment variables, for pg_dump and pg_restore. */
  env: Readonly<Record<string, string>>;
}

/** node-postgres settings (never a connectionString: its parser has other sslmode meanings) plus libpq's. */
export interface PgConnectConfig extends ClientConfig {
  libpq?: LibpqSettings;
}

/** The settings node-postgres gets for the next attempt: `ssl` off when negotiation says so. */
export function clientConfigFor(config: PgConnectConfig): ClientConfig {
  const { libpq, ...client } = config;
  if (libpq?.negotiation && !libpq.negotiation.trySsl) return { ...client, ssl: false };
  return client;
}

const NO_SSL_ON_SERVER = /server does not support SSL/i;

/**
 * After a failed attempt under prefer or allow: whether trying the other way may succeed (libpq's
 * fallback). Flips the negotiation when it does, so the next attempt, and later connections, try it.
 */
export function switchSslAfter(config: PgConnectConfig, error: unknown): boolean {
  const negotiation = config.libpq?.negotiation;
  if (!negotiation) return false;
  const e = error as { code?: string; message?: string };
  const message = e.message ?? '';
  const switchIt = negotiation.trySsl
    ? NO_SSL_ON_SERVER.test(message) || (e.code === '28000' && /pg_hba\.conf/.test(message))
    : e.code === '28000' && /no encryption/.test(message);
  if (switchIt) negotiation.trySsl = !negotiation.trySsl;
  return switchIt;
}
