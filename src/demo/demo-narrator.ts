/** Quotes an argument the way a POSIX shell needs it, only when it has to. */
export function shellQuote(arg: string): string {
  if (/^[\w@%+=:,./-]+$/.test(arg)) return arg;
  if (!arg.includes("'")) return `'${arg}'`;
  // SQL with string literals reads better in double quotes, where nothing in it is special to the shell
  if (!/[$`"!]|\\[\\\n]/.test(arg)) return `"${arg}"`;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/**
 * Prints the demo for a person: numbered steps, what each does, the command a user would type for it
 * (prefixed "$"), and what that command printed, indented beneath it.
 */
export class DemoNarrator {
  private steps = 0;

  constructor(private readonly out: NodeJS.WritableStream) {}

  title(text: string): void {
    this.out.write(`${text}\n`);
  }

  step(text: string): void {
    this.steps++;
    this.out.write(`\n${this.steps}. ${text}\n`);
  }

  say(text: string): void {
    for (const line of text.split('\n')) this.out.write(`   ${line}\n`);
  }

  blank(): void {
    this.out.write('\n');
  }

  /** A command as the user would type it. */
  command(argv: readonly string[], comment?: string): void {
    this.out.write(`   $ ${argv.map(shellQuote).join(' ')}${comment ? `   # ${comment}` : ''}\n`);
  }

  /** `left | right`, as the user would type it. */
  pipe(left: readonly string[], right: readonly string[]): void {
    this.out.write(`   $ ${left.map(shellQuote).join(' ')} | ${right.map(shellQuote).join(' ')}\n`);
  }

  /** What a command printed, beneath it. */
  output(text: string): void {
    const lines = text.replace(/\n+$/, '').split('\n');
    for (const line of lines) this.out.write(`     ${line}\n`);
  }

  table(rows: readonly (readonly string[])[]): void {
    const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
    for (const row of rows)
      this.say(
        row
          .map((cell, i) => cell.padEnd(widths[i] ?? 0))
          .join('  ')
          .trimEnd(),
      );
  }
}
