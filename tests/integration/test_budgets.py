"""Budgets a client cannot exceed (issue 20) and mapped messages the daemon
refuses rather than acknowledges (issue 19, bug 6): raw clients, exact bytes,
exact log lines after a mark, exact counters. Every wait is bounded."""
import m2k
from m2k import Raw
from test_metrics import metrics_overrides, scrape


def start(daemon, **over):
    d = daemon(m2k.merge(metrics_overrides(0), over))
    m = d.wait_log(m2k.line(r"metrics listening on 127\.0\.0\.1:(\d+) \(GET /metrics, /healthz, "
                            r"/readyz\)", level="info", regex=True), since=0)
    return d, int(m.group(1))


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
