#!/bin/sh
# Install the Debian packages a make target needs, only those that are missing,
# and for the tests MQTT.js's browser bundle (below).
# Usage: scripts/install-deps.sh build|run|test|e2e|all
#   run: build, plus the clients the README demo uses (mosquitto_pub, kcat)
#   e2e: test, plus what make test-e2e needs
# Uses sudo when not root. Idempotent: installs nothing when all are present.
set -eu

build_pkgs="build-essential cmake pkg-config libuv1-dev librdkafka-dev libyaml-dev libcjson-dev libssl-dev libhttp-parser-dev libwslay-dev gzip"
run_pkgs="mosquitto-clients kcat"
# make test-e2e: the CQL driver of the query, a JDK to build our sink connector (tests/e2e/sink).
e2e_pkgs="python3-cassandra openjdk-17-jdk-headless"
test_pkgs="libcmocka-dev clang-format python3 python3-pytest python3-yaml python3-paho-mqtt python3-confluent-kafka mosquitto mosquitto-clients kcat curl openssl procps dpkg-dev openjdk-17-jre-headless maven prometheus chromium"

# The MQTT.js release whose browser bundle (dist/mqtt.min.js) the browser
# test loads (tests/integration/test_websocket_browser.py reads this line),
# fetched with npm into a cache directory, never into the tree.
MQTTJS_VERSION=5.16.0
mqttjs_dir="${M2K_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mqtt2kafka}/mqttjs-$MQTTJS_VERSION"

case "${1:-build}" in
build) want="$build_pkgs" ;;
run) want="$build_pkgs $run_pkgs" ;;
test) want="$build_pkgs $test_pkgs" ;;
e2e | all) want="$build_pkgs $test_pkgs $e2e_pkgs" ;;
*)
    echo "usage: $0 build|run|test|e2e|all" >&2
    exit 2
    ;;
esac

missing=""
for p in $want; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
# npm: Debian's, unless one came with another Node.js.
case "$want" in *chromium*)
    if [ ! -f "$mqttjs_dir/mqtt.min.js" ] && ! command -v npm >/dev/null 2>&1; then
        missing="$missing npm"
    fi ;;
esac

if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=""
    elif command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-deps: missing packages:$missing" >&2
        echo "install-deps: not root and no sudo; install them and run again" >&2
        exit 1
    fi

    echo "install-deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -q --no-install-recommends $missing
    # prometheus is here for promtool (tests/integration/test_deploy_kit.py); the
    # server its package starts under systemd is not wanted on a build machine.
    case " $missing " in
    *" prometheus "*)
        if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
            $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
        fi
        ;;
    esac
fi

case "$want" in *chromium*)
    if [ ! -f "$mqttjs_dir/mqtt.min.js" ]; then
        echo "install-deps: fetching mqtt@$MQTTJS_VERSION (npm) into $mqttjs_dir"
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
        (cd "$tmp" && npm pack "mqtt@$MQTTJS_VERSION" --silent >/dev/null)
        tar -xzf "$tmp/mqtt-$MQTTJS_VERSION.tgz" -C "$tmp" package/dist/mqtt.min.js
        mkdir -p "$mqttjs_dir"
        mv "$tmp/package/dist/mqtt.min.js" "$mqttjs_dir/mqtt.min.js"
    fi ;;
esac
exit 0
