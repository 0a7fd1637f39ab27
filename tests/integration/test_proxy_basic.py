"""The daemon end to end: MQTT in (paho and raw), exact records out."""
import threading

import paho.mqtt.client as mqtt
from confluent_kafka import Consumer

import m2k
from m2k import Raw, publish, puback


def paho_client(port, client_id, username=None):
    c = mqtt.Client(client_id=client_id, clean_session=True, protocol=mqtt.MQTTv311)
    if username is not None:
        c.username_pw_set(username, "secret")
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    return c


def cluster_topics(bootstrap):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "m2k-topics", "log_level": 3})
    try:
        return set(c.list_topics(timeout=10).topics)
    finally:
        c.close()


def test_qos_0_1_2_from_many_paho_clients(daemon, mock_kafka):
    d = daemon()
    n_clients, per_client = 4, 30
    clients = [paho_client(d.port, f"paho{c}", username="alice" if c == 0 else None)
               for c in range(n_clients)]
    infos = []
    for i in range(per_client):
        for c, cl in enumerate(clients):
            infos.append(cl.publish(f"sensors/s{c}/temperature", f"c{c}-{i:03d}", qos=i % 3))
    for info in infos:
        info.wait_for_publish(20)
        assert info.is_published()
    for cl in clients:
        cl.disconnect()
        cl.loop_stop()

    recs = m2k.assert_records(mock_kafka.bootstrap, "temperature", n_clients * per_client)
    by_key = {}
    for r in recs:
        c, i = r.value.decode().split("-")
        c = int(c[1:])
        assert r.key == f"s{c}".encode()
        assert r.headers == m2k.expected_headers(
            f"sensors/s{c}/temperature", f"paho{c}", int(i) % 3,
            username="alice" if c == 0 else None)
        by_key.setdefault(r.key, []).append(r.value)
    # Each MQTT topic keeps its order (one key, one partition).
    for c in range(n_clients):
        assert by_key[f"s{c}".encode()] == [f"c{c}-{i:03d}".encode() for i in range(per_client)]


def test_raw_qos1_puback_and_exact_record(daemon, mock_kafka):
    d = daemon()
    cl = Raw(d.port).connect("raw1", username="bob", password="pw")
    cl.send(publish("sensors/7/temperature", b"\x00\x01bin", qos=1, pid=0x1234))
    cl.expect(puback(0x1234), timeout=15)
    cl.send(publish("sensors/7/temperature", "q0", qos=0))
    cl.send(m2k.PINGREQ)
    cl.expect(m2k.PINGRESP)  # QoS 0 gets no answer; the ping proves it
    recs = m2k.assert_records(mock_kafka.bootstrap, "temperature", 2)
    assert [(r.key, r.value) for r in recs] == [(b"7", b"\x00\x01bin"), (b"7", b"q0")]
    assert recs[0].headers == m2k.expected_headers("sensors/7/temperature", "raw1", 1,
                                                   username="bob")
    assert recs[1].headers == m2k.expected_headers("sensors/7/temperature", "raw1", 0,
                                                   username="bob")


def test_regex_rule_default_key_and_retain_header(daemon, mock_kafka):
    d = daemon()
    cl = Raw(d.port).connect("rx")
    cl.send(publish("plant/p1/line/3", "on", qos=1, pid=1, retain=True))
    cl.expect(puback(1), timeout=15)
    recs = m2k.assert_records(mock_kafka.bootstrap, "plant-p1", 1)
    assert recs[0].key == b"plant/p1/line/3"
    assert recs[0].value == b"on"
    assert recs[0].headers == m2k.expected_headers("plant/p1/line/3", "rx", 1, retain=True)


def test_headers_off(daemon, mock_kafka):
    d = daemon({"headers": False})
    cl = Raw(d.port).connect("nohdr")
    cl.send(publish("test/a", "x", qos=1, pid=1))
    cl.expect(puback(1), timeout=15)
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 1)
    assert recs[0].headers == {}


def test_qos1_same_packet_id_after_puback_is_a_new_message(daemon, mock_kafka):
    d = daemon()
    cl = Raw(d.port).connect("reuse")
    for v in ("first", "second"):
        cl.send(publish("test/reuse", v, qos=1, pid=9, dup=(v == "second")))
        cl.expect(puback(9), timeout=15)
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 2)
    assert [r.value for r in recs] == [b"first", b"second"]


def test_pipelined_qos1_acked_in_order(daemon, mock_kafka):
    d = daemon()
    cl = Raw(d.port).connect("pipe")
    n = 200
    cl.send(b"".join(publish("test/pipe", f"{i}", qos=1, pid=i) for i in range(1, n + 1)))
    for i in range(1, n + 1):
        cl.expect(puback(i), timeout=15)
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", n)
    assert [r.value for r in recs] == [f"{i}".encode() for i in range(1, n + 1)]


