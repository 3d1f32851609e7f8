#!/usr/bin/env bash
# Runs a command with a Kafka broker: the one named by KAFKA_BOOTSTRAP_SERVERS, or the
# project's local broker, started here and stopped when the command ends (even on failure).
set -euo pipefail
guardian="$(dirname "$0")/../.venv/bin/guardian"
if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  started=0
  if ! "$guardian" broker status --answering >/dev/null 2>&1; then
    "$guardian" broker start
    started=1
  fi
  stop_broker() { [ "$started" = 1 ] && "$guardian" broker stop || true; }
  trap stop_broker EXIT
  KAFKA_BOOTSTRAP_SERVERS="$("$guardian" broker address)"
  export KAFKA_BOOTSTRAP_SERVERS
fi
"$@"
