import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PitrError } from '../errors';
import { SSL_MODES, type PgConnectConfig, type SslMode } from '../pg/pg-connect-config';
import type { PgEndpoint } from '../pg/with-client';
import { isConnectionUrl, parseConnectionString, redactConnectionString, type ConnectionParams, type ConnectionKeyword } from './conninfo';
import { readService } from './pg-service-file';
import { lookupPassword } from './pgpass-file';
import { tlsOptions } from './tls-options';

/**
 * Connection settings resolved as libpq resolves them: the keywords given (URL or keyword/value) first,
 * then those of the service (service=, or PGSERVICE) from pg_service.conf, then the PG* environment
 * variables, then the defaults (a local socket when one is there, else localhost; port 5432; the
 * operating-system user; a database named like the user; sslmode prefer). A password not given is
 * looked up in the password file (passfile, PGPASSFILE, ~/.pgpass) when the server asks for one.
 */
export type SourceConnection = PgEndpoint;

/** The PG* variables libpq reads, and the keyword each stands for. */
const ENVIRONMENT: ReadonlyArray<readonly [string, ConnectionKeyword]> = [
  ['PGHOST', 'host'],
  ['PGPORT', 'port'],
  ['PGDATABASE', 'dbname'],
  ['PGUSER', 'user'],
  ['PGPASSWORD', 'password'],
  ['PGPASSFILE', 'passfile'],
  ['PGSSLMODE', 'sslmode'],
  ['PGSSLROOTCERT', 'sslrootcert'],
  ['PGSSLCERT', 'sslcert'],
  ['PGSSLKEY', 'sslkey'],
  ['PGAPPNAME', 'application_name'],
  ['PGCONNECT_TIMEOUT', 'connect_timeout'],
  ['PGOPTIONS', 'options'],
  ['PGCLIENTENCODING', 'client_encoding'],
];

/** Socket directories libpq builds use by default: Debian's and PostgreSQL's own. */
const SOCKET_DIRS = ['/var/run/postgresql', '/tmp'];

export interface ResolvedParams extends ConnectionParams {
  host: string;
  port: string;
  dbname: string;
  user: string;
  sslmode: SslMode;
  passfile: string;
}

export interface ResolveOptions {
  /** A database other than the one the settings name (the same server's maintenance database, say). */
  database?: string;
  /** application_name when the settings name none (libpq's fallback_application_name). */
  applicationName?: string;
  env?: NodeJS.ProcessEnv;
}

/** Explicit keywords > service > environment > defaults, as libpq. */
export function resolveParams(explicit: ConnectionParams, env: NodeJS.ProcessEnv = process.env): ResolvedParams {
  const home = env.HOME || os.homedir();
  const fromEnv: ConnectionParams = {};
  for (const [name, keyword] of ENVIRONMENT) if (env[name]) fromEnv[keyword] = env[name];
  const service = explicit.service || env.PGSERVICE;
  const fromService = service ? readService(service, env, home) : {};
  const merged: ConnectionParams = { ...fromEnv, ...nonEmpty(fromService), ...nonEmpty(explicit) };
  const port = merged.port ?? '5432';
  if (!/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65535)
    throw new PitrError('Usage', `invalid port number "${port}" in the connection settings`, 'give a port from 1 to 65535 (port=, PGPORT or the URL)');
  const sslmode = merged.sslmode ?? 'prefer';
  if (!(SSL_MODES as readonly string[]).includes(sslmode))
    throw new PitrError('Usage', `invalid sslmode "${sslmode}"`, `sslmode is one of ${SSL_MODES.join(', ')}`);
  const host = merged.host ?? defaultHost(port);
  if (host.includes(',')) throw new PitrError('Usage', `several hosts ("${host}") are not supported`, 'name one host');
  const user = merged.user ?? osUser(env);
  return {
    ...merged,
    ...(service ? { service } : {}),
    host,
    port,
    user,
    dbname: merged.dbname ?? user,
    sslmode: sslmode as SslMode,
    passfile: merged.passfile ?? path.join(home, '.pgpass'),
  };
}

/** libpq's default user: the operating system's name for this process's user. */
function osUser(env: NodeJS.ProcessEnv): string {
  try {
    return os.userInfo().username;
  } catch {
    return env.USER ?? env.LOGNAME ?? 'postgres'; // no passwd entry (some containers)
  }
}

function nonEmpty(params: ConnectionParams): ConnectionParams {
  return Object.fromEntries(Object.entries(params).filter(([, value]) => value !== undefined && value !== ''));
}

function defaultHost(port: string): string {
  return SOCKET_DIRS.find((dir) => existsSync(path.join(dir, `.s.PGSQL.${port}`))) ?? 'localhost';
}

/**
 * Where to connect, from a URL or keyword/value string (or nothing: service and environment alone).
 * Files named (service file, certificates) are read now; the password file when the server asks.
 */
