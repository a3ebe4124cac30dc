import { readFileSync, statSync } from 'node:fs';

export interface PasswordLookup {
  password?: string;
  /** Why the file was not read although it exists (libpq ignores a file others may read), for the hint. */
  ignored?: string;
}

export interface PasswordFor {
  host: string;
  port: string;
  dbname: string;
  user: string;
}

/**
 * The password for `at` from a password file (~/.pgpass): lines of host:port:database:username:password,
 * `*` matching anything, `\` escaping ":" and "\"; the first matching line wins. A Unix-socket
 * connection matches the host "localhost", as in libpq. Like libpq, a file that is not a regular file or
 * that the group or others may read is not used.
 */
export function lookupPassword(file: string, at: PasswordFor): PasswordLookup {
  let text: string;
  try {
    const stat = statSync(file);
    if (!stat.isFile()) return { ignored: `password file "${file}" is not a plain file` };
    if (process.platform !== 'win32' && (stat.mode & 0o077) !== 0)
      return { ignored: `password file "${file}" has group or world access and is not used (chmod 0600 ${file})` };
    text = readFileSync(file, 'utf8');
  } catch {
    return {};
  }
  const host = at.host.startsWith('/') ? 'localhost' : at.host;
  for (const line of text.split(/\r?\n/)) {
    if (line === '' || line.startsWith('#')) continue;
    const fields = splitFields(line);
    if (fields.length < 5) continue;
    const [fHost, fPort, fDb, fUser] = fields as [string, string, string, string];
    const matches = (field: string, value: string): boolean => field === '*' || field === value;
    if ((matches(fHost, host) || matches(fHost, at.host)) && matches(fPort, at.port) && matches(fDb, at.dbname) && matches(fUser, at.user)) {
      return { password: fields.slice(4).join(':') };
    }
  }
  return {};
}

function splitFields(line: string): string[] {
  const fields: string[] = [];
  let current = '';
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string;
    if (c === '\\' && i + 1 < line.length) {
      current += line[++i];
    } else if (c === ':' && fields.length < 4) {
      fields.push(current);
      current = '';
    } else {
      current += c;
    }
  }
  fields.push(current);
  return fields;
}
