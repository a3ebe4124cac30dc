import type { Socket } from 'node:net';
import type { Client } from 'pg';
import { LogicalReplicationService } from 'pg-logical-replication';
import { quoteIdent, quoteLiteral } from '../pg/sql-quote';
import { formatLsn, parseLsn, type Lsn } from '../pg/lsn';
import type { ReplicationSession } from '../pg/replication-session';
import { nowUnixMicros, unixMicrosToPgMicros } from '../pg/pg-time';
import { clientConfigFor, switchSslAfter, type PgConnectConfig } from '../pg/pg-connect-config';
import { DECODING_SESSION_OPTIONS } from '../pg/session-settings';

/**
 * Runs on the replication connection itself, after it is established and before START_REPLICATION: checks
 * who was reached and answers where to start. Throwing stops the session before anything is streamed.
 */
export type PrepareSession = (session: ReplicationSession) => Promise<Lsn>;

/** pgoutput with the raw message bytes handed over untouched (no value conversion, no copies). */
class RawPgoutputPlugin {
  /** The session the library opened for us, handed over when streaming starts. */
  client: Client | undefined;

  constructor(readonly options: { publication: string; prepare: PrepareSession }) {}

  get name(): string {
    return 'pgoutput';
  }

  parse(buffer: Buffer): Buffer {
    return buffer;
  }

  async start(client: Client, slot: string): Promise<unknown> {
    this.client = client;
    const startLsn = await this.options.prepare(client);
    const options = `proto_version '1', publication_names ${quoteLiteral(this.options.publication)}, messages 'true'`;
    return client.query(`START_REPLICATION SLOT ${quoteIdent(slot)} LOGICAL ${formatLsn(startLsn)} (${options})`);
  }
}

export interface StreamHandlers {
  /**
   * One pgoutput message, called synchronously in stream order. The buffer is only valid during the
   * call (it points into the connection's read buffer): copy what you keep.
   */
  onMessage(message: Buffer): void;
  /** A primary keepalive: the server has sent everything before `walEnd`. */
  onKeepalive(walEnd: Lsn, replyRequested: boolean): void;
}

/** The session's protocol connection (pg's Client.connection), with the COPY call pg's types leave out. */
type CopyConnection = Client['connection'] & {
  sendCopyFromChunk(chunk: Buffer): void;
  stream: Socket;
};

/**
 * One replication session on a logical slot. The library's acknowledgement is switched off entirely
 * (it would report positions that were never stored, plus one); we send standby status updates
 * ourselves with exactly the position the caller says is durable.
 */
export class ReplicationStream {
  private readonly service: LogicalReplicationService;
  private plugin: RawPgoutputPlugin | undefined;

  constructor(
    private readonly config: PgConnectConfig,
    private readonly slot: string,
    private readonly publication: string,
    handlers: StreamHandlers,
  ) {
    this.service = new LogicalReplicationService(
      { ...clientConfigFor(config), options: DECODING_SESSION_OPTIONS },
      { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: false } },
    );
    this.service.on('data', (_lsn: string, message: Buffer) => handlers.onMessage(message));
    this.service.on('heartbeat', (lsn: string, _time: number, reply: boolean) => handlers.onKeepalive(parseLsn(lsn), reply));
  }

  /**
   * Connects, lets `prepare` check the session and choose the start position, and streams from there
   * until the connection ends; rejects with the connection's error, or with what `prepare` threw.
   * `onStart` runs once the server has accepted START_REPLICATION.
   */
  run(prepare: PrepareSession, onStart: () => void): Promise<void> {
    // sslmode prefer/allow: what failed this time, the next connection tries the other way (as connect.ts does)
    const fail = (reject: (error: unknown) => void) => (error: unknown) => {
      switchSslAfter(this.config, error);
      reject(error);
    };
    return new Promise<void>((resolve, rejectRun) => {
      const reject = fail(rejectRun);
      this.service.once('error', reject);
      this.service.once('start', onStart);
      // the library passes its own last position too; ours comes from `prepare`, explicitly
      this.plugin = new RawPgoutputPlugin({ publication: this.publication, prepare });
      this.service.subscribe(this.plugin, this.slot, '0/0').then(() => resolve(), reject);
    });
  }

  private connection(): CopyConnection | null {
    return (this.plugin?.client?.connection as CopyConnection | undefined) ?? null;
  }

  /** Standby status update: written = flushed = applied = `durableLsn`. */
  sendStatus(durableLsn: Lsn, replyRequested = false): boolean {
    const connection = this.connection();
    if (!connection || this.service.isStop()) return false;
    const message = Buffer.alloc(34);
    message.write('r', 0, 'latin1');
    message.writeBigUInt64BE(durableLsn, 1);
    message.writeBigUInt64BE(durableLsn, 9);
    message.writeBigUInt64BE(durableLsn, 17);
    message.writeBigInt64BE(unixMicrosToPgMicros(nowUnixMicros()), 25);
    message.writeUInt8(replyRequested ? 1 : 0, 33);
    connection.sendCopyFromChunk(message);
    return true;
  }

  /** Resolves once everything sent so far (status updates included) is written to the socket, or the socket is gone. */
  flushed(): Promise<void> {
    const socket = this.connection()?.stream;
    if (!socket || !socket.writable) return Promise.resolve();
    return new Promise((resolve) => socket.write(Buffer.alloc(0), () => resolve()));
  }

  pause(): void {
    this.connection()?.stream.pause();
  }

  resume(): void {
    this.connection()?.stream.resume();
  }

  async stop(): Promise<void> {
    await this.service.destroy().catch(() => undefined);
  }
}
