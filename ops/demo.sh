#!/usr/bin/env bash
# The demo: set the machine up, start the local stack, and show how to watch the MBO frames.
# (The full pipeline, `orderflow run`, will be started here once it exists.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash ops/bootstrap.sh
.venv/bin/orderflow stack up
cat <<TXT

The local stack is up (\`.venv/bin/orderflow stack status\`, \`.venv/bin/orderflow stack down\`).
Watch the MBO frames as they arrive:
  ops/kafka/bin/kafka-console-consumer --topic mbo.frames --property print.key=true
TXT
exec .venv/bin/orderflow run "$@"
