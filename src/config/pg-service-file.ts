import { readFileSync } from 'node:fs';
import path from 'node:path';
import { PitrError } from '../errors';
import { setParam, type ConnectionParams } from './conninfo';

/** Where libpq on Debian and Ubuntu looks when PGSYSCONFDIR is unset (its compiled-in sysconfdir). */
const DEFAULT_SYSCONFDIR = '/etc/postgresql-common';

/** The files searched for a service, in libpq's order: the user's first, then the system's. */
export function serviceFiles(env: NodeJS.ProcessEnv, home: string): string[] {
  return [env.PGSERVICEFILE || path.join(home, '.pg_service.conf'), path.join(env.PGSYSCONFDIR || DEFAULT_SYSCONFDIR, 'pg_service.conf')];
}

/**
 * The settings of service `name` from pg_service.conf (an INI file: `[name]` then keyword=value lines,
 * `#` comments). The first file holding the service wins; none holding it is an error, as in libpq.
 */
export function readService(name: string, env: NodeJS.ProcessEnv, home: string): ConnectionParams {
  const files = serviceFiles(env, home);
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    const found = serviceIn(text, name, file);
    if (found) return found;
  }
  throw new PitrError('Usage', `definition of service "${name}" not found`, `add a [${name}] section to ${files.join(' or ')} (PGSERVICEFILE, PGSYSCONFDIR)`);
}

/** The service's settings in one file's text, or undefined when the file has no such section. */
export function serviceIn(text: string, name: string, file: string): ConnectionParams | undefined {
  let inService = false;
  let found: ConnectionParams | undefined;
  const lines = text.split(/\r?\n/);
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('[')) {
      if (found) return found; // the next section: this service is complete
      inService = line === `[${name}]`;
      if (inService) found = {};
      continue;
    }
    if (!inService || !found) continue;
    const eq = line.indexOf('=');
    const where = `service file "${file}", line ${index + 1}`;
    if (eq === -1) throw new PitrError('Usage', `syntax error in ${where}: missing "="`, 'write keyword=value, one a line');
    const keyword = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    if (keyword === 'service') throw new PitrError('Usage', `nested service specifications are not supported in ${where}`, 'remove the service= line');
    try {
      setParam(found, keyword, value);
    } catch (error) {
      if (error instanceof PitrError) throw new PitrError('Usage', `${where}: ${error.message}`, error.hint);
      throw error;
    }
  }
  return found;
}
