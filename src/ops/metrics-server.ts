import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ListenAddress } from '../config/listen-address';
import { PitrError, messageOf } from '../errors';
import type { Logger } from '../logger';
import { jsonDocument } from './json-document';
import type { ArchiveMetrics } from './archive-metrics';
import type { StatusProbe } from './status-probe';
import type { StatusReport } from './status';

/**
 * The archiver's HTTP endpoint (`pitr archive --listen`), read-only:
 *   GET /metrics  Prometheus text exposition (ArchiveMetrics)
 *   GET /healthz  200 "ok" (healthy or degraded, the reasons on the same line) or 503 "broken: reasons" (or "unknown: reasons" when the check could not be made)
 *   GET /status   the document `pitr status --json` prints
 * Every answer comes from the status probe's cached report, so scrapes never load the source.
 */
export class MetricsServer {
  private constructor(
    private readonly server: Server,
    readonly address: ListenAddress,
  ) {}

  /** Binds, or fails with one usage error naming the address (in use, not on this machine, not allowed). */
  static async listen(address: ListenAddress, metrics: ArchiveMetrics, probe: StatusProbe, log: Logger): Promise<MetricsServer> {
    const server = createServer((req, res) => void answer(req, res, metrics, probe, log));
    server.keepAliveTimeout = 65_000; // longer than Prometheus's idle connections, so scrapes reuse them
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error) => reject(listenError(error, address)));
      server.listen(address.port, address.host, () => resolve());
    });
    const bound = server.address() as AddressInfo;
    const actual = { host: address.host, port: bound.port, display: address.display.replace(/:\d+$/, `:${bound.port}`) };
    log.info(
      { event: 'listening', address: actual.display, host: actual.host, port: actual.port },
      `serving /metrics, /healthz and /status on ${actual.display}`,
    );
    return new MetricsServer(server, actual);
  }

  /** Stops accepting, ends idle keep-alive connections, and waits for requests in progress. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    await closed;
  }
}

function listenError(error: unknown, address: ListenAddress): PitrError {
  const code = (error as { code?: string }).code;
  const at = `cannot listen on ${address.display}`;
  switch (code) {
    case 'EADDRINUSE':
      return new PitrError(
        'Usage',
        `archive: ${at}: address already in use`,
        'another process (perhaps another "pitr archive") listens there; stop it or give --listen another port',
      );
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new PitrError('Usage', `archive: ${at}: no such address on this machine`, 'give --listen an address of this machine, e.g. 127.0.0.1:9187');
    case 'EACCES':
      return new PitrError('Usage', `archive: ${at}: permission denied`, 'ports below 1024 need privileges; use 9187, the usual port');
    default:
      return new PitrError('Usage', `archive: ${at}: ${messageOf(error)}`, 'check the --listen address');
  }
}

const reasonsText = (report: StatusReport): string => report.reasons.map((r) => r.message).join('; ');

function healthLine(report: StatusReport): { status: number; body: string } {
  switch (report.health) {
    case 'healthy':
      return { status: 200, body: 'ok' };
    case 'degraded':
      return { status: 200, body: `ok (degraded: ${reasonsText(report)})` };
    case 'broken':
      return { status: 503, body: `broken: ${reasonsText(report)}` };
    case 'unknown':
      return { status: 503, body: `unknown: ${reasonsText(report)}` };
    default: {
      const never: never = report.health;
      throw new Error(`unknown health ${String(never)}`);
    }
  }
}

async function answer(req: IncomingMessage, res: ServerResponse, metrics: ArchiveMetrics, probe: StatusProbe, log: Logger): Promise<void> {
  const send = (status: number, contentType: string, body: string): void => {
    res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
  const path = new URL(req.url ?? '/', 'http://endpoint').pathname;
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain; charset=utf-8', 'only GET and HEAD\n');
  try {
    switch (path) {
      case '/metrics': {
        const { contentType, body } = await metrics.exposition();
        return send(200, contentType, body);
      }
      case '/healthz': {
        const { status, body } = healthLine(await probe.report());
        return send(status, 'text/plain; charset=utf-8', `${body}\n`);
      }
      case '/status':
        return send(200, 'application/json', jsonDocument(await probe.report()));
      default:
        return send(404, 'text/plain; charset=utf-8', 'not found: try /metrics, /healthz or /status\n');
    }
  } catch (error) {
    log.warn({ event: 'endpoint_failed', path, error: messageOf(error) }, 'endpoint request failed');
    if (!res.headersSent) send(500, 'text/plain; charset=utf-8', `error: ${messageOf(error)}\n`);
    else res.destroy();
  }
}
