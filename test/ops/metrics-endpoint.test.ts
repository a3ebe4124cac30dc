import type { StatusReport } from '../../src/ops/status';
import { ArchiveFixture } from '../harness/archive-fixture';
import { httpGet } from '../harness/http-get';
import { metricSample as sample } from '../harness/metric-sample';
import { pollUntil } from '../harness/poll-until';
import { PitrProcess, runPitr } from '../harness/pitr-process';
import { TcpProxy } from '../harness/tcp-proxy';
import { WriteLoad } from '../harness/write-load';

/**
 * `pitr archive --listen`: /metrics under load, /healthz through a source outage and through a source
 * that stops answering new sessions, /status against `pitr status --json`, usage errors for bad or
 * busy addresses, and a clean close on SIGTERM. The archiver reaches the source through a TCP proxy.
 */
let fx: ArchiveFixture;
let proxy: TcpProxy;
let archiver: PitrProcess;
let port: number;
let load: WriteLoad | undefined;
let backupId: string;

const metrics = async (): Promise<string> => {
  const answer = await httpGet(port, '/metrics');
  expect(answer.status).toBe(200);
  return answer.body;
};

/** Every key path of a JSON value, with the type found there (null kept apart). */
function shape(value: unknown, path = ''): string[] {
  if (value === null) return [`${path}: null`];
  if (Array.isArray(value)) return [`${path}: array`];
  if (typeof value === 'object') return Object.entries(value as Record<string, unknown>).flatMap(([k, v]) => shape(v, `${path}.${k}`));
  return [`${path}: ${typeof value}`];
}

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.withClient((c) => WriteLoad.setup(c));
  expect((await fx.init()).code).toBe(0);
  proxy = await TcpProxy.start(fx.cluster.port);
  const viaProxy = fx.source.replace(`:${fx.cluster.port}/`, `:${proxy.port}/`);
  archiver = new PitrProcess(
    fx.archiveArgs(['--listen', '127.0.0.1:0']).map((a) => (a === fx.source ? viaProxy : a)),
    {},
  );
  const listening = await archiver.waitFor((l) => l.event === 'listening');
  port = listening.port as number;
  expect(listening.address).toBe(`127.0.0.1:${port}`);
  await archiver.waitForState('streaming');
  const backup = await runPitr(['backup', '--source', fx.source, '--repo', fx.repoDir, '--json', '--log-level', 'warn']);
  expect(backup.code).toBe(0);
  backupId = (JSON.parse(backup.stdout) as { id: string }).id;
});
afterAll(async () => {
  await load?.stop();
  if (archiver.child.exitCode === null) await archiver.stop();
  await proxy.close();
  await fx.destroy();
});

test('a bad --listen value or a busy port is one usage error (exit 2), and the running archiver is untouched', async () => {
  const bad = await runPitr(['archive', '--source', fx.source, '--repo', fx.repoDir, '--listen', 'nowhere']);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toMatch(/^pitr: error: archive: invalid --listen "nowhere": expected HOST:PORT\nhint: /);

  const busy = await runPitr(['archive', '--source', fx.source, '--repo', fx.repoDir, '--listen', `127.0.0.1:${port}`]);
  expect(busy.code).toBe(2);
  expect(busy.stderr.split('\n')).toEqual([
    `pitr: error: archive: cannot listen on 127.0.0.1:${port}: address already in use`,
    'hint: another process (perhaps another "pitr archive") listens there; stop it or give --listen another port',
    '',
  ]);
  // a bare port means loopback only
  const barePort = await runPitr(['archive', '--source', fx.source, '--repo', fx.repoDir, '--listen', String(port)]);
  expect(barePort.code).toBe(2);
  expect(barePort.stderr).toContain(`cannot listen on 127.0.0.1:${port}: address already in use`);

  expect(archiver.child.exitCode).toBeNull();
  expect((await httpGet(port, '/nowhere')).status).toBe(404);
});

