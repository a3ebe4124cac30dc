import { PitrError } from '../errors';

/**
 * The two spellings of a PostgreSQL connection that libpq takes, read the way libpq reads them:
 * keyword/value ("conninfo": `host=db1 port=5433 dbname=shop user=pitr`, values in single quotes when
 * they hold spaces, a backslash escaping the next character) and URLs
 * (`postgresql://user:password@host:port/dbname?sslmode=require`, percent-encoded).
 * https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING
 */

/** The libpq keywords pitr acts on. */
export const CONNECTION_KEYWORDS = [
  'host',
  'port',
  'dbname',
  'user',
  'password',
  'passfile',
  'service',
  'sslmode',
  'sslrootcert',
  'sslcert',
  'sslkey',
  'application_name',
  'fallback_application_name',
  'connect_timeout',
  'options',
  'client_encoding',
] as const;
export type ConnectionKeyword = (typeof CONNECTION_KEYWORDS)[number];
export type ConnectionParams = Partial<Record<ConnectionKeyword, string>>;

/** libpq keywords that change nothing for pitr with these values (node-postgres has no GSSAPI, one host only). */
const HARMLESS: Readonly<Record<string, RegExp>> = {
  gssencmode: /^(disable|prefer)$/,
  channel_binding: /^(disable|prefer)$/,
  target_session_attrs: /^any$/,
  sslsni: /^[01]$/,
  sslcompression: /^[01]$/,
  keepalives: /^[01]$/,
  keepalives_idle: /^\d+$/,
  keepalives_interval: /^\d+$/,
  keepalives_count: /^\d+$/,
  tcp_user_timeout: /^\d+$/,
};

const URL_PREFIX = /^postgres(ql)?:\/\//;

/** Whether `text` is a URL (postgresql:// or postgres://) rather than keyword/value pairs. */
export function isConnectionUrl(text: string): boolean {
  return URL_PREFIX.test(text);
}

/** Parses either spelling; throws PitrError('Usage') naming what is wrong (never the password). */
export function parseConnectionString(text: string): ConnectionParams {
  if (isConnectionUrl(text)) return parseConnectionUrl(text);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text))
    throw usage(`invalid connection URL ${redactConnectionString(text)}`, 'use postgresql://user@host:port/database, or host=... port=... dbname=... user=...');
  return parseConninfo(text);
}

/** keyword = value pairs separated by white space, as libpq's conninfo_parse reads them. */
export function parseConninfo(text: string): ConnectionParams {
  const params: ConnectionParams = {};
  let i = 0;
  const isSpace = (c: string | undefined): boolean => c !== undefined && /\s/.test(c);
  while (i < text.length) {
    while (isSpace(text[i])) i++;
    if (i >= text.length) break;
    const start = i;
    while (i < text.length && text[i] !== '=' && !isSpace(text[i])) i++;
    const keyword = text.slice(start, i);
    while (isSpace(text[i])) i++;
    if (text[i] !== '=')
      throw usage(
        `invalid connection string: missing "=" after "${keyword}"`,
        'write keyword=value pairs (host=db1 port=5432 dbname=shop user=pitr) or a postgresql:// URL',
      );
    i++;
    while (isSpace(text[i])) i++;
    let value = '';
    if (text[i] === "'") {
      i++;
      let closed = false;
      while (i < text.length) {
        const c = text[i] as string;
        if (c === '\\' && i + 1 < text.length) {
          value += text[i + 1];
          i += 2;
        } else if (c === "'") {
          closed = true;
          i++;
          break;
        } else {
          value += c;
          i++;
        }
      }
      if (!closed)
        throw usage(
          `invalid connection string: unterminated quoted value of "${keyword}"`,
          "close the value with a single quote; write \\' for a quote inside it",
        );
    } else {
      while (i < text.length && !isSpace(text[i])) {
        if (text[i] === '\\' && i + 1 < text.length) i++;
        value += text[i];
        i++;
      }
    }
    setParam(params, keyword, value);
  }
  return params;
}

