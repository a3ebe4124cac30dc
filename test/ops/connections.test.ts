import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { PgCluster } from '../harness/pg-cluster';
import { PitrProcess, runPitr, type RunResult } from '../harness/pitr-process';
import { pollUntil } from '../harness/poll-until';

/**
 * Connections as a DBA gives them to psql: keyword/value strings, services, the password file, PG*
 * variables, sslmode. One cluster with SSL (a self-signed certificate made here) and a password, one
 * without SSL.
 */

const PASSWORD = 'sekret';
let ssl: PgCluster;
let plain: PgCluster;
let work: string;
let certFile: string;
let repo: string;

/** HOME and every libpq variable pointed away from the machine's own files, per test. */
function isolatedEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const home = mkdtempSync(path.join(work, 'home-'));
  const env: NodeJS.ProcessEnv = { HOME: home, PGSYSCONFDIR: path.join(home, 'no-sysconf'), PITR_SOURCE: '', PITR_LOG_LEVEL: 'warn' };
  for (const name of [
    'PGHOST',
    'PGPORT',
    'PGUSER',
    'PGPASSWORD',
    'PGDATABASE',
    'PGSERVICE',
    'PGSERVICEFILE',
    'PGPASSFILE',
    'PGSSLMODE',
    'PGSSLROOTCERT',
    'PGAPPNAME',
  ])
    env[name] = '';
  return { ...env, ...extra };
}

function conninfo(cluster: PgCluster, extra = ''): string {
  return `host=127.0.0.1 port=${cluster.port} dbname=postgres user=postgres ${extra}`.trim();
}

/** No Node warning of any kind reached stderr. */
function expectNoRuntimeWarnings(result: { stderr: string }): void {
  expect(result.stderr).not.toMatch(/DeprecationWarning|Warning:|\(node:\d+\)|SECURITY WARNING/);
}

/** The human error of a failed command: exactly one error line and one hint line. */
function errorLines(result: RunResult): { error: string; hint: string } {
  const lines = result.stderr.split('\n').filter((line) => line !== '' && !line.startsWith('{'));
  expect(lines).toHaveLength(2);
  expect(lines[0]).toMatch(/^pitr: error: /);
  expect(lines[1]).toMatch(/^hint: /);
  return { error: lines[0] as string, hint: lines[1] as string };
}

async function status(env: NodeJS.ProcessEnv, args: string[] = []): Promise<RunResult> {
  return runPitr(['status', '--repo', repo, '--json', ...args], env);
}

/** `pitr init` again (idempotent): exits 0 once connected, 4 when it cannot connect (status would report "broken" instead). */
async function connect(env: NodeJS.ProcessEnv, args: string[] = []): Promise<RunResult> {
  // --repo repeated names several repositories: the default one only when the test names none
  return runPitr(['init', ...(args.includes('--repo') ? [] : ['--repo', repo]), ...args], env);
}

/** Whether the walsender of `applicationName` uses SSL (pg_stat_ssl), once it is there. */
async function walsenderSsl(cluster: PgCluster, applicationName: string): Promise<boolean> {
  const rows = await pollUntil(
    () =>
      cluster.query<{ ssl: boolean }>(
        "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = $1 AND a.backend_type = 'walsender'",
        [applicationName],
      ),
    (found) => found.length > 0,
    `the walsender of ${applicationName}`,
  );
  return (rows[0] as { ssl: boolean }).ssl;
}

/** A self-signed server certificate (openssl) naming `subjectAltName`, its key readable by the server only. */
function makeCertificate(name: string, subjectAltName: string): { certFile: string; keyFile: string } {
  const dir = path.join(work, name);
  mkdirSync(dir, { mode: 0o755 });
  const cert = path.join(dir, 'server.crt');
  const key = path.join(dir, 'server.key');
  execFileSync(
    'openssl',
    ['req', '-new', '-x509', '-days', '2', '-nodes', '-subj', '/CN=pitr-test', '-addext', `subjectAltName=${subjectAltName}`, '-keyout', key, '-out', cert],
    { stdio: 'ignore' },
  );
  chmodSync(key, 0o600);
  chmodSync(cert, 0o644);
  if (process.getuid?.() === 0) chownSync(key, Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim()), -1);
  return { certFile: cert, keyFile: key };
}

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'pitr-conn-'));
  chmodSync(work, 0o755);
  let keyFile: string;
  ({ certFile, keyFile } = makeCertificate('server-cert', 'DNS:localhost'));
  [ssl, plain] = await Promise.all([
    PgCluster.start({ password: PASSWORD, settings: { ssl: 'on', ssl_cert_file: `'${certFile}'`, ssl_key_file: `'${keyFile}'` } }),
    PgCluster.start({ password: PASSWORD }),
  ]);
  await ssl.psql(`CREATE ROLE plain LOGIN PASSWORD 'plainpw'; CREATE TABLE t (id int PRIMARY KEY)`);
  repo = path.join(work, 'repo');
});

