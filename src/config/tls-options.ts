import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { ConnectionOptions } from 'node:tls';
import { PitrError } from '../errors';
import type { SslMode } from '../pg/pg-connect-config';

export interface TlsParams {
  host: string;
  sslmode: SslMode;
  sslrootcert?: string;
  sslcert?: string;
  sslkey?: string;
}

/**
 * Node's TLS options for libpq's sslmode, or false for no SSL (disable, and any Unix socket, where
 * libpq never uses SSL):
 *   allow, prefer: encrypt without checking the certificate (connect.ts falls back as libpq does)
 *   require: the same, but as verify-ca when a root certificate file exists (libpq's compatibility rule)
 *   verify-ca: the chain against sslrootcert (default ~/.postgresql/root.crt), not the host name
 *   verify-full: the chain and the host name; sslrootcert=system takes the system's trusted roots
 * A client certificate comes from sslcert/sslkey, or ~/.postgresql/postgresql.crt and .key when present.
 */
export function tlsOptions(p: TlsParams, home: string): ConnectionOptions | false {
  if (p.sslmode === 'disable' || p.host.startsWith('/')) return false;
  const dir = path.join(home, '.postgresql');
  const options: ConnectionOptions = {};
  const certFile = p.sslcert ?? path.join(dir, 'postgresql.crt');
  if (p.sslcert !== undefined || existsSync(certFile)) {
    options.cert = readNamed(certFile, 'sslcert');
    options.key = readNamed(p.sslkey ?? path.join(dir, 'postgresql.key'), 'sslkey');
  }
  const rootCert = p.sslrootcert ?? path.join(dir, 'root.crt');
  let mode = p.sslmode;
  if (mode === 'require' && rootCert !== 'system' && existsSync(rootCert)) mode = 'verify-ca';
  if (mode !== 'verify-ca' && mode !== 'verify-full') return { ...options, rejectUnauthorized: false };
  if (rootCert === 'system') {
    if (mode === 'verify-ca') throw new PitrError('Usage', 'sslrootcert=system needs sslmode=verify-full', 'use sslmode=verify-full with sslrootcert=system');
  } else {
    if (!existsSync(rootCert))
      throw new PitrError(
        'Connection',
        `root certificate file "${rootCert}" does not exist (sslmode=${p.sslmode} checks the server's certificate)`,
        "give the CA's certificate with sslrootcert=FILE (or PGSSLROOTCERT), sslrootcert=system for the system's trusted roots, or sslmode=require to encrypt without checking",
      );
    options.ca = readNamed(rootCert, 'sslrootcert');
  }
  options.rejectUnauthorized = true;
  // verify-ca: the chain only, any host name
  if (mode === 'verify-ca') options.checkServerIdentity = () => undefined;
  return options;
}

function readNamed(file: string, keyword: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new PitrError(
      'Usage',
      `cannot read ${keyword} file "${file}": ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
      `check ${keyword} (or its PG variable)`,
    );
  }
}
