import { PitrError } from '../errors';

export interface ListenAddress {
  host: string;
  port: number;
  /** host:port as given back in messages, IPv6 hosts in brackets. */
  display: string;
}

/** Where a bare port listens: this machine only. Other interfaces only when asked for by name. */
export const DEFAULT_LISTEN_HOST = '127.0.0.1';

/**
 * `--listen` value: HOST:PORT, [IPv6]:PORT, :PORT or PORT. Without a host the endpoint binds to the
 * loopback interface only, so metrics and status never reach the network unless an address says so
 * (0.0.0.0:9187 for every interface). Port 0 takes any free port (the log says which).
 */
export function parseListenAddress(text: string, command: string): ListenAddress {
  const bad = (why: string): never => {
    throw new PitrError(
      'Usage',
      `${command}: invalid --listen ${JSON.stringify(text)}: ${why}`,
      'e.g. --listen 127.0.0.1:9187, or --listen 0.0.0.0:9187 for every interface',
    );
  };
  const trimmed = text.trim();
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]*)):(\d+)$/.exec(trimmed) ?? /^()()(\d+)$/.exec(trimmed);
  if (!match) return bad('expected HOST:PORT');
  const host = match[1] || match[2] || DEFAULT_LISTEN_HOST;
  const port = Number(match[3]);
  if (!Number.isInteger(port) || port > 65535) return bad('the port must be between 0 and 65535');
  if (/\s/.test(host)) return bad('the host has spaces');
  return { host, port, display: host.includes(':') ? `[${host}]:${port}` : `${host}:${port}` };
}
