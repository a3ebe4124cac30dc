/**
 * The error catalogue. Every failure the user can meet has a kind with a stable code, which is also the
 * process exit status. Messages are lowercase, name the object concerned, and keep the fix in `hint`.
 *
 * Exit statuses (documented in README.md, "Exit codes"):
 *   0 success · 1 unexpected internal error · 2 bad usage (unknown flag, bad value)
 *   3 configuration of the source is not fit for archiving · 4 cannot connect or authenticate
 *   5 repository problem (unwritable, wrong source, corrupt object) · 6 already running elsewhere
 *   7 integrity violation (different bytes under an archived name, broken chain) · 8 missing tool
 *   9 not found (no such backup, segment, target) · 10 encryption key missing or wrong (named by its key id)
 *   · 11 a change in the archive cannot be replayed into the
 *   target (named with its position) · 130 interrupted (SIGINT/SIGTERM; run it again to continue)
 */
export const ErrorKind = {
  Internal: 1,
  Usage: 2,
  SourceConfig: 3,
  Connection: 4,
  Repository: 5,
  Busy: 6,
  Integrity: 7,
  MissingTool: 8,
  NotFound: 9,
  /** An encryption key is missing or is not the key an object was sealed with (named by its key id), or a key was given for an unencrypted repository. */
  Key: 10,
  /** A change in the archive (a schema change, a row for a table the target lacks) cannot be applied to the target. */
  Replay: 11,
  /** Stopped by SIGINT/SIGTERM before the end; running the same command again continues (128 + SIGINT). */
  Interrupted: 130,
} as const;
export type ErrorKind = keyof typeof ErrorKind;

export class PitrError extends Error {
  readonly kind: ErrorKind;
  readonly hint: string | undefined;
  /** Structured facts behind the message (e.g. the failed checks and their fixes), added to the `--json` error object. */
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(kind: ErrorKind, message: string, hint?: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PitrError';
    this.kind = kind;
    this.hint = hint;
    this.details = options?.details;
  }

  get exitCode(): number {
    return ErrorKind[this.kind];
  }
}

export function isPitrError(error: unknown, kind?: ErrorKind): error is PitrError {
  return error instanceof PitrError && (kind === undefined || error.kind === kind);
}

/** Message text of any thrown value, for logs and wrapping. */
export function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
