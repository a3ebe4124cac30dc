/**
 * Crash tests stop the process with SIGKILL at a named step (PITR_TEST_CRASH_AT=step), exactly where a
 * power cut could: between two writes of a multi-object change. Without the variable this does nothing.
 */
export function crashPoint(step: string): void {
  const wanted = process.env.PITR_TEST_CRASH_AT;
  if (wanted !== undefined && wanted === step) process.kill(process.pid, 'SIGKILL');
}
