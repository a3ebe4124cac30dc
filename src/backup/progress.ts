import { formatBytes } from '../config/units';
import type { Logger } from '../logger';

/**
 * Progress of a long job: a bar redrawn on a terminal (stderr), JSON progress lines in the log
 * otherwise. Totals are estimates (table sizes on disk), so the bar stops at 99% until the end.
 */
export class Progress {
  private doneBytes = 0;
  private doneItems = 0;
  private readonly started = Date.now();
  private lastDraw = 0;
  private readonly tty: boolean;
  private readonly stream: NodeJS.WriteStream;
  private readonly everyMs: number;
  /** What the items are, e.g. "tables". */
  private readonly unit: string;

  constructor(
    private readonly what: string,
    private readonly totalItems: number,
    private readonly totalBytes: number,
    private readonly log: Logger,
    options: { unit?: string; stream?: NodeJS.WriteStream; everyMs?: number } = {},
  ) {
    this.stream = options.stream ?? process.stderr;
    this.everyMs = options.everyMs ?? 2000;
    this.unit = options.unit ?? 'tables';
    this.tty = Boolean(this.stream.isTTY) && !process.env.CI;
  }

  addBytes(bytes: number): void {
    this.doneBytes += bytes;
    this.maybeReport();
  }

  itemDone(): void {
    this.doneItems++;
    this.maybeReport(true);
  }

  private maybeReport(force = false): void {
    const now = Date.now();
    if (!force && now - this.lastDraw < (this.tty ? 200 : this.everyMs)) return;
    if (!this.tty && now - this.lastDraw < this.everyMs) return;
    this.lastDraw = now;
    const seconds = (now - this.started) / 1000;
    const rate = seconds > 0 ? this.doneBytes / seconds : 0;
    const fraction = this.totalBytes > 0 ? Math.min(0.99, this.doneBytes / this.totalBytes) : 0;
    const remaining = rate > 0 ? Math.max(0, (this.totalBytes - this.doneBytes) / rate) : undefined;
    if (this.tty) {
      const width = 30;
      const filled = Math.round(fraction * width);
      const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
      this.stream.write(
        `\r${this.what} [${bar}] ${this.doneItems}/${this.totalItems} ${this.unit} ${formatBytes(this.doneBytes)} ${formatBytes(rate)}/s` +
          `${remaining !== undefined ? ` ~${Math.ceil(remaining)}s left` : ''}   `,
      );
    } else {
      this.log.info(
        {
          event: 'progress',
          what: this.what,
          items: this.doneItems,
          totalItems: this.totalItems,
          bytes: this.doneBytes,
          totalBytes: this.totalBytes,
          bytesPerSecond: Math.round(rate),
          secondsLeft: remaining === undefined ? null : Math.ceil(remaining),
        },
        `${this.what}: ${this.doneItems}/${this.totalItems} ${this.unit}, ${formatBytes(this.doneBytes)}`,
      );
    }
  }

  finish(): void {
    if (this.tty) this.stream.write('\n');
  }
}
