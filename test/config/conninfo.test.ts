import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connectionEndpoint, passwordOnCommandLineWarning, redactUrl, resolveParams } from '../../src/config/connection';
import { parseConnectionString } from '../../src/config/conninfo';
import { lookupPassword } from '../../src/config/pgpass-file';
import { PitrError } from '../../src/errors';

let home: string;
beforeEach(() => {
  home = mkdtempSync(path.join(tmpdir(), 'pitr-conninfo-'));
});
afterEach(() => rmSync(home, { recursive: true, force: true }));

/** An environment with nothing of the machine's own: HOME here, no PG* variables. */
function env(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { HOME: home, PGSYSCONFDIR: path.join(home, 'sysconf'), ...extra };
}

function usageError(fn: () => unknown): PitrError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(PitrError);
    expect((error as PitrError).kind).toBe('Usage');
    return error as PitrError;
  }
  throw new Error('expected a usage error');
}

describe('keyword/value strings', () => {
  test('as libpq reads them: white space around "=", single quotes, backslash escapes', () => {
    expect(parseConnectionString("host=db1 port=5433  dbname = 'my shop' user=pitr password='it\\'s \\\\ here' application_name=a\\ b")).toEqual({
      host: 'db1',
      port: '5433',
      dbname: 'my shop',
      user: 'pitr',
      password: "it's \\ here",
      application_name: 'a b',
    });
    expect(parseConnectionString("dbname=''")).toEqual({ dbname: '' });
  });

  test('errors name the keyword, never the password', () => {
    expect(usageError(() => parseConnectionString('host=db1 shop')).message).toBe('invalid connection string: missing "=" after "shop"');
    expect(usageError(() => parseConnectionString("host=db1 password='secret")).message).toBe(
      'invalid connection string: unterminated quoted value of "password"',
    );
    expect(usageError(() => parseConnectionString('hots=db1')).message).toBe('invalid connection option "hots"');
    expect(usageError(() => parseConnectionString('sslpassword=secret')).message).not.toContain('secret');
    // libpq keywords that change nothing here are taken; those that would, refused
    expect(parseConnectionString('host=db1 gssencmode=disable target_session_attrs=any')).toEqual({ host: 'db1' });
    expect(usageError(() => parseConnectionString('host=db1 gssencmode=require')).message).toBe('connection option gssencmode=require is not supported');
  });
});

describe('URLs', () => {
  test('percent-decoded, with query parameters and IPv6 hosts', () => {
    expect(parseConnectionString('postgresql://u%40corp:p%23ss@[::1]:5433/my%20shop?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.crt')).toEqual({
      user: 'u@corp',
      password: 'p#ss',
      host: '::1',
      port: '5433',
      dbname: 'my shop',
      sslmode: 'verify-full',
      sslrootcert: '/tmp/ca.crt',
    });
    expect(parseConnectionString('postgres://db1')).toEqual({ host: 'db1' });
    expect(parseConnectionString('postgresql:///shop?host=/var/run/postgresql')).toEqual({ dbname: 'shop', host: '/var/run/postgresql' });
  });

  test('an unencoded "@" in the password is refused, and the error shows none of it', () => {
    const error = usageError(() => parseConnectionString('postgres://postgres:p@ss#word@db1:5432/shop'));
    expect(error.message).toBe('invalid connection URL postgres://postgres:****@db1:5432/shop: an unencoded "@" in the user name or password');
    expect(error.hint).toContain('PGPASSWORD, PGPASSFILE or ~/.pgpass');
    expect(usageError(() => parseConnectionString('http://u:hunter2@h/d')).message).toBe('invalid connection URL http://u:****@h/d');
  });
});

