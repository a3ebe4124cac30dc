import type { Client } from 'pg';

/** What receives a COPY's data: `write` takes bytes (copying them), `backpressure` is a promise to wait for, or undefined. */
export interface CopySink {
  write(bytes: Buffer): void;
  backpressure(): Promise<void> | undefined;
}

/** The subset of pg's Connection this query uses. */
interface PgConnection {
  stream: {
    read(): Buffer | null;
    listeners(event: 'data'): ((chunk: Buffer) => void)[];
    on(event: 'readable', listener: () => void): unknown;
    removeListener(event: string, listener: (...args: never[]) => void): unknown;
    addListener(event: 'data', listener: (chunk: Buffer) => void): unknown;
    pause(): unknown;
    resume(): unknown;
  };
  query(text: string): void;
}

const COPY_DATA = 0x64; // d
const ERROR_RESPONSE = 0x45; // E
/** Messages read over during the COPY: CopyOutResponse, and the asynchronous ParameterStatus, NoticeResponse, NotificationResponse. */
const PASSED_OVER = new Set([0x48, 0x53, 0x4e, 0x41]);

/**
 * Runs `COPY … TO STDOUT` and hands its data to `sink` as the socket delivers it, a socket read at a
 * time: the CopyData headers (one per row) are cut out in place and the rows of a read passed on as
 * one buffer, so no object is made per row. Like pg-copy-streams, it takes the connection's socket
 * from pg while the COPY runs and gives pg back what follows CopyDone (or an ErrorResponse). If `sink`
 * throws, the rest of the COPY is read and dropped (the session stays usable) and the promise rejects
 * with that error. Resolves with the row count once the session is ready for the next query.
 */
export function copyOut(client: Client, sql: string, sink: CopySink): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const query = new CopyOutQuery(sql, sink, resolve, reject);
    (client as unknown as { query(q: CopyOutQuery): void }).query(query);
  });
}

class CopyOutQuery {
  private connection: PgConnection | undefined;
  private pgDataHandler: ((chunk: Buffer) => void) | undefined;
  private readonly onReadable = (): void => this.forward();
  /** Bytes of the current message's payload still to come. */
  private remaining = 0;
  private code = 0;
  /** Header bytes (code, then 4 of length) seen of the next message. */
  private readonly header = Buffer.alloc(5);
  private headerBytes = 0;
  private paused = false;
  private forwarding = false;
  private failure: unknown;
  private rowCount = 0;
  private errored = false;

  constructor(
    readonly text: string,
    private readonly sink: CopySink,
    private readonly resolve: (rows: number) => void,
    private readonly reject: (error: unknown) => void,
  ) {}

  submit(connection: PgConnection): void {
    this.connection = connection;
    const stream = connection.stream;
    const [handler] = stream.listeners('data');
    this.pgDataHandler = handler;
    if (handler) stream.removeListener('data', handler);
    stream.pause();
    stream.on('readable', this.onReadable);
    connection.query(this.text);
  }

  private forward(): void {
    const stream = this.connection?.stream;
    if (!stream || this.forwarding || this.paused) return;
    this.forwarding = true;
    try {
      let chunk: Buffer | null;
      while (!this.paused && this.connection && (chunk = stream.read()) !== null) this.parse(chunk);
    } finally {
      this.forwarding = false;
    }
  }

  /** Cuts the messages of one socket read; the CopyData payloads move down over the headers in place. */
  private parse(chunk: Buffer): void {
    let at = 0;
    let out = 0;
    let whole: boolean;
    while (at < chunk.length) {
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, chunk.length - at);
        if (this.code === COPY_DATA) {
          if (out !== at) chunk.copyWithin(out, at, at + n);
          out += n;
        }
        at += n;
        this.remaining -= n;
        continue;
      }
      if (this.headerBytes === 0 && chunk[at] === ERROR_RESPONSE) {
        this.pass(chunk, out);
        this.detach(chunk.subarray(at));
        return;
      }
      if (this.headerBytes === 0 && chunk.length - at >= 5) {
        // the usual case, a whole header in this read: no call per row but these reads
        this.code = chunk[at] as number;
        this.remaining =
          (chunk[at + 1] as number) * 0x1000000 + ((chunk[at + 2] as number) << 16) + ((chunk[at + 3] as number) << 8) + (chunk[at + 4] as number) - 4;
        at += 5;
        whole = true;
      } else {
        const n = Math.min(5 - this.headerBytes, chunk.length - at);
        chunk.copy(this.header, this.headerBytes, at, at + n);
        this.headerBytes += n;
        at += n;
        if (this.headerBytes < 5) break;
        this.headerBytes = 0;
        this.code = this.header[0] as number;
        this.remaining = this.header.readUInt32BE(1) - 4;
        whole = false;
      }
      if (this.code !== COPY_DATA && !PASSED_OVER.has(this.code)) {
        // CopyDone (or anything but CopyOutResponse and the asynchronous S, N, A): pg reads the rest
        this.pass(chunk, out);
        this.detach(whole ? chunk.subarray(at - 5) : Buffer.concat([this.header, chunk.subarray(at)]));
        return;
      }
    }
    this.pass(chunk, out);
  }

  private pass(chunk: Buffer, length: number): void {
    if (length === 0 || this.failure) return;
    try {
      this.sink.write(chunk.subarray(0, length));
      const wait = this.sink.backpressure();
      if (wait) {
        this.paused = true;
        wait.then(
          () => {
            this.paused = false;
            this.forward();
          },
          (error: unknown) => {
            this.failure ??= error;
            this.paused = false;
            this.forward();
          },
        );
      }
    } catch (error) {
      this.failure ??= error;
    }
  }

  /** Gives the socket back to pg with the bytes it must parse (CopyDone or an ErrorResponse onwards). */
  private detach(rest: Buffer): void {
    const connection = this.connection as PgConnection;
    this.connection = undefined;
    connection.stream.removeListener('readable', this.onReadable);
    if (this.pgDataHandler) {
      connection.stream.addListener('data', this.pgDataHandler);
      this.pgDataHandler(rest);
    }
    process.nextTick(() => connection.stream.resume());
  }

  handleCommandComplete(message: { text?: string }): void {
    this.rowCount = Number(/^COPY (\d+)/.exec(message.text ?? '')?.[1] ?? 0);
  }

  handleError(error: unknown): void {
    this.errored = true;
    this.reject(error);
  }

  handleReadyForQuery(): void {
    if (this.errored) return;
    if (this.failure) this.reject(this.failure);
    else this.resolve(this.rowCount);
  }
}
