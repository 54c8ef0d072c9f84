#!/usr/bin/env bash
# The local AWS emulator for capstan's integration tests: moto server, pinned, in a venv.
#
#   localstack/moto.sh install          create the venv and install moto (idempotent)
#   localstack/moto.sh start [PORT]     start on 127.0.0.1:PORT (default 5000), wait until ready,
#                                       print the endpoint URL
#   localstack/moto.sh stop             stop the server started by `start`
#
# Environment: CAPSTAN_MOTO_VENV (default .venv/moto), CAPSTAN_MOTO_DIR for the pid and log
# files (default target/moto).
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_PIN="moto[server]==5.2.5"
VENV="${CAPSTAN_MOTO_VENV:-.venv/moto}"
RUN_DIR="${CAPSTAN_MOTO_DIR:-target/moto}"

install() {
    if [ -x "$VENV/bin/moto_server" ] && "$VENV/bin/pip" show moto 2>/dev/null | grep -q '^Version: 5.2.5$'; then
        return 0
    fi
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$MOTO_PIN"
}

start() {
    local port="${1:-5000}"
    install
    mkdir -p "$RUN_DIR"
    if [ -f "$RUN_DIR/moto.pid" ] && kill -0 "$(cat "$RUN_DIR/moto.pid")" 2>/dev/null; then
        echo "moto already running (pid $(cat "$RUN_DIR/moto.pid"))" >&2
    else
        nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$RUN_DIR/moto.log" 2>&1 &
        echo $! >"$RUN_DIR/moto.pid"
    fi
    for _ in $(seq 1 100); do
        if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/data.json', timeout=1)" 2>/dev/null; then
            echo "http://127.0.0.1:$port"
            return 0
        fi
        sleep 0.1
    done
    echo "moto did not become ready on port $port; log: $RUN_DIR/moto.log" >&2
    tail -20 "$RUN_DIR/moto.log" >&2 || true
    return 1
}

stop() {
    if [ -f "$RUN_DIR/moto.pid" ]; then
        kill "$(cat "$RUN_DIR/moto.pid")" 2>/dev/null || true
        rm -f "$RUN_DIR/moto.pid"
    fi
}

case "${1:-}" in
    install) install ;;
    start) start "${2:-5000}" ;;
    stop) stop ;;
    *) echo "usage: $0 install | start [PORT] | stop" >&2; exit 2 ;;
esac
