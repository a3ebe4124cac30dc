type Slot<T> = { value: T } | { error: unknown } | { done: true };

/**
 * Pulls up to `depth` items from `source` ahead of the consumer, so reading, checksumming and
 * decompressing the next frames (and the next segment) overlap with applying the current ones.
 * Items, errors and the end arrive in the source's order. Ending the iteration early ends the source.
 */
export async function* readAhead<T>(source: AsyncGenerator<T>, depth: number): AsyncGenerator<T> {
  const slots: Slot<T>[] = [];
  let stopped = false;
  let wakeConsumer: (() => void) | undefined;
  let wakeProducer: (() => void) | undefined;
  const producer = (async (): Promise<void> => {
    try {
      for (;;) {
        while (slots.length >= depth && !stopped) await new Promise<void>((resolve) => (wakeProducer = resolve));
        if (stopped) return;
        const next = await source.next();
        slots.push(next.done ? { done: true } : { value: next.value });
        wakeConsumer?.();
        if (next.done) return;
      }
    } catch (error) {
      slots.push({ error });
      wakeConsumer?.();
    }
  })();
  try {
    for (;;) {
      while (slots.length === 0) await new Promise<void>((resolve) => (wakeConsumer = resolve));
      const slot = slots.shift() as Slot<T>;
      wakeProducer?.();
      if ('done' in slot) return;
      if ('error' in slot) throw slot.error;
      yield slot.value;
    }
  } finally {
    stopped = true;
    wakeProducer?.();
    await producer;
    await source.return(undefined);
  }
}