def test_unmapped_disconnect(daemon, mock_kafka):
    d = daemon({"unmapped": "disconnect"})
    cl = Raw(d.port).connect("unm")
    mark = d.mark()
    cl.send(publish("nowhere/x", "x", qos=1, pid=1))
    cl.expect_close()  # no PUBACK
    d.wait_log(m2k.line("closing: topic 'nowhere/x' is not mapped: no rule matches",
                        level="warn", client="unm"), since=mark)
    Raw(d.port).connect("after")  # still serving
    # Nothing was produced anywhere.
    assert {t for t in cluster_topics(mock_kafka.bootstrap) if not t.startswith("__")} == set()


def test_unmapped_drop_acks_and_produces_nothing(daemon, mock_kafka):
    d = daemon({"unmapped": "drop"})
    cl = Raw(d.port).connect("drop")
    mark = d.mark()
    cl.send(publish("nowhere/x", "x", qos=1, pid=1))
    cl.expect(puback(1), timeout=15)
    d.wait_log(m2k.line("dropped a message on topic 'nowhere/x': no rule matches", level="warn",
                        client="drop"), since=mark)
    cl.send(publish("test/mapped", "y", qos=1, pid=2))
    cl.expect(puback(2), timeout=15)
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 1)
    assert recs[0].value == b"y"
    # The dropped one went nowhere: "test" is the only topic in the cluster.
    assert {t for t in cluster_topics(mock_kafka.bootstrap) if not t.startswith("__")} == {"test"}


def test_unmapped_to_topic(daemon, mock_kafka):
    d = daemon({"unmapped": {"topic": "unrouted"}})
    cl = Raw(d.port).connect("unr")
    cl.send(publish("nowhere/x", "x", qos=1, pid=1))
    cl.expect(puback(1), timeout=15)
    recs = m2k.assert_records(mock_kafka.bootstrap, "unrouted", 1)
    assert recs[0].value == b"x"
    assert recs[0].headers["mqtt.topic"] == b"nowhere/x"


def test_many_raw_clients_in_parallel(daemon, mock_kafka):
    d = daemon()
    n_clients, per_client = 20, 25
    errors = []

    def run(c):
        try:
            cl = Raw(d.port).connect(f"par{c}")
            for i in range(1, per_client + 1):
                cl.send(publish(f"sensors/p{c}/temperature", f"{c}:{i}", qos=1 if i % 2 else 2, pid=i))
                if i % 2:
                    cl.expect(puback(i), timeout=20)
                else:
                    cl.expect(m2k.pubrec(i), timeout=20)
                    cl.send(m2k.pubrel(i))
                    cl.expect(m2k.pubcomp(i), timeout=20)
            cl.send(m2k.DISCONNECT)
            cl.close()
        except Exception as e:  # reported below
            errors.append(f"client {c}: {e!r}")

    threads = [threading.Thread(target=run, args=(c,)) for c in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [t for t in threads if t.is_alive()] == [], "clients still running after 60 s"
    assert errors == []
    recs = m2k.assert_records(mock_kafka.bootstrap, "temperature", n_clients * per_client,
                              timeout=30)
    by_key = {}
    for r in recs:
        by_key.setdefault(r.key, []).append(r.value)
    for c in range(n_clients):
        assert by_key[f"p{c}".encode()] == [f"{c}:{i}".encode() for i in range(1, per_client + 1)]


def java_murmur2(data):
    """Kafka's Utils.murmur2 (the Java client's key hash), as an unsigned 32-bit value."""
    m, r = 0x5BD1E995, 24
    h = 0x9747B28C ^ len(data)
    n4 = len(data) // 4
    for i in range(n4):
        k = int.from_bytes(data[4 * i:4 * i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = data[4 * n4:]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if len(tail) >= 1:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def test_keys_partitioned_like_the_java_client(daemon, mock_kafka):
    """The default partitioner is the Java client's (murmur2 of the key,
    positive, modulo the partition count): a key lands where Confluent MQTT
    Proxy and any Java producer put it."""
    # Kafka's own test vectors (UtilsTest.testMurmur2), signed as Java prints them.
    for s, want in [("21", -973932308), ("foobar", -790332482),
                    ("a-little-bit-long-string", -985981536),
                    ("a-little-bit-longer-string", -1486304829),
                    ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
                    ("abc", 479470107)]:
        h = java_murmur2(s.encode())
        assert (h - (1 << 32) if h & 0x80000000 else h) == want, s
    mock_kafka.cmd("create temperature 7 1")
    d = daemon()
    c = m2k.Raw(d.port).connect("part")
    devices = [f"dev-{i}" for i in range(40)]
    for i, dev in enumerate(devices):
        c.send(m2k.publish(f"sensors/{dev}/temperature", b"21.5", qos=1, pid=i + 1))
        c.expect(m2k.puback(i + 1))
    recs = m2k.assert_records(mock_kafka.bootstrap, "temperature", len(devices))
    got = {r.key.decode(): r.partition for r in recs}
    want = {dev: (java_murmur2(dev.encode()) & 0x7FFFFFFF) % 7 for dev in devices}
    assert got == want
    assert len(set(want.values())) > 3  # the keys really spread
    c.close()