afterAll(async () => {
  await Promise.all([ssl?.destroy(), plain?.destroy()]);
  rmSync(work, { recursive: true, force: true });
});

describe('the keyword/value form', () => {
  test('init, archive and status take host=... port=... dbname=... user=..., with the password from PGPASSWORD', async () => {
    const env = isolatedEnv({ PGPASSWORD: PASSWORD });
    const source = conninfo(ssl, "application_name='conninfo archive'");
    const init = await runPitr(['init', '--source', source, '--repo', repo], env);
    expect(init.stderr).toBe('');
    expect(init.code).toBe(0);
    expect(init.stdout).toContain(`source postgresql://postgres@127.0.0.1:${ssl.port}/postgres`);
    const archiver = new PitrProcess(['archive', '--source', source, '--repo', repo, '--log-level', 'info'], env);
    try {
      await archiver.waitForState('streaming');
      // sslmode prefer (the default) on a server with SSL: encrypted
      expect(await walsenderSsl(ssl, 'conninfo archive')).toBe(true);
      const result = await status(env, ['--source', source]);
      expectNoRuntimeWarnings(result);
      expect(JSON.parse(result.stdout)).toMatchObject({ archiver: 'running' });
    } finally {
      expect(await archiver.stop()).toBe(0);
    }
    expectNoRuntimeWarnings(archiver);
  });

  test('quoted values with spaces and escaped quotes reach the server as written', async () => {
    const env = isolatedEnv({ PGPASSWORD: PASSWORD });
    const result = await connect(env, ['--source', conninfo(ssl, "application_name = 'it\\'s a probe'")]);
    expectNoRuntimeWarnings(result);
    expect(result.code).toBe(0);
  });
});

