import { HistoryCheck } from '../../src/capture/history-check';
import { StreamAssembler } from '../../src/capture/stream-assembler';
import { isPitrError } from '../../src/errors';
import { parseLsn } from '../../src/pg/lsn';

const source = 'postgresql://db1/shop';
const commit = (lsn: string, xid: number, time = 1_000_000n) => ({ commitLsn: parseLsn(lsn), xid, commitTime: time });
const archived = [commit('0/1000100', 700), commit('0/1000200', 701), commit('0/1000300', 702)];
const checking = () => new HistoryCheck(parseLsn('0/1000000'), archived, source);

/** A pgoutput Begin: tag, final LSN, commit time (PostgreSQL microseconds), xid. */
function begin(c: { commitLsn: bigint; xid: number; commitTime: bigint }): Buffer {
  const message = Buffer.alloc(21);
  message.write('B', 0, 'latin1');
  message.writeBigUInt64BE(c.commitLsn, 1);
  message.writeBigInt64BE(c.commitTime, 9);
  message.writeUInt32BE(c.xid, 17);
  return message;
}

function refusal(run: () => void): string {
  try {
    run();
  } catch (error) {
    expect(isPitrError(error, 'Repository')).toBe(true);
    return (error as Error).message;
  }
  throw new Error('not refused');
}

test('the same transactions again, in order: accepted, and nothing is pending after the last', () => {
  const check = checking();
  for (const c of archived) {
    expect(check.pending).toBe(true);
    check.begin(c.commitLsn, c.xid, c.commitTime);
  }
  expect(check.pending).toBe(false);
  check.begin(parseLsn('0/1000400'), 703, 5n); // new transactions after it are not checked
  check.decodedTo(parseLsn('0/2000000'));
});

test('another transaction at an archived commit LSN (other xid or commit time): refused, naming both', () => {
  expect(refusal(() => checking().begin(parseLsn('0/1000100'), 900, 1_000_000n))).toBe(
    `source ${source} has another history than the archive after 0/1000000: it sent transaction 900 committed at 0/1000100 (2000-01-01T00:00:01.000000Z), where the archive holds transaction 700 committed at 0/1000100 (2000-01-01T00:00:01.000000Z)`,
  );
  expect(refusal(() => checking().begin(parseLsn('0/1000100'), 700, 2_000_000n))).toMatch(/where the archive holds transaction 700/);
});

test('an archived transaction missing (a later commit first), or one the archive does not hold: refused', () => {
  expect(refusal(() => checking().begin(parseLsn('0/1000200'), 701, 1_000_000n))).toMatch(
    /: the archive's transaction 700 committed at 0\/1000100 \(\S+\) is not in its history: it sent transaction 701 committed at 0\/1000200/,
  );
  expect(refusal(() => checking().begin(parseLsn('0/1000080'), 699, 1_000_000n))).toMatch(
    /: it sent transaction 699 committed at 0\/1000080 \(\S+\), which the archive does not hold \(the archive's next is transaction 700/,
  );
});

test('a keepalive past the next archived commit without it sent: refused; one before it is not', () => {
  const check = checking();
  check.decodedTo(parseLsn('0/1000100'));
  expect(refusal(() => check.decodedTo(parseLsn('0/1000101')))).toMatch(/it has decoded its WAL up to 0\/1000101 without sending it/);
});

test('the stream assembler checks every Begin while the check is pending, the duplicates it drops and a new one alike', () => {
  const assembler = new StreamAssembler('/nonexistent', parseLsn('0/1000300'));
  assembler.history = checking();
  assembler.handle(begin(archived[0] as (typeof archived)[0]));
  expect(assembler.betweenTransactions).toBe(false);
  expect(refusal(() => assembler.handle(begin(commit('0/1000400', 703))))).toMatch(/the archive's transaction 701 .* is not in its history/);
  expect(assembler.openRawBytes).toBe(0); // nothing of either was written
});
