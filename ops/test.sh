#!/usr/bin/env bash
# Set the machine up (ops/bootstrap.sh) and run every test tier: unit, integration (a real Kafka broker and
# PostgreSQL, started once by tests/conftest.py), e2e, browser. Extra arguments go to pytest.
# The exit code is pytest's; "no tests collected" (pytest's 5) is reported as an error too.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash ops/bootstrap.sh
status=0
.venv/bin/python -m pytest tests "$@" || status=$?
if [[ $status -eq 5 ]]; then
    echo "test.sh: error: pytest collected no tests" >&2
fi
exit "$status"
