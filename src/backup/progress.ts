import { formatBytes } from '../config/units';
import type { Logger } from '../logger';

const BAR_WIDTH = 30;

/**
 * Progress of a long job: one line redrawn in place (carriage return) when stderr is a terminal, at
 * every log level since it is for the person watching; JSON progress lines in the log (at info)
 * otherwise, and nothing else on stderr. Totals are estimates (table sizes on disk), so the bar stops
 * at 99% until the end.
 */
export class Progress {
  private doneBytes = 0;
  private doneItems = 0;
  private readonly started = Date.now();
  private lastDraw = 0;
  private drawn = false;
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
      this.drawn = true;
      const filled = Math.round(fraction * BAR_WIDTH);
      const bar = '#'.repeat(filled) + '-'.repeat(BAR_WIDTH - filled);
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

  /** On a terminal, redraws the line as done (a full bar, the time taken) and ends it, if one was drawn. */
  finish(): void {
    if (!this.drawn) return;
    const seconds = (Date.now() - this.started) / 1000;
    this.stream.write(
      `\r${this.what} [${'#'.repeat(BAR_WIDTH)}] ${this.doneItems}/${this.totalItems} ${this.unit} ${formatBytes(this.doneBytes)} in ${seconds.toFixed(1)}s              \n`,
    );
  }
}