describe('redaction', () => {
  test.each([
    ['postgresql://u:hunter2@h:5432/d', 'postgresql://u:****@h:5432/d'],
    ['postgres://postgres:p@ss#word@db1:5432/shop', 'postgres://postgres:****@db1:5432/shop'],
    ['postgres://postgres:pa/ss?w@rd@db1/shop', 'postgres://postgres:****@db1/shop'],
    ['postgres://u:secret@h/d?options=a@b', 'postgres://u:****@h/d?options=a@b'],
    ['postgres://u@h/d?password=secret&sslmode=require', 'postgres://u@h/d?password=****&sslmode=require'],
    ['postgres://u:1234/5@h/d', 'postgres://u:****@h/d'],
    // an "@" only in the query may end a password holding "/" or "?": hidden too, to be safe
    ['postgres://h:5432/d?x=a@b', 'postgres://h:****@b'],
    ['postgres://h:5432/d?x=1', 'postgres://h:5432/d?x=1'],
    ["host=h password='p@ss word' user=u", 'host=h password=**** user=u'],
    ['host=h password = p@ss#word user=u', 'host=h password = **** user=u'],
    ["host=h password='unterminated user=u", 'host=h password=****'],
    ['host=h password=a\\ b user=u', 'host=h password=**** user=u'],
    ['password=first', 'password=****'],
  ])('%s', (given, shown) => {
    expect(redactUrl(given)).toBe(shown);
  });

  test('the endpoint shown never holds the password', () => {
    for (const text of ['postgresql://u:hunter2@h/d', 'host=h user=u password=hunter2']) {
      const endpoint = connectionEndpoint(text, { env: env() });
      expect(endpoint.display).not.toContain('hunter2');
    }
  });
});

describe('precedence: explicit > service > environment > defaults', () => {
  test('a service fills what is not given, over the PG* variables', () => {
    writeFileSync(path.join(home, '.pg_service.conf'), '# mine\n[shop]\nhost=db1\nport=5433\n  dbname = shop \nuser=pitr\n\n[other]\nhost=db9\n');
    const e = env({ PGHOST: 'envhost', PGPORT: '6000', PGUSER: 'envuser', PGSSLMODE: 'require', PGSERVICE: 'shop' });
    expect(resolveParams({}, e)).toMatchObject({ host: 'db1', port: '5433', dbname: 'shop', user: 'pitr', sslmode: 'require', service: 'shop' });
    expect(resolveParams({ port: '7000', service: 'other' }, e)).toMatchObject({ host: 'db9', port: '7000', dbname: 'envuser', user: 'envuser' });
    expect(connectionEndpoint('service=shop', { env: e }).display).toBe('postgresql://pitr@db1:5433/shop');
  });

  test('the user file first, then PGSYSCONFDIR; PGSERVICEFILE names the user file', () => {
    const sysconf = path.join(home, 'sysconf');
    mkdirSync(sysconf);
    writeFileSync(path.join(sysconf, 'pg_service.conf'), '[shop]\nhost=systemhost\n[sys]\nhost=sysonly\n');
    writeFileSync(path.join(home, 'services'), '[shop]\nhost=userhost\n');
    expect(resolveParams({ service: 'shop' }, env({ PGSERVICEFILE: path.join(home, 'services') })).host).toBe('userhost');
    expect(resolveParams({ service: 'shop' }, env()).host).toBe('systemhost');
    expect(resolveParams({ service: 'sys' }, env({ PGSERVICEFILE: path.join(home, 'services') })).host).toBe('sysonly');
    expect(usageError(() => resolveParams({ service: 'nosuch' }, env())).message).toBe('definition of service "nosuch" not found');
  });

  test('service file errors name the file and line', () => {
    writeFileSync(path.join(home, '.pg_service.conf'), '[shop]\nhost=db1\nbogus=1\n');
    expect(usageError(() => resolveParams({ service: 'shop' }, env())).message).toBe(
      `service file "${path.join(home, '.pg_service.conf')}", line 3: invalid connection option "bogus"`,
    );
  });

  test('defaults: port 5432, the database named like the user, sslmode prefer, ~/.pgpass', () => {
    expect(resolveParams({ host: 'h', user: 'u' }, env())).toMatchObject({
      port: '5432',
      dbname: 'u',
      sslmode: 'prefer',
      passfile: path.join(home, '.pgpass'),
    });
    expect(usageError(() => resolveParams({ sslmode: 'required' }, env())).message).toBe('invalid sslmode "required"');
    expect(usageError(() => resolveParams({ port: 'x' }, env())).message).toBe('invalid port number "x" in the connection settings');
  });

  test('pg_dump and pg_restore get the resolved settings as variables', () => {
    writeFileSync(path.join(home, '.pg_service.conf'), '[shop]\nhost=db1\nport=5433\npassword=fromservice\n');
    const { config } = connectionEndpoint('service=shop dbname=shop sslmode=disable', { env: env({ PGUSER: 'pitr' }) });
    expect(config.libpq?.env).toMatchObject({
      PGHOST: 'db1',
      PGPORT: '5433',
      PGDATABASE: 'shop',
      PGUSER: 'pitr',
      PGSSLMODE: 'disable',
      PGPASSWORD: 'fromservice',
    });
    expect(config.ssl).toBe(false);
  });
});

