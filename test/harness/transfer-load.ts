import { Client } from 'pg';

/** Transfers between accounts from several connections: the sum of balances never changes. */
export class TransferLoad {
  private running = true;
  private loops: Promise<void>[] = [];
  transfers = 0;

  constructor(
    private readonly url: string,
    private readonly accounts: number,
  ) {}

  static async setup(client: Client, accounts: number, balance = 1000): Promise<void> {
    await client.query('CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL, updated_at timestamptz)');
    await client.query('INSERT INTO accounts SELECT g, $2, now() FROM generate_series(1, $1) g', [accounts, balance]);
  }

  start(connections = 2): this {
    for (let i = 0; i < connections; i++) this.loops.push(this.loop());
    return this;
  }

  private async loop(): Promise<void> {
    const client = new Client({ connectionString: this.url });
    await client.connect();
    try {
      while (this.running) {
        const a = 1 + Math.floor(Math.random() * this.accounts);
        const b = 1 + ((a + Math.floor(Math.random() * (this.accounts - 1))) % this.accounts);
        const amount = 1 + Math.floor(Math.random() * 50);
        try {
          await client.query('BEGIN');
          await client.query('UPDATE accounts SET balance = balance - $2, updated_at = clock_timestamp() WHERE id = $1', [a, amount]);
          await client.query('UPDATE accounts SET balance = balance + $2, updated_at = clock_timestamp() WHERE id = $1', [b, amount]);
          await client.query('COMMIT');
          this.transfers++;
        } catch (error) {
          // a deadlock between two loops: retry; anything else (the cluster went away): stop this loop
          if ((error as { code?: string }).code !== '40P01') break;
          await client.query('ROLLBACK').catch(() => undefined);
        }
      }
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}
