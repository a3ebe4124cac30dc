#!/usr/bin/env bash
# Recovery drill for a scheduled job (cron, a Kubernetes CronJob, CI): restores the archive into a
# scratch database, checks every table's row count, and reports RTO and RPO. Exit status: 0 passed,
# 7 a table does not match, 20 slower than MAX_RTO_SECONDS (outside pitr's own codes), anything else: the drill could not run
# (pitr's exit codes: 4 cannot connect, 5 repository problem, 9 nothing to restore, ...).
# Needs pitr and jq. Settings come from the environment: PITR_REPO, PITR_SOURCE (optional: compares
# the restored row counts with the source too), DRILL_TARGET (a scratch database, created and dropped).
set -uo pipefail
: "${DRILL_TARGET:?set DRILL_TARGET to a scratch database URL, e.g. postgresql://postgres@localhost/pitr_drill}"
MAX_RTO_SECONDS="${MAX_RTO_SECONDS:-1800}"

report=$(pitr drill --target "$DRILL_TARGET" --json --log-level warn)
status=$?
if [ "$status" -ne 0 ] && [ "$status" -ne 7 ]; then
  echo "pitr drill could not run (exit $status): $(jq -r '.error.message // "see its log"' <<<"$report" 2>/dev/null)" >&2
  exit "$status"
fi
jq -r '"drill \(if .ok then "passed" else "FAILED" end): backup \(.backup.id), RTO \(.rtoSeconds) s, RPO \(.rpoSeconds) s",
       (.tables[] | "  \(if .ok then "ok" else "MISMATCH" end)  \(.name): expected \(.expectedRows), restored \(.rows)")' <<<"$report"
[ "$status" -eq 7 ] && exit 7
if jq -e --argjson max "$MAX_RTO_SECONDS" '.rtoSeconds > $max' <<<"$report" >/dev/null; then
  echo "drill too slow: RTO above ${MAX_RTO_SECONDS} s" >&2
  exit 20
fi
exit 0