test('/metrics: counters, histogram and gauges move under write load', async () => {
  const before = await metrics();
  for (const name of ['pitr_archived_segments_total', 'pitr_archived_transactions_total', 'pitr_archived_bytes_total', 'pitr_segment_upload_seconds_count'])
    expect(sample(before, name)).toEqual(expect.any(Number));
  const segmentsBefore = sample(before, 'pitr_archived_segments_total') as number;
  const transactionsBefore = sample(before, 'pitr_archived_transactions_total') as number;

  load = new WriteLoad(fx.source).start();
  // the gauges from the status check are refreshed at most every 5 s: the window grows past 0 within that
  const during = await pollUntil(
    metrics,
    (m) => (sample(m, 'pitr_archived_segments_total') ?? 0) >= segmentsBefore + 3 && (sample(m, 'pitr_recoverable_window_seconds') ?? 0) > 0,
    'three more segments stored and a recoverable window past the backup',
  );
  expect(sample(during, 'pitr_archived_transactions_total')).toBeGreaterThan(transactionsBefore);
  expect(sample(during, 'pitr_archived_bytes_total')).toBeGreaterThan(sample(before, 'pitr_archived_bytes_total') as number);
  // one upload observed per stored segment
  expect(sample(during, 'pitr_segment_upload_seconds_count')).toBe(sample(during, 'pitr_archived_segments_total'));
  expect(sample(during, 'pitr_segment_upload_seconds_bucket', 'le="+Inf"')).toBe(sample(during, 'pitr_archived_segments_total'));
  expect(sample(during, 'pitr_segment_upload_seconds_sum')).toBeGreaterThan(0);
  const rpo = sample(during, 'pitr_rpo_seconds');
  expect(rpo).toEqual(expect.any(Number));
  expect(rpo).toBeLessThan(30);
  expect(sample(during, 'pitr_slot_lag_bytes', 'slot="pitr"')).toEqual(expect.any(Number));
  expect(sample(during, 'pitr_slot_lag_bytes', 'slot="pitr"')).toBeLessThan(256 * 1024 * 1024);
  expect(sample(during, 'pitr_last_backup_age_seconds')).toEqual(expect.any(Number));
  expect(sample(during, 'pitr_last_backup_age_seconds')).toBeLessThan(600);
  expect(sample(during, 'pitr_recoverable_window_seconds')).toBeGreaterThan(0);
  expect(sample(during, 'pitr_archiver_state', 'state="streaming"')).toBe(1);
  expect(sample(during, 'pitr_archiver_state', 'state="backoff"')).toBe(0);
  expect(sample(during, 'pitr_health')).toBe(0);
  for (const kind of ['upload', 'connection', 'heartbeat', 'backup', 'prune', 'status']) expect(sample(during, 'pitr_errors_total', `kind="${kind}"`)).toBe(0);
  expect(during).toMatch(/^# TYPE pitr_segment_upload_seconds histogram$/m);
  expect(during).toMatch(/^process_resident_memory_bytes \d+/m);
  expect((await httpGet(port, '/metrics')).contentType).toBe('text/plain; version=0.0.4; charset=utf-8');

  // the recoverable window keeps growing with the archive
  const later = await pollUntil(
    metrics,
    (m) => (sample(m, 'pitr_recoverable_window_seconds') ?? 0) > (sample(during, 'pitr_recoverable_window_seconds') as number),
    'a longer window',
  );
  expect(sample(later, 'pitr_archived_segments_total')).toBeGreaterThan(sample(during, 'pitr_archived_segments_total') as number);
  await load.stop();
  load = undefined;
});

test('/status is the document of pitr status --json', async () => {
  const answer = await httpGet(port, '/status');
  expect(answer.status).toBe(200);
  expect(answer.contentType).toBe('application/json');
  const served = JSON.parse(answer.body) as StatusReport;
  const cli = await runPitr(['status', '--source', fx.source, '--repo', fx.repoDir, '--json']);
  expect(cli.code).toBe(0);
  const printed = JSON.parse(cli.stdout) as StatusReport;
  expect(shape(served)).toEqual(shape(printed));
  expect(served).toMatchObject({ health: 'healthy', reasons: [], archiver: 'running', backup: { id: backupId } });
  expect({ ...served.slot, lagBytes: 0, confirmedFlushLsn: '' }).toEqual({ ...printed.slot, lagBytes: 0, confirmedFlushLsn: '' });
  expect(served.window.earliest).toEqual(printed.window.earliest);
  expect(served.backup?.id).toBe(printed.backup?.id);
});

test('/healthz: 200 "ok", then 503 with the reason while the source is down, 200 again once it is back', async () => {
  const ok = await httpGet(port, '/healthz');
  expect(ok).toMatchObject({ status: 200, body: 'ok\n' });

  await fx.cluster.stopServer('fast');
  const down = await pollUntil(
    () => httpGet(port, '/healthz'),
    (a) => a.status === 503,
    '/healthz 503',
  );
  expect(down.body).toMatch(/^broken: source unreachable: cannot connect to postgresql:\/\/postgres@127\.0\.0\.1:\d+\/postgres: /);
  expect(down.body.trim().split('\n')).toHaveLength(1);
  const outage = await pollUntil(metrics, (m) => sample(m, 'pitr_archiver_state', 'state="backoff"') === 1, 'archiver in backoff');
  expect(sample(outage, 'pitr_errors_total', 'kind="connection"')).toBeGreaterThanOrEqual(1);
  expect(sample(outage, 'pitr_health')).toBe(2);
  // facts the repository still holds stay visible; the source's are unknown, so left out
  expect(sample(outage, 'pitr_rpo_seconds')).toBeGreaterThanOrEqual(0);
  expect(sample(outage, 'pitr_slot_lag_bytes', 'slot="pitr"')).toBeUndefined();

  await fx.cluster.startServer();
  await pollUntil(
    () => httpGet(port, '/healthz'),
    (a) => a.status === 200,
    '/healthz 200 again',
    60_000,
  );
  await pollUntil(metrics, (m) => sample(m, 'pitr_archiver_state', 'state="streaming"') === 1, 'archiver streaming again', 60_000);
});

test('a source that stops answering new sessions: the status check times out and says so, the archiver streams on', async () => {
  load = new WriteLoad(fx.source).start(); // straight to PostgreSQL, not through the proxy
  proxy.holdNewConnections = true; // the archiver's sessions are established: they keep flowing
  try {
    const stuck = await pollUntil(
      () => httpGet(port, '/healthz'),
      (a) => a.status === 503,
      '/healthz 503',
    );
    expect(stuck.body).toMatch(/^broken: source unreachable: cannot connect to .*: timed out/);
    const before = sample(await metrics(), 'pitr_archived_segments_total') as number;
    const after = await pollUntil(metrics, (m) => (sample(m, 'pitr_archived_segments_total') ?? 0) > before + 2, 'segments stored meanwhile');
    expect(sample(after, 'pitr_archiver_state', 'state="streaming"')).toBe(1);
    expect(sample(after, 'pitr_health')).toBe(2);
  } finally {
    proxy.release();
    await load.stop();
    load = undefined;
  }
  await pollUntil(
    () => httpGet(port, '/healthz'),
    (a) => a.status === 200,
    '/healthz 200 once sessions are answered again',
  );
});

test('SIGTERM drains the archiver and closes the endpoint', async () => {
  expect(await archiver.stop('SIGTERM')).toBe(0);
  expect(archiver.lines.some((l) => l.event === 'state' && l.to === 'stopped')).toBe(true);
  await expect(httpGet(port, '/healthz')).rejects.toThrow(/ECONNREFUSED/);
});