/** A postgresql:// URL, as libpq's conninfo_uri_parse reads it (userinfo ends at the first "@" before the path). */
export function parseConnectionUrl(text: string): ConnectionParams {
  const params: ConnectionParams = {};
  const shown = redactConnectionString(text);
  const encodeHint =
    'percent-encode special characters (@ is %40, # is %23, / is %2F), or better leave the password out and use PGPASSWORD, PGPASSFILE or ~/.pgpass';
  let rest = text.replace(URL_PREFIX, '');
  const queryAt = rest.indexOf('?');
  const query = queryAt === -1 ? '' : rest.slice(queryAt + 1);
  if (queryAt !== -1) rest = rest.slice(0, queryAt);
  const slashAt = rest.indexOf('/');
  let authority = slashAt === -1 ? rest : rest.slice(0, slashAt);
  const path = slashAt === -1 ? undefined : rest.slice(slashAt + 1);
  const atAt = authority.indexOf('@');
  if (atAt !== -1) {
    const userinfo = authority.slice(0, atAt);
    authority = authority.slice(atAt + 1);
    const colonAt = userinfo.indexOf(':');
    const user = decode(colonAt === -1 ? userinfo : userinfo.slice(0, colonAt), shown, encodeHint);
    if (user) params.user = user;
    if (colonAt !== -1) params.password = decode(userinfo.slice(colonAt + 1), shown, encodeHint);
  }
  if (authority.includes('@')) throw usage(`invalid connection URL ${shown}: an unencoded "@" in the user name or password`, encodeHint);
  if (authority.includes(',')) throw usage(`invalid connection URL ${shown}: several hosts are not supported`, 'name one host');
  let host = authority;
  let port: string | undefined;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close === -1) throw usage(`invalid connection URL ${shown}: unterminated [ in the IPv6 host`, 'write the address as [::1]');
    host = authority.slice(1, close);
    const after = authority.slice(close + 1);
    if (after.startsWith(':')) port = after.slice(1);
    else if (after !== '') throw usage(`invalid connection URL ${shown}: unexpected "${after}" after the IPv6 host`, 'write [address]:port');
  } else {
    const colonAt = authority.indexOf(':');
    if (colonAt !== -1) {
      host = authority.slice(0, colonAt);
      port = authority.slice(colonAt + 1);
    }
    host = decode(host, shown, encodeHint);
  }
  if (host) params.host = host;
  if (port !== undefined && port !== '') {
    if (!/^\d+$/.test(port)) throw usage(`invalid connection URL ${shown}: invalid port "${port}"`, encodeHint);
    params.port = port;
  }
  if (path) params.dbname = decode(path, shown, encodeHint);
  for (const pair of query.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq === -1) throw usage(`invalid connection URL ${shown}: missing "=" in the parameter "${pair}"`, 'write ?keyword=value&keyword=value');
    let keyword = decode(pair.slice(0, eq), shown, encodeHint);
    let value = decode(pair.slice(eq + 1), shown, encodeHint);
    // JDBC's spelling, which libpq also takes
    if (keyword === 'ssl' && value === 'true') [keyword, value] = ['sslmode', 'require'];
    setParam(params, keyword, value);
  }
  return params;
}

function decode(text: string, shown: string, hint: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw usage(`invalid connection URL ${shown}: invalid percent-encoding`, hint);
  }
}

/** Sets one keyword's value; libpq keywords that change nothing here are skipped, others refused. */
export function setParam(params: ConnectionParams, keyword: string, value: string): void {
  if ((CONNECTION_KEYWORDS as readonly string[]).includes(keyword)) {
    params[keyword as ConnectionKeyword] = value;
    return;
  }
  const harmless = HARMLESS[keyword];
  if (harmless?.test(value)) return;
  if (harmless || keyword === 'hostaddr' || keyword.startsWith('ssl') || keyword.startsWith('gss') || keyword.startsWith('krb'))
    throw usage(
      `connection option ${keyword}=${keyword.includes('password') ? '****' : value} is not supported`,
      `pitr takes: ${CONNECTION_KEYWORDS.join(', ')}`,
    );
  throw usage(`invalid connection option "${keyword}"`, `pitr takes: ${CONNECTION_KEYWORDS.join(', ')}`);
}

function usage(message: string, hint: string): PitrError {
  return new PitrError('Usage', message, hint);
}

/**
 * The connection string with every password replaced by ****, whatever shape it has: a URL libpq would
 * read, one it would not (an unencoded "@", "#" or "/" in the password: everything from the first ":"
 * after "//" to the last "@" goes), keyword/value pairs (quoted, unterminated or not), `password=` in
 * a URL's query.
 */
export function redactConnectionString(text: string): string {
  let redacted = text;
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(text);
  if (scheme) {
    const rest = text.slice(scheme[0].length);
    const queryAt = rest.indexOf('?');
    const beforeQuery = queryAt === -1 ? rest : rest.slice(0, queryAt);
    // when in doubt (an "@" only in the query), more is hidden: a password may hold "/" or "?" unencoded
    const lastAt = beforeQuery.includes('@') ? beforeQuery.lastIndexOf('@') : rest.lastIndexOf('@');
    const colonAt = rest.indexOf(':');
    if (lastAt !== -1 && colonAt !== -1 && colonAt < lastAt && colonAt < rest.indexOf('@')) {
      redacted = `${scheme[0]}${rest.slice(0, colonAt)}:****${rest.slice(lastAt)}`;
    }
    return redacted.replace(/([?&](?:ssl)?password=)[^&]*/gi, '$1****');
  }
  return redacted.replace(/((?:^|\s)(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|(?:[^\s\\]|\\.)*)/gi, '$1****');
}
