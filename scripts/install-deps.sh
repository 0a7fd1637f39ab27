#!/bin/sh
# Install the Debian packages a make target needs, only those that are missing.
# Usage: scripts/install-deps.sh build|test|e2e|all
# Uses sudo when not root. Idempotent: installs nothing when all are present.
set -eu

build_pkgs="build-essential cmake pkg-config libuv1-dev librdkafka-dev libyaml-dev libcjson-dev libssl-dev libhttp-parser-dev gzip"
test_pkgs="libcmocka-dev clang-format python3 python3-pytest python3-yaml python3-paho-mqtt python3-confluent-kafka mosquitto mosquitto-clients kcat curl openssl procps dpkg-dev openjdk-17-jre-headless maven"
# make test-e2e: the CQL driver of the query, a JDK to build our sink connector (tests/e2e/sink).
e2e_pkgs="python3-cassandra openjdk-17-jdk-headless"

case "${1:-build}" in
build) want="$build_pkgs" ;;
test) want="$build_pkgs $test_pkgs" ;;
e2e | all) want="$build_pkgs $test_pkgs $e2e_pkgs" ;;
*)
    echo "usage: $0 build|test|e2e|all" >&2
    exit 2
    ;;
esac

missing=""
for p in $want; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

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