export function connectionEndpoint(text: string | undefined, options: ResolveOptions = {}): PgEndpoint {
  const env = options.env ?? process.env;
  const explicit = text === undefined || text === '' ? {} : parseConnectionString(text);
  if (options.database) explicit.dbname = options.database;
  const p = resolveParams(explicit, env);
  const display = text && isConnectionUrl(text) && !options.database ? redactConnectionString(text) : canonicalUrl(p);
  const ssl = tlsOptions(p, env.HOME || os.homedir());
  const timeout = p.connect_timeout === undefined ? undefined : Number(p.connect_timeout);
  if (timeout !== undefined && !Number.isInteger(timeout))
    throw new PitrError('Usage', `invalid connect_timeout "${p.connect_timeout}"`, 'give whole seconds (0: wait forever)');
  const applicationName = p.application_name ?? options.applicationName ?? p.fallback_application_name;
  const config: PgConnectConfig = {
    host: p.host,
    port: Number(p.port),
    user: p.user,
    database: p.dbname,
    password: p.password ?? (() => passwordFromFile(p, display)),
    ssl,
    ...(applicationName ? { application_name: applicationName } : {}),
    ...(p.options ? { options: p.options } : {}),
    ...(p.client_encoding ? { client_encoding: p.client_encoding } : {}),
    ...(timeout !== undefined ? { connectionTimeoutMillis: timeout * 1000 } : {}),
    libpq: {
      sslmode: p.sslmode,
      user: p.user,
      ...(ssl && (p.sslmode === 'prefer' || p.sslmode === 'allow') ? { negotiation: { trySsl: p.sslmode === 'prefer' } } : {}),
      env: libpqEnvironment(p),
    },
  };
  return { config, display };
}

function passwordFromFile(p: ResolvedParams, display: string): string {
  const found = lookupPassword(p.passfile, p);
  if (found.password !== undefined) return found.password;
  throw new PitrError(
    'Connection',
    `cannot connect to ${display}: the server asks for a password for role "${p.user}" and none is set`,
    `set PGPASSWORD, add a line ${p.host.startsWith('/') ? 'localhost' : p.host}:${p.port}:${p.dbname}:${p.user}:PASSWORD to ${p.passfile} (mode 0600), or set password= in the service file` +
      (found.ignored ? `; ${found.ignored}` : ''),
  );
}

/** The resolved settings as libpq variables: pg_dump and pg_restore reach the same place, no password on their command line. */
function libpqEnvironment(p: ResolvedParams): Record<string, string> {
  const env: Record<string, string> = { PGHOST: p.host, PGPORT: p.port, PGDATABASE: p.dbname, PGUSER: p.user, PGSSLMODE: p.sslmode, PGPASSFILE: p.passfile };
  for (const [name, keyword] of ENVIRONMENT) {
    const value = p[keyword];
    if (value !== undefined && !(name in env)) env[name] = value;
  }
  return env;
}

/** postgresql://user@host:port/dbname of the resolved settings (a socket directory percent-encoded as the host). */
function canonicalUrl(p: ResolvedParams): string {
  const host = p.host.startsWith('/') ? encodeURIComponent(p.host) : p.host.includes(':') ? `[${p.host}]` : p.host;
  return `postgresql://${encodeURIComponent(p.user)}@${host}:${p.port}/${encodeURIComponent(p.dbname)}`;
}

export function sourceConnection(text: string | undefined, applicationName: string): SourceConnection {
  return connectionEndpoint(text, { applicationName });
}

/** The same connection settings pointed at another database of the same server (their own when omitted). */
export function configForDatabase(text: string, database?: string): PgConnectConfig {
  return connectionEndpoint(text, database ? { database } : {}).config;
}

/** The database the settings name, once resolved (service, PGDATABASE, or the user's name). */
export function databaseOf(text: string): string {
  return resolveParams(parseConnectionString(text)).dbname;
}

/** The connection string with its password (URL or password=) replaced by ****, even when malformed. */
export { redactConnectionString as redactUrl } from './conninfo';

/** Throws PitrError('Usage') when `text` is neither a valid URL nor valid keyword/value pairs. */
export function checkConnectionString(text: string): void {
  parseConnectionString(text);
}

/**
 * The warning for connection strings given on the command line with a password in them, which every
 * local user sees in `ps`; undefined when there is none. Unparsable strings are refused later.
 */
export function passwordOnCommandLineWarning(given: ReadonlyArray<{ flag: string; value: string }>): string | undefined {
  const flags = given
    .filter(({ value }) => {
      try {
        return parseConnectionString(value).password !== undefined;
      } catch {
        return redactConnectionString(value) !== value;
      }
    })
    .map(({ flag }) => flag);
  if (flags.length === 0) return undefined;
  return `a password in ${flags.join(' and ')} is visible to every local user (ps); leave it out and use PGPASSWORD, PGPASSFILE or ~/.pgpass`;
}
