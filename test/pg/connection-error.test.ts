import { connectionError } from '../../src/pg/connect';
import { switchSslAfter, type PgConnectConfig } from '../../src/pg/pg-connect-config';
import { PitrError } from '../../src/errors';

function config(sslmode: 'prefer' | 'allow' | 'require', trySsl?: boolean): PgConnectConfig {
  return { libpq: { sslmode, user: 'app', env: {}, ...(trySsl === undefined ? {} : { negotiation: { trySsl } }) } };
}

test('a role without REPLICATION is the source not fit for archiving (exit 3), with the ALTER ROLE hint', () => {
  const error = connectionError(
    { code: '42501', message: 'must be superuser or replication role to start walsender' },
    'postgresql://app@db1/shop',
    config('require'),
  );
  expect(error.exitCode).toBe(3);
  expect(error.message).toBe('role "app" may not start a replication connection on postgresql://app@db1/shop');
  expect(error.hint).toBe('ALTER ROLE app REPLICATION (as a superuser), and allow "replication" connections for it in pg_hba.conf');
});

test('TLS refusals: one line each, exit 4', () => {
  const untrusted = connectionError({ code: 'DEPTH_ZERO_SELF_SIGNED_CERT', message: 'self-signed certificate' }, 'D', config('require'));
  expect([untrusted.exitCode, untrusted.message]).toEqual([4, "cannot connect to D: the server's certificate is not trusted (self-signed certificate)"]);
  const noSsl = connectionError(new Error('The server does not support SSL connections'), 'D', config('require'));
  expect(noSsl.message).toBe('cannot connect to D: the server does not accept SSL connections (sslmode=require)');
  const given = new PitrError('Connection', 'cannot connect to D: the server asks for a password for role "app" and none is set');
  expect(connectionError(given, 'D')).toBe(given);
});

test('prefer goes without SSL when the server has none, allow with SSL when the server wants it; other failures change nothing', () => {
  const prefer = config('prefer', true);
  expect(switchSslAfter(prefer, { code: '28P01', message: 'password authentication failed' })).toBe(false);
  expect(switchSslAfter(prefer, new Error('The server does not support SSL connections'))).toBe(true);
  expect(prefer.libpq?.negotiation).toEqual({ trySsl: false });
  const allow = config('allow', false);
  expect(switchSslAfter(allow, { code: '28000', message: 'no pg_hba.conf entry for host "10.0.0.1", user "app", database "shop", no encryption' })).toBe(true);
  expect(allow.libpq?.negotiation).toEqual({ trySsl: true });
  expect(switchSslAfter(config('require'), new Error('The server does not support SSL connections'))).toBe(false);
});
