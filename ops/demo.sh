#!/usr/bin/env bash
# The demo: set the machine up, start the local stack, then run the whole pipeline on the sample session
# (`orderflow run`: book workers, sink, features worker, tick ingest from a fake exchange, the replay) and print
# where to look. Ctrl-C stops it; extra arguments go to `orderflow run` (see `orderflow run --help`).
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
