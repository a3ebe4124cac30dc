import { backoffMs } from '../../backoff';
import { GaveUp, isTransient } from './gcs-errors';

export interface RetryOptions {
  /** Total attempts, including the first (default 8). */
  attempts?: number;
  /** Delay before the second attempt; doubles each time (default 250 ms). */
  baseDelayMs?: number;
  /** Cap on one delay (default 8 s; with the defaults the backoff totals under 30 s). */
  maxDelayMs?: number;
}

export type RetryPolicy = Required<RetryOptions>;

export function retryPolicy(options: RetryOptions = {}): RetryPolicy {
  return { attempts: Math.max(1, options.attempts ?? 8), baseDelayMs: options.baseDelayMs ?? 250, maxDelayMs: options.maxDelayMs ?? 8000 };
}

/** Delay after failed attempt `attempt` (1-based): exponential, capped, with jitter so clients spread out. */
export function retryDelayMs(policy: RetryPolicy, attempt: number): number {
  return backoffMs(attempt - 1, policy.baseDelayMs, policy.maxDelayMs);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Runs `operation` until it succeeds, fails with a non-transient error (rethrown as is), or transient
 * failures use up the attempts (GaveUp). The operation gets the attempt number, starting at 1.
 */
export async function retry<T>(policy: RetryPolicy, operation: (attempt: number) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation(attempt);
    } catch (error) {
      if (!isTransient(error)) throw error;
      if (attempt >= policy.attempts) throw new GaveUp(error, attempt);
      await sleep(retryDelayMs(policy, attempt));
    }
  }
}
