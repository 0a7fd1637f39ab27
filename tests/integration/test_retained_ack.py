"""A QoS 1/2 PUBLISH with RETAIN 1 is acked only once both its record and
its copy to the retained topic are in Kafka (issue 15): with the retained
topic's leader down the copy times out, and the client is closed without an
ack (MQTT 3.1.1) or gets PUBACK 0x80 (MQTT 5), though the mapped record went
in; with the broker back the resend is acked and Kafka holds exactly what
was produced. Every wait is bounded."""
import m2k
from m2k import Raw, packet, enc_str
from test_mqtt5 import connect5, connack5, reason5, NOT_TAKEN
from test_proxy_faults import NOT_CONFIRMED
from test_subscribe import metric

CONFIG = {
    "retained": {"topic": "mqtt-retained"},
    "metrics": {"listen": "127.0.0.1:0"},
    # Fast failure while broker 3 is down, and a fast reconnect once it is up.
    "kafka": {"properties": {"linger.ms": 5, "message.timeout.ms": 3000,
                             "reconnect.backoff.max.ms": 100}},
}


def test_retained_copy_failure_withholds_the_ack(daemon, mock_kafka):
    # The mapped topic on broker 1, the retained topic on broker 3.
    mock_kafka.cmd("create test 1")
    mock_kafka.cmd("leader test 0 1")
    mock_kafka.cmd("create mqtt-retained 1")
    mock_kafka.cmd("leader mqtt-retained 0 3")
    d = daemon(CONFIG)
    port = int(d.wait_log(m2k.line(r"metrics listening on 127\.0\.0\.1:(\d+) \(GET /metrics, "
                                   r"/healthz, /readyz\)", level="info", regex=True),
                          since=0).group(1))
    d.wait_log(m2k.line("kafka consumer: reading mqtt-retained partitions 0..0 from the "
                        "beginning", level="info"), since=0)
    mock_kafka.cmd("down 3")

    cl = Raw(d.port).connect("lamp311")
    mark = d.mark()
    cl.send(m2k.publish("test/lamp", "on", qos=1, pid=1, retain=True))
    cl.expect_close(timeout=15)  # no PUBACK before the close
    d.wait_log(m2k.line("Kafka did not take the retained copy of a QoS 1 message on topic "
                        "'test/lamp': Local: Message timed out", level="error",
                        client="lamp311"), since=mark)
    d.wait_log(m2k.line(NOT_CONFIRMED, level="warn", client="lamp311"), since=mark)

    v5 = Raw(d.port)
    v5.send(connect5("lamp5"))
    assert v5.recv_packet() == connack5()
    v5.send(packet(0x33, enc_str("test/lamp5") + b"\x00\x02\x00" + b"on"))
    v5.expect(reason5(0x40, 0x80, NOT_TAKEN, pid=2), timeout=15)
    v5.close()
    # The copies were lost for the clients to resend, not counted as lost.
    assert metric(port, "mqtt2kafka_retained_copies_lost_total") == 0

    mock_kafka.cmd("up 3")
    cl = Raw(d.port).connect("lamp311")
    cl.send(m2k.publish("test/lamp", "on", qos=1, pid=1, dup=True, retain=True))
    cl.expect(m2k.puback(1), timeout=15)
    cl.close()
    # Each first try's record went in (at least once); the copy once.
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 3)
    assert [(r.headers["mqtt.topic"], r.headers["mqtt.retain"]) for r in recs] == [
        (b"test/lamp", b"1"), (b"test/lamp5", b"1"), (b"test/lamp", b"1")]
    recs = m2k.assert_records(mock_kafka.bootstrap, "mqtt-retained", 1)
    assert [(r.key, r.value, r.header_list) for r in recs] == [
        (b"test/lamp", b"on", [("mqtt.qos", b"1")])]
    m2k.wait_until(lambda: metric(port, "mqtt2kafka_retained_messages") == 1, 15,
                   "the retained message read back")
