#!/bin/sh
# Drives m2k-mock-kafka through every command and compares each answer
# exactly; the bootstrap line is checked by pattern (its ports vary).
set -eu
tool="$1"
out=$(printf '%s\n' \
    'create t1 2 3' \
    'create t2' \
    'create t3 0' \
    'create t4 1 4' \
    'down 1' \
    'up 1' \
    'down -1' \
    'up -1' \
    'down 4' \
    'down 0' \
    'down x' \
    'rtt -1 50' \
    'rtt 2 0' \
    'rtt 2 -5' \
    'push_errors Produce 3 NOT_LEADER_FOR_PARTITION' \
    'push_errors 0 2 TOPIC_AUTHORIZATION_FAILED RD_KAFKA_RESP_ERR__TRANSPORT' \
    'push_errors produce 2 29' \
    'push_errors Produce 3 A B' \
    'push_errors Produce 1 NO_SUCH_ERROR' \
    'push_errors Bogus 1 NOT_LEADER_FOR_PARTITION' \
    'push_errors Produce 0 NOT_LEADER_FOR_PARTITION' \
    'clear_errors Produce' \
    'topic_error t1 LEADER_NOT_AVAILABLE' \
    'topic_error t1 NO_ERROR' \
    'leader t1 0 2' \
    'leader t1 0 -1' \
    'leader t1 x 2' \
    '' \
    'frobnicate' \
    'quit' \
    'down 1' | "$tool" --brokers 3 --topic pre)

expected='OK
OK
ERR bad partition count: 0
ERR bad replication factor: 4
OK
OK
OK
OK
ERR bad broker id: 4
ERR bad broker id: 0
ERR bad broker id: x
OK
OK
ERR bad rtt: -5
OK
OK
OK
ERR give one error (repeated) or <count> errors
ERR unknown error: NO_SUCH_ERROR
ERR unknown api: Bogus
ERR bad count (1..64): 0
OK
OK
OK
OK
OK
ERR bad partition: x
ERR empty command
ERR unknown command or wrong arguments: frobnicate
OK'

first=$(printf '%s\n' "$out" | head -n 1)
rest=$(printf '%s\n' "$out" | tail -n +2)
case "$first" in
"BOOTSTRAP 127.0.0.1:"*",127.0.0.1:"*",127.0.0.1:"*) ;;
*) echo "bad first line: $first"; exit 1 ;;
esac
if [ "$rest" != "$expected" ]; then
    echo "answers differ:"
    printf '%s\n' "$rest" >/tmp/m2k_mock_got.$$
    printf '%s\n' "$expected" | diff - /tmp/m2k_mock_got.$$ || true
    rm -f /tmp/m2k_mock_got.$$
    exit 1
fi

# End of stdin alone ends the process.
printf '' | "$tool" >/dev/null
# Bad command line.
if "$tool" --brokers 0 2>/dev/null; then echo "--brokers 0 accepted"; exit 1; fi
echo ok
