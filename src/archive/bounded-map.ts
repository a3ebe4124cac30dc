/** Reads of many objects at once are capped: a long archive must not exhaust file handles or flood a bucket. */
export const READ_CONCURRENCY = 16;

/** `fn` over `items` with at most `limit` calls running at once; results in the order of `items`. */
export async function mapBounded<T, R>(items: readonly T[], fn: (item: T, index: number) => Promise<R>, limit = READ_CONCURRENCY): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
