#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian machine (run as root) for orderflow's local stack and tests:
#   Java 17, Maven, PostgreSQL 15 (and, optionally, kcat and prometheus/promtool if Debian has them) from apt, only
#   when missing, with one apt-get update;
#   .venv with Python 3.11 and the project installed editable with its dev extras, pinned by constraints.txt;
#   the Apache Kafka jars resolved from Maven Central into $ORDERFLOW_HOME/kafka/libs (cached);
#   npm and chromium from apt when missing, and the web view's npm packages (npm ci in streams/static).
# Running it again on a ready machine changes nothing and takes a second or two.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'bootstrap: %s\n' "$*" >&2; }

APT_UPDATED=0
apt_update_once() {
    if [[ $EUID -eq 0 && $APT_UPDATED -eq 0 ]]; then
        log "apt-get update"
        apt-get update -qq
        APT_UPDATED=1
    fi
}

apt_install() {
    if [[ $EUID -ne 0 ]]; then
        log "missing: $*; run this script as root, or install them with: apt-get install $*"
        exit 1
    fi
    apt_update_once
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

have_java() {
    [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]] || command -v java >/dev/null
}

ensure_system_packages() {
    local missing=()
    have_java || missing+=(java)
    command -v mvn >/dev/null || missing+=(maven)
    [[ -x /usr/lib/postgresql/15/bin/initdb ]] || missing+=(postgresql-15)
    command -v python3.11 >/dev/null || missing+=(python3.11 python3.11-venv)
    # the compiled book engine (setup.py) and the Dockerfile's install steps run in the tests need a C++ compiler
    # and Python's headers
    command -v g++ >/dev/null || missing+=(g++)
    if ! command -v python3.11 >/dev/null \
        || [[ ! -f "$(python3.11 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ]]; then
        missing+=(python3.11-dev)
    fi
    if command -v python3.11 >/dev/null && [[ ! -x .venv/bin/python ]] \
        && ! python3.11 -c 'import ensurepip, venv' 2>/dev/null; then
        missing+=(python3.11-venv)
    fi
    if [[ ${#missing[@]} -gt 0 ]]; then
        local packages=()
        for item in "${missing[@]}"; do
            if [[ $item == java ]]; then
                apt_update_once
                if apt-cache show openjdk-17-jre-headless >/dev/null 2>&1; then
                    packages+=(openjdk-17-jre-headless)
                else
                    packages+=(default-jre-headless)
                fi
            else
                packages+=("$item")
            fi
        done
        apt_install "${packages[@]}"
    fi
    if ! command -v kcat >/dev/null; then
        # Optional: handy for inspecting topics; never fail the set-up for it.
        if [[ $EUID -eq 0 ]]; then
            apt_install kcat || log "kcat is not available from apt; skipped (optional)"
        else
            log "kcat not installed (optional: apt-get install kcat)"
        fi
    fi
    if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
        # Optional: promtool checks ops/prometheus/prometheus.yml and a real Prometheus scrapes the sink in the
        # tests (they skip without it); never fail the set-up for it. The package's service is not started: the
        # tests and docs/sinks.md run their own Prometheus on loopback.
        if [[ $EUID -eq 0 ]]; then
            local no_start=0
            if [[ ! -e /usr/sbin/policy-rc.d ]]; then
                printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && no_start=1
            fi
            apt_install prometheus || log "prometheus is not available from apt; skipped (optional)"
            [[ $no_start -eq 0 ]] || rm -f /usr/sbin/policy-rc.d
        else
            log "prometheus not installed (optional: apt-get install prometheus)"
        fi
    fi
}

ensure_venv() {
    if [[ ! -x .venv/bin/python ]]; then
        log "creating .venv with $(command -v python3.11)"
        python3.11 -m venv .venv
    fi
    local stamp=.venv/.orderflow-installed digest
    # the compiled book engine's sources count too: a change to them rebuilds it
    local sources=(pyproject.toml constraints.txt setup.py processors/book/_*.pyx processors/book/_*.pxd
                   processors/book/_*.pxi processors/book/_*.hpp)
    digest="$(cat "${sources[@]}" | sha256sum | cut -d' ' -f1)"
    if [[ -f $stamp && "$(cat "$stamp")" == "$digest" ]] \
        && .venv/bin/python -c 'import importlib.metadata as m; m.version("orderflow")' 2>/dev/null; then
        return
    fi
    log "pip install -c constraints.txt -e '.[dev]' (output in .venv/pip-install.log)"
    # PIP_CONSTRAINT pins the isolated build environment too (Cython of the compiled book engine), as in the image
    if ! PIP_CONSTRAINT="$PWD/constraints.txt" .venv/bin/python -m pip install --disable-pip-version-check \
        -c constraints.txt -e '.[dev]' \
        >.venv/pip-install.log 2>&1; then
        tail -n 30 .venv/pip-install.log >&2
        log "pip install failed (full output in .venv/pip-install.log)"
        exit 1
    fi
    echo "$digest" >"$stamp"
}

# The web view's charting library (streams/static/package-lock.json) and the browser the browser tests drive.
ensure_web_packages() {
    local missing=()
    command -v npm >/dev/null || missing+=(nodejs npm)
    [[ -x /usr/bin/chromium ]] || missing+=(chromium)
    [[ ${#missing[@]} -eq 0 ]] || apt_install "${missing[@]}"
    local static=streams/static stamp=streams/static/node_modules/.orderflow-installed digest
    digest="$(sha256sum "$static/package-lock.json" | cut -d' ' -f1)"
    if [[ -f $stamp && "$(cat "$stamp")" == "$digest" ]]; then
        return
    fi
    log "npm ci in $static"
    (cd "$static" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$digest" >"$stamp"
}

ensure_system_packages
ensure_web_packages
ensure_venv
.venv/bin/python -m ops.stack.jars
log "ready"