describe('services, environment and the password file', () => {
  test('PGSERVICE with ~/.pg_service.conf: the service wins over PG* variables, explicit keywords over the service', async () => {
    const env = isolatedEnv({ PGPASSWORD: PASSWORD, PGSERVICE: 'shop', PGPORT: '1', PGHOST: 'nowhere.invalid' });
    writeFileSync(
      path.join(env.HOME as string, '.pg_service.conf'),
      `# test\n[other]\nport=2\n\n[shop]\nhost=127.0.0.1\nport=${ssl.port}\ndbname=postgres\nuser=postgres\n`,
    );
    const viaEnv = await connect(env);
    expectNoRuntimeWarnings(viaEnv);
    expect(viaEnv.stdout).toContain(`source postgresql://postgres@127.0.0.1:${ssl.port}/postgres`);
    expect(viaEnv.code).toBe(0);
    // service= in the source, and an explicit port over the service's (nothing listens on port 1)
    const explicitPort = await connect(env, ['--source', 'service=shop port=1']);
    expect(explicitPort.code).toBe(4);
    expect(errorLines(explicitPort).error).toBe(`pitr: error: cannot connect to postgresql://postgres@127.0.0.1:1/postgres: connection refused`);
  });

  test('PGSERVICEFILE names the file; a service defined nowhere is one clear line', async () => {
    const env = isolatedEnv({ PGPASSWORD: PASSWORD });
    const file = path.join(env.HOME as string, 'services.conf');
    writeFileSync(file, `[shop]\nhost=127.0.0.1\nport=${ssl.port}\ndbname=postgres\nuser=postgres\n`);
    const found = await connect({ ...env, PGSERVICEFILE: file }, ['--source', 'service=shop']);
    expect(found.code).toBe(0);
    const missing = await connect(env, ['--source', 'service=nosuch']);
    expect(missing.code).toBe(2);
    expect(errorLines(missing).error).toBe('pitr: error: definition of service "nosuch" not found');
  });

  test('a password from ~/.pgpass, without a deprecation warning; one others may read is not used, and the hint says so', async () => {
    const env = isolatedEnv();
    const pgpass = path.join(env.HOME as string, '.pgpass');
    writeFileSync(pgpass, `# host:port:db:user:password\n127.0.0.1:${ssl.port}:*:postgres:${PASSWORD}\n`, { mode: 0o600 });
    chmodSync(pgpass, 0o600);
    const ok = await connect(env, ['--source', conninfo(ssl)]);
    expectNoRuntimeWarnings(ok);
    expect(ok.code).toBe(0);
    chmodSync(pgpass, 0o644);
    const open = await connect(env, ['--source', conninfo(ssl)]);
    expect(open.code).toBe(4);
    expect(errorLines(open).hint).toContain(`chmod 0600 ${pgpass}`);
  });

  test('no password anywhere: one line with the hint, exit 4', async () => {
    const result = await runPitr(['init', '--source', conninfo(ssl), '--repo', repo], isolatedEnv());
    expect(result.code).toBe(4);
    expectNoRuntimeWarnings(result);
    expect(result.stderr).not.toContain('SASL');
    const { error, hint } = errorLines(result);
    expect(error).toBe(
      `pitr: error: cannot connect to postgresql://postgres@127.0.0.1:${ssl.port}/postgres: the server asks for a password for role "postgres" and none is set`,
    );
    expect(hint).toMatch(
      /set PGPASSWORD, add a line 127\.0\.0\.1:\d+:postgres:postgres:PASSWORD to .*\.pgpass \(mode 0600\), or set password= in the service file/,
    );
  });
});

test('backup and a drill: the source from PGSERVICE, the target as keyword/value pairs, passwords from ~/.pgpass (pg_dump and pg_restore too)', async () => {
  const env = isolatedEnv({ PGSERVICE: 'src', PGPORT: '1' });
  const home = env.HOME as string;
  writeFileSync(path.join(home, '.pg_service.conf'), `[src]\nhost=127.0.0.1\nport=${ssl.port}\ndbname=postgres\nuser=postgres\n`);
  writeFileSync(path.join(home, '.pgpass'), `127.0.0.1:${ssl.port}:*:postgres:${PASSWORD}\n`, { mode: 0o600 });
  chmodSync(path.join(home, '.pgpass'), 0o600);
  const archiver = new PitrProcess(['archive', '--repo', repo, '--log-level', 'info'], env);
  try {
    await archiver.waitForState('streaming');
    await ssl.psql('INSERT INTO t SELECT generate_series(1, 100)');
    const backup = await runPitr(['backup', '--repo', repo], env);
    expect(backup.stderr).toBe('');
    expect(backup.code).toBe(0);
    const drill = await runPitr(['drill', '--repo', repo, '--target', `host=127.0.0.1 port=${ssl.port} dbname=pitr_drill user=postgres`], env);
    expect(drill.stderr).toBe('');
    expect(drill.code).toBe(0);
    expect(drill.stdout).toContain(`drill into host=127.0.0.1 port=${ssl.port} dbname=pitr_drill user=postgres: backup`);
    expect(drill.stdout).toContain('ok       public.t  expected 100, restored 100');
  } finally {
    expect(await archiver.stop()).toBe(0);
  }
  expectNoRuntimeWarnings(archiver);
});