describe('sslmode to TLS options', () => {
  test('require and prefer encrypt without checking; verify-ca checks the chain only; a Unix socket never uses SSL', () => {
    expect(connectionEndpoint('host=h sslmode=require', { env: env() }).config.ssl).toEqual({ rejectUnauthorized: false });
    expect(connectionEndpoint('host=h', { env: env() }).config.libpq?.negotiation).toEqual({ trySsl: true });
    expect(connectionEndpoint('host=h sslmode=allow', { env: env() }).config.libpq?.negotiation).toEqual({ trySsl: false });
    expect(connectionEndpoint('host=/tmp sslmode=require', { env: env() }).config.ssl).toBe(false);
    const ca = path.join(home, 'ca.crt');
    writeFileSync(ca, 'not checked here');
    const verifyCa = connectionEndpoint(`host=h sslmode=verify-ca sslrootcert=${ca}`, { env: env() }).config.ssl as Record<string, unknown>;
    expect(verifyCa.rejectUnauthorized).toBe(true);
    expect(typeof verifyCa.checkServerIdentity).toBe('function');
    const verifyFull = connectionEndpoint(`host=h sslmode=verify-full sslrootcert=${ca}`, { env: env() }).config.ssl as Record<string, unknown>;
    expect(verifyFull.checkServerIdentity).toBeUndefined();
  });

  test('require with ~/.postgresql/root.crt present checks the chain, as libpq', () => {
    mkdirSync(path.join(home, '.postgresql'));
    writeFileSync(path.join(home, '.postgresql', 'root.crt'), 'x');
    const ssl = connectionEndpoint('host=h sslmode=require', { env: env() }).config.ssl as Record<string, unknown>;
    expect(ssl.rejectUnauthorized).toBe(true);
  });
});

describe('the password file', () => {
  test('first matching line, "*" and escapes; a socket matches localhost; a file others may read is not used', () => {
    const file = path.join(home, '.pgpass');
    writeFileSync(file, '# comment\nother:*:*:*:no\nlocalhost:5432:shop:pitr:sock\\:et\ndb1:*:*:pitr:a\\\\b:c\n*:*:*:*:any\n', { mode: 0o600 });
    chmodSync(file, 0o600);
    expect(lookupPassword(file, { host: 'db1', port: '5433', dbname: 'x', user: 'pitr' })).toEqual({ password: 'a\\b:c' });
    expect(lookupPassword(file, { host: '/var/run/postgresql', port: '5432', dbname: 'shop', user: 'pitr' })).toEqual({ password: 'sock:et' });
    expect(lookupPassword(file, { host: 'db2', port: '1', dbname: 'y', user: 'z' })).toEqual({ password: 'any' });
    chmodSync(file, 0o644);
    expect(lookupPassword(file, { host: 'db1', port: '5433', dbname: 'x', user: 'pitr' })).toEqual({
      ignored: `password file "${file}" has group or world access and is not used (chmod 0600 ${file})`,
    });
    expect(lookupPassword(path.join(home, 'none'), { host: 'h', port: '1', dbname: 'd', user: 'u' })).toEqual({});
  });
});

test('a password on the command line gives one warning naming the flags', () => {
  expect(passwordOnCommandLineWarning([{ flag: '--source', value: 'postgresql://u@h/d' }])).toBeUndefined();
  expect(passwordOnCommandLineWarning([{ flag: '--source', value: 'host=h user=u' }])).toBeUndefined();
  expect(
    passwordOnCommandLineWarning([
      { flag: '--source', value: 'postgresql://u:pw@h/d' },
      { flag: '--target', value: 'host=h password=pw' },
    ]),
  ).toBe('a password in --source and --target is visible to every local user (ps); leave it out and use PGPASSWORD, PGPASSFILE or ~/.pgpass');
  expect(passwordOnCommandLineWarning([{ flag: '--source', value: 'postgres://u:p@ss#w@h/d' }])).toMatch(/^a password in --source/);
});
