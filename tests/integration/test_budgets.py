"""Budgets a client cannot exceed (issue 20) and mapped messages the daemon
refuses rather than acknowledges (issue 19, bug 6): raw clients, exact bytes,
exact log lines after a mark, exact counters. Every wait is bounded."""
import m2k
from m2k import Raw
from test_metrics import scrape
from test_session_limits import start


def refused_line(topic, ktopic, why):
    return m2k.line(f"closing: refused a message on topic '{topic}': it renders the Kafka topic "
                    f"'{ktopic}', {why}; not acknowledged", level="warn", client="dev1")


ILLEGAL = "which is not a legal Kafka topic name (a-z A-Z 0-9 . _ -, 1..249 characters)"


def test_mapped_message_with_a_refused_kafka_topic_is_never_acked(daemon):
    # unmapped: drop would acknowledge an unmapped message: a mapped one whose
    # Kafka topic cannot be used is closed on instead, whatever `unmapped` says.
    topics = [{"regex": "^plant/([^/]+)/(.+)$", "kafka": "plant-{1}"},
              {"regex": "^raw/([^/]+)$", "kafka": "{1}"},
              {"regex": "^sys/([^/]+)$", "kafka": "_sys-{1}"}]
    d, mport = start(daemon, topics=topics, unmapped="drop", kafka={"max_topics": 3})
    cases = [("plant/a b/x", "plant-a b", ILLEGAL),
             ("raw/..", "..", ILLEGAL),
             ("raw/_schemas", "_schemas",
              "which starts with '_' though the rule's template does not (Kafka and its tools "
              "keep such names)")]
    for topic, ktopic, why in cases:
        mark = d.mark()
        c = Raw(d.port).connect("dev1")
        c.send(m2k.publish(topic, b"v", qos=1, pid=1))
        c.expect_close(b"")  # no PUBACK
        d.wait_log(refused_line(topic, ktopic, why), since=mark)
    # kafka.max_topics: 3 distinct Kafka topics, then a known one still goes.
    c = Raw(d.port).connect("dev1")
    for pid, topic in enumerate(["plant/p1/x", "plant/p2/x", "sys/a", "plant/p1/y"], 1):
        c.send(m2k.publish(topic, b"v", qos=1, pid=pid))
        c.expect(m2k.puback(pid))
    mark = d.mark()
    c.send(m2k.publish("plant/p3/x", b"v", qos=1, pid=9))
    c.expect_close(b"")
    d.wait_log(refused_line("plant/p3/x", "plant-p3",
                            "a new topic past kafka.max_topics distinct Kafka topics"), since=mark)
    s = scrape(mport)
    assert s['mqtt2kafka_messages_refused_total{reason="illegal_topic"}'] == 2
    assert s['mqtt2kafka_messages_refused_total{reason="reserved_topic"}'] == 1
    assert s['mqtt2kafka_messages_refused_total{reason="topic_limit"}'] == 1
    assert s["mqtt2kafka_kafka_topics"] == 3
    assert s['mqtt2kafka_unmapped_total{action="drop"}'] == 0


def test_regex_rules_skip_topics_over_max_regex_topic_length(daemon):
    topics = [{"regex": "(.+)/alarm", "kafka": "alarms"}, {"mqtt": "f/#", "kafka": "test"}]
    d, _ = start(daemon, topics=topics, mqtt={"max_regex_topic_length": 64})
    c = Raw(d.port).connect("dev1")
    at = "a" * 58 + "/alarm"  # 64 bytes: the regex is tried
    c.send(m2k.publish(at, b"v", qos=1, pid=1))
    c.expect(m2k.puback(1))
    c.send(m2k.publish("f/" + "a" * 70, b"v", qos=1, pid=2))  # filter rules still apply
    c.expect(m2k.puback(2))
    mark = d.mark()
    over = "a" * 59 + "/alarm"
    c.send(m2k.publish(over, b"v", qos=1, pid=3))
    c.expect_close(b"")
    d.wait_log(m2k.line(f"closing: topic '{over[:60]}...' is not mapped: no rule matches (regex "
                        "rules skipped: the topic is longer than mqtt.max_regex_topic_length)",
                        level="warn", client="dev1"), since=mark)


def test_connect_longer_than_the_caps_allow_is_refused_from_its_header(daemon):
    d, mport = start(daemon)
    mark = d.mark()
    c = Raw(d.port)
    # 999,000 bytes announced; the caps allow 5 + 12 + 258 + 1026 + 4098 + 258 + 65537.
    c.send(b"\x10" + m2k.enc_len(999000 - 4) + b"\x00\x04MQTT")
    c.expect_close(b"")
    d.wait_log(m2k.line("closing: CONNECT refused: 999000 bytes announced, over the 71194 a "
                        "CONNECT within mqtt.max_client_id_length, max_username_length, "
                        "max_will_topic_length and max_will_payload can have", level="warn",
                        client="-"), since=mark)
    assert scrape(mport)['mqtt2kafka_connections_refused_total{reason="connect_too_long"}'] == 1


def test_a_started_packet_must_complete_within_packet_timeout(daemon):
    # Keepalive 0 (no keepalive deadline) and a PUBLISH 100 bytes short.
    d, mport = start(daemon, mqtt={"packet_timeout_s": 1})
    c = Raw(d.port).connect("dev1", keepalive=0)
    pkt = m2k.publish("test/slow", b"x" * 1000, qos=1, pid=1)
    mark = d.mark()
    c.send(pkt[:-100])
    c.expect_close(b"", timeout=10)
    d.wait_log(m2k.line(f"closing: a packet not completed within mqtt.packet_timeout_s 1 s "
                        f"({len(pkt) - 100} bytes of it received)", level="warn", client="dev1"),
               since=mark)
    s = scrape(mport)
    assert s['mqtt2kafka_input_closed_total{reason="packet_timeout"}'] == 1
    assert s["mqtt2kafka_input_buffer_bytes"] == 0


def test_input_budget_closes_the_largest_partial_packet_first(daemon):
    d, mport = start(daemon, mqtt={"max_input_buffer_bytes": 65536})
    big = Raw(d.port).connect("big")
    small = Raw(d.port).connect("small")
    pa = m2k.publish("test/a", b"a" * 50000, qos=1, pid=1)
    pb = m2k.publish("test/b", b"b" * 100, qos=1, pid=2)
    big.send(pa[:40000])  # buffered in 65,536 bytes: the whole budget
    m2k.wait_until(lambda: scrape(mport)["mqtt2kafka_input_buffer_bytes"] == 65536, 5,
                   "40,000 bytes buffered")
    mark = d.mark()
    small.send(pb[:10])  # 256 bytes more: over
    big.expect_close(b"")
    d.wait_log(m2k.line("closing: 65536 bytes of a partly received packet buffered, the most of "
                        "any connection, while all hold 65792, over mqtt.max_input_buffer_bytes "
                        "65536", level="warn", client="big"), since=mark)
    small.send(pb[10:])
    small.expect(m2k.puback(2))
    s = scrape(mport)
    assert s['mqtt2kafka_input_closed_total{reason="input_budget"}'] == 1
    assert s["mqtt2kafka_input_buffer_bytes"] == 0
