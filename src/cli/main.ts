import PQueue from 'p-queue';
export async function main(argv: string[]): Promise<void> {
  const q = new PQueue({ concurrency: 1 });
  await q.add(async () => console.log('hello', argv));
}
