import { PitrError } from '../errors';

/** An interrupted restore stops with exit 130; what it committed stays, and running it again continues. */
export function throwIfInterrupted(signal: AbortSignal | undefined, when: string): void {
  if (signal?.aborted)
    throw new PitrError(
      'Interrupted',
      `restore interrupted ${when}: what was committed stays in the target`,
      'run the same command again to continue where it stopped',
    );
}
