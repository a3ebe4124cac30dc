import { performance } from 'node:perf_hooks';
import { delay } from '../backoff';
import type { Logger } from '../logger';

/**
 * Waits for `work` until `deadline` (performance.now()), logging `stop_waiting` every second with what it
 * waits for; true when it finished in time. A failure of `work` counts as finished: it is reported where
 * it happens.
 */
export async function waitLogged(
  log: Logger,
  work: Promise<unknown>,
  what: string,
  deadline: number,
  detail: () => Record<string, unknown> = () => ({}),
): Promise<boolean> {
  let finished = false;
  const settled = work.then(
    () => (finished = true),
    () => (finished = true),
  );
  while (!finished) {
    const left = deadline - performance.now();
    if (left <= 0) return false;
    await Promise.race([settled, delay(Math.min(1000, left))]);
    if (!finished && performance.now() < deadline)
      log.info({ event: 'stop_waiting', for: what, remainingMs: Math.round(deadline - performance.now()), ...detail() }, `stopping: waiting for ${what}`);
  }
  return true;
}

/**
 * A condition waited on without polling: `until(holds)` resolves once `holds()` is true, checked at once
 * and again each time the owner of the state calls `notify()` after changing it.
 */
export class Condition {
  private readonly waiters = new Set<() => void>();

  until(holds: () => boolean): Promise<void> {
    if (holds()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = (): void => {
        if (!holds()) return;
        this.waiters.delete(check);
        resolve();
      };
      this.waiters.add(check);
    });
  }

  notify(): void {
    for (const check of [...this.waiters]) check();
  }
}

/** Closing a session to a dead server may hang: it is not waited for longer than this. */
const CLOSE_TIMEOUT_MS = 1_000;

/** Waits for a session to close, at most CLOSE_TIMEOUT_MS. */
export async function closeBounded(closing: Promise<unknown> | undefined): Promise<void> {
  if (!closing) return;
  await Promise.race([closing.catch(() => undefined), delay(CLOSE_TIMEOUT_MS)]);
}
