import { Client } from 'pg';

/**
 * A steady write load: transactions of 1–5 rows into `ledger` with ids chosen by the client, so the
 * test can tell exactly which rows were committed. Survives a source restart (reconnects).
 */
export class WriteLoad {
  private running = true;
  private nextId = 1;
  readonly committed: number[] = [];
  private done: Promise<void> | undefined;

  constructor(private readonly url: string) {}

  static async setup(client: Client): Promise<void> {
    await client.query('CREATE TABLE IF NOT EXISTS ledger (id bigint PRIMARY KEY, payload text, at timestamptz DEFAULT clock_timestamp())');
  }

  start(): this {
    this.done = this.loop();
    return this;
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const client = new Client({ connectionString: this.url });
      client.on('error', () => undefined);
      try {
        await client.connect();
        while (this.running) {
          const rows = 1 + (this.nextId % 5);
          const ids = Array.from({ length: rows }, () => this.nextId++);
          await client.query('BEGIN');
          await client.query('INSERT INTO ledger (id, payload) SELECT i, repeat(md5(i::text), 3) FROM unnest($1::bigint[]) AS i', [ids]);
          await client.query('COMMIT');
          this.committed.push(...ids);
        }
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      } finally {
        await client.end().catch(() => undefined);
      }
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }
}