describe('passwords on the command line', () => {
  test('a password in --source works, with one warning line recommending PGPASSWORD, PGPASSFILE or ~/.pgpass', async () => {
    const result = await connect(isolatedEnv(), ['--source', ssl.url('postgres')]);
    expect(result.code).toBe(0);
    const warnings = result.stderr.split('\n').filter((line) => line.startsWith('pitr: warning:'));
    expect(warnings).toEqual([
      'pitr: warning: a password in --source is visible to every local user (ps); leave it out and use PGPASSWORD, PGPASSFILE or ~/.pgpass',
    ]);
    expectNoRuntimeWarnings(result);
    // from the environment (PITR_SOURCE) it is not on the command line: no warning
    const fromEnv = await connect(isolatedEnv({ PITR_SOURCE: ssl.url('postgres') }));
    expect(fromEnv.stderr).not.toContain('pitr: warning:');
  });

  test('an unencoded p@ss#word is refused and never shown, whole or in part', async () => {
    for (const source of [`postgresql://postgres:p@ss#word@127.0.0.1:${ssl.port}/postgres`, `${conninfo(ssl)} password='p@ss#word`]) {
      const result = await connect(isolatedEnv(), ['--source', source]);
      expect(result.code).toBe(2);
      expect(result.stderr + result.stdout).not.toMatch(/p@ss|ss#word|#word/);
      expectNoRuntimeWarnings(result);
    }
  });
});

describe('sslmode', () => {
  async function archiveOnce(source: string, applicationName: string, env: NodeJS.ProcessEnv): Promise<boolean> {
    const archiver = new PitrProcess(['archive', '--source', `${source} application_name=${applicationName}`, '--repo', repo, '--log-level', 'info'], env);
    try {
      await archiver.waitForState('streaming');
      return await walsenderSsl(ssl, applicationName);
    } finally {
      await archiver.stop();
      expectNoRuntimeWarnings(archiver);
    }
  }

  test('require encrypts without checking the certificate; disable connects without SSL (pg_stat_ssl)', async () => {
    const env = isolatedEnv({ PGPASSWORD: PASSWORD });
    expect(await archiveOnce(conninfo(ssl, 'sslmode=require'), 'ssl_require', env)).toBe(true);
    expect(await archiveOnce(conninfo(ssl, 'sslmode=disable'), 'ssl_disable', env)).toBe(false);
  });

  test('verify-ca takes the chain from sslrootcert; verify-full also checks the host name, failing with one line', async () => {
    const env = isolatedEnv({ PGPASSWORD: PASSWORD });
    const verifyCa = await connect(env, ['--source', conninfo(ssl, `sslmode=verify-ca sslrootcert=${certFile}`)]);
    expectNoRuntimeWarnings(verifyCa);
    expect(verifyCa.code).toBe(0);
    // the certificate names localhost, not 127.0.0.1
    const wrongName = await connect(env, ['--source', conninfo(ssl, `sslmode=verify-full sslrootcert=${certFile}`)]);
    expect(wrongName.code).toBe(4);
    expect(errorLines(wrongName).error).toMatch(/^pitr: error: cannot connect to .*: the server's certificate does not name this host/);
    // without a root certificate there is nothing to check against
    const noRoot = await connect(env, ['--source', `${conninfo(ssl)} sslmode=verify-full`]);
    expect(noRoot.code).toBe(4);
    expect(errorLines(noRoot).error).toMatch(/^pitr: error: root certificate file ".*\/\.postgresql\/root\.crt" does not exist/);
    // a URL's sslmode=require: no warning from the driver, encrypted
    const url = await connect(env, ['--source', `postgresql://postgres@127.0.0.1:${ssl.port}/postgres?sslmode=require`]);
    expectNoRuntimeWarnings(url);
    expect(url.code).toBe(0);
  });

  test('a server that takes only SSL connections (hostssl): allow and prefer connect, disable fails naming pg_hba.conf', async () => {
    const hba = path.join(ssl.dataDir, 'pg_hba.conf');
    /** Whether the server (its pg_hba.conf as loaded now) takes a connection without SSL. */
    const plainConnects = async (): Promise<boolean> => {
      const client = new Client({ host: '127.0.0.1', port: ssl.port, user: 'postgres', password: PASSWORD, database: 'postgres', ssl: false });
      try {
        await client.connect();
        return true;
      } catch {
        return false;
      } finally {
        await client.end().catch(() => undefined);
      }
    };
    const original = readFileSync(hba, 'utf8');
    // this session stays open (over SSL) to put the file back
    const admin = new Client({
      host: '127.0.0.1',
      port: ssl.port,
      user: 'postgres',
      password: PASSWORD,
      database: 'postgres',
      ssl: { rejectUnauthorized: false },
    });
    await admin.connect();
    try {
      writeFileSync(hba, 'local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostssl replication all 127.0.0.1/32 scram-sha-256\n');
      await admin.query('SELECT pg_reload_conf()');
      await pollUntil(plainConnects, (accepted) => !accepted, 'the server refusing connections without SSL');
      const env = isolatedEnv({ PGPASSWORD: PASSWORD });
      for (const mode of ['allow', 'prefer']) {
        const result = await connect(env, ['--source', conninfo(ssl, `sslmode=${mode}`)]);
        expectNoRuntimeWarnings(result);
        expect(result.code).toBe(0);
      }
      const disabled = await connect(env, ['--source', conninfo(ssl, 'sslmode=disable')]);
      expect(disabled.code).toBe(4);
      const { error, hint } = errorLines(disabled);
      expect(error).toMatch(
        /^pitr: error: cannot connect to .*: no pg_hba\.conf entry for host "127\.0\.0\.1", user "postgres", database "postgres", no encryption$/,
      );
      expect(hint).toContain('pg_hba.conf');
    } finally {
      writeFileSync(hba, original);
      await admin.query('SELECT pg_reload_conf()');
      await pollUntil(plainConnects, (accepted) => accepted, 'the server taking connections without SSL again');
      await admin.end();
    }
  });

  test('a server without SSL: prefer and allow connect, require fails with one line', async () => {
    const env = isolatedEnv({ PGPASSWORD: PASSWORD });
    for (const mode of ['prefer', 'allow', 'disable']) {
      const result = await runPitr(['init', '--source', conninfo(plain, `sslmode=${mode}`), '--repo', path.join(work, `plain-${mode}`)], env);
      expectNoRuntimeWarnings(result);
      expect(result.code).toBe(0);
    }
    const required = await runPitr(['init', '--source', conninfo(plain, 'sslmode=require'), '--repo', path.join(work, 'plain-require')], env);
    expect(required.code).toBe(4);
    expect(errorLines(required).error).toBe(
      `pitr: error: cannot connect to postgresql://postgres@127.0.0.1:${plain.port}/postgres: the server does not accept SSL connections (sslmode=require)`,
    );
  });

  test('verify-full connects when the certificate names the host (SSL turned on with a reload)', async () => {
    const named = makeCertificate('ip-cert', 'IP:127.0.0.1');
    for (const setting of [`ssl_cert_file = '${named.certFile}'`, `ssl_key_file = '${named.keyFile}'`, 'ssl = on'])
      await plain.query(`ALTER SYSTEM SET ${setting}`);
    await plain.query('SELECT pg_reload_conf()');
    await pollUntil(
      async () => (await plain.query<{ ssl: string }>('SHOW ssl'))[0]?.ssl,
      (value) => value === 'on',
      'ssl on after the reload',
    );
    const env = isolatedEnv({ PGPASSWORD: PASSWORD });
    const result = await connect(env, [
      '--source',
      conninfo(plain, `sslmode=verify-full sslrootcert=${named.certFile}`),
      '--repo',
      path.join(work, 'plain-verify-full'),
    ]);
    expectNoRuntimeWarnings(result);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    // the certificate ssl (the other server) has is not this one's: the chain does not verify
    const otherRoot = await connect(env, [
      '--source',
      conninfo(plain, `sslmode=verify-ca sslrootcert=${certFile}`),
      '--repo',
      path.join(work, 'plain-verify-full'),
    ]);
    expect(otherRoot.code).toBe(4);
    expect(errorLines(otherRoot).error).toMatch(/^pitr: error: cannot connect to .*: the server's certificate is not trusted \(/);
  });
});

test('a role without REPLICATION: one line naming the role with the ALTER ROLE hint, exit 3', async () => {
  const result = await runPitr(
    ['archive', '--source', `${conninfo(ssl).replace('user=postgres', 'user=plain')} password=plainpw`, '--repo', repo],
    isolatedEnv(),
  );
  expect(result.code).toBe(3);
  const { error, hint } = errorLines({ ...result, stderr: result.stderr.replace(/^pitr: warning:.*\n/m, '') });
  expect(error).toBe(`pitr: error: role "plain" may not start a replication connection on postgresql://plain@127.0.0.1:${ssl.port}/postgres`);
  expect(hint).toContain('ALTER ROLE plain REPLICATION');
  expectNoRuntimeWarnings(result);
});
