"""mqtt2kafka route: the dry run of one PUBLISH through the daemon's topic
map and ACL, exact output and exit status. Runs the real binary; no network."""
import os
import subprocess

import pytest

import m2k

BIN = m2k.DAEMON

CONFIG = """\
kafka:
  bootstrap_servers: embedded
topics:
  - mqtt: "sensors/+/temperature"
    kafka: temperature
    key: "{1}"
  - regex: "^plant/([^/]+)/(.+)$"
    kafka: "plant-{1}"
    key: ""
  - mqtt: "tenant/#"
    kafka: "t-{username}"
auth:
  acl_file: acl
  acl_deny: drop
unmapped: {unmapped}
headers: {headers}
"""

ACL = "topic write sensors/#\ntopic write plant/#\nuser alice\ntopic write tenant/#\n"


def write(tmp_path, unmapped="disconnect", headers="true"):
    (tmp_path / "acl").write_text(ACL)
    cfg = tmp_path / "m2k.yaml"
    cfg.write_text(CONFIG.replace("{unmapped}", unmapped).replace("{headers}", headers))
    return cfg


def headers(topic, client_id, user=None):
    return (f"headers:  mqtt.topic={topic}\n"
            f"          mqtt.client_id={client_id}\n"
            "          mqtt.qos=<the PUBLISH's QoS: 0, 1 or 2>\n"
            "          mqtt.retain=1 (only when the PUBLISH has RETAIN)\n"
            + (f"          mqtt.username={user}\n" if user else ""))


def route(*args):
    return subprocess.run([BIN, "route", *args], capture_output=True, text=True, timeout=30)


def test_filter_rule_with_a_capture_key(tmp_path):
    cfg = write(tmp_path)
    r = route("-c", str(cfg), "sensors/17/temperature", "--client-id", "sensor-17")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == (
        "topic:    sensors/17/temperature\n"
        "client:   sensor-17, no user name\n"
        f"rule:     {cfg}:4:5: topics[0] mqtt: \"sensors/+/temperature\"\n"
        "kafka:    temperature\n"
        "key:      17\n" + headers("sensors/17/temperature", "sensor-17"))


def test_regex_rule_without_key_and_without_headers(tmp_path):
    cfg = write(tmp_path, headers="false")
    r = route("--config", str(cfg), "plant/3/status")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == (
        "topic:    plant/3/status\n"
        "client:   route-dry-run, no user name\n"
        f"rule:     {cfg}:7:5: topics[1] regex: \"^plant/([^/]+)/(.+)$\"\n"
        "kafka:    plant-3\n"
        "key:      none (key: \"\": any partition)\n"
        "headers:  none (headers: false)\n")


def test_username_in_the_template_and_the_acl(tmp_path):
    cfg = write(tmp_path)
    r = route(f"-c={cfg}", "tenant/a/b", "--username", "alice", "--client-id", "c1")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == (
        "topic:    tenant/a/b\n"
        "client:   c1, user alice\n"
        f"rule:     {cfg}:10:5: topics[2] mqtt: \"tenant/#\"\n"
        "kafka:    t-alice\n"
        "key:      tenant/a/b\n" + headers("tenant/a/b", "c1", "alice"))
    # Without the user the ACL refuses it (acl_deny: drop).
    r = route("-c", str(cfg), "tenant/a/b")
    assert (r.returncode, r.stderr) == (3, "")
    assert r.stdout == (
        "topic:    tenant/a/b\n"
        "client:   route-dry-run, no user name\n"
        f"refused:  the ACL ({tmp_path / 'acl'}) does not let anonymous clients publish here: "
        "the message is dropped (acknowledged, not produced; auth.acl_deny: drop)\n")


@pytest.mark.parametrize("unmapped,rc,lines", [
    ("disconnect", 3, ["unmapped: no rule matches; unmapped: disconnect: the client is "
                       "disconnected"]),
    ("drop", 3, ["unmapped: no rule matches; unmapped: drop: acknowledged and not produced"]),
    ("{topic: lost}", 0, ["unmapped: no rule matches; unmapped: {topic: lost}",
                          "kafka:    lost", "key:      sensors/x"]
     + headers("sensors/x", "route-dry-run").splitlines()),
])
def test_unmapped(tmp_path, unmapped, rc, lines):
    cfg = write(tmp_path, unmapped=unmapped)
    r = route("-c", str(cfg), "sensors/x")
    assert (r.returncode, r.stderr) == (rc, "")
    assert r.stdout == "topic:    sensors/x\nclient:   route-dry-run, no user name\n" + \
        "".join(l + "\n" for l in lines)


def test_invalid_topic_usage_and_config_errors(tmp_path):
    cfg = write(tmp_path)
    r = route("-c", str(cfg), "sensors/+/temperature")
    assert (r.returncode, r.stderr) == (3, "")
    assert r.stdout.endswith("refused:  not a valid MQTT topic name (empty, wildcards, or a NUL): "
                             "the client is disconnected (protocol error)\n")
    r = route("-c", str(cfg))
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr.startswith("mqtt2kafka route: no topic\nusage: mqtt2kafka route ")
    r = route("-c", str(cfg), "a", "b")
    assert r.returncode == 2 and r.stderr.startswith("mqtt2kafka route: unexpected argument 'b'\n")
    r = route("-c", str(cfg), "a", "--username")
    assert r.returncode == 2 and r.stderr.startswith("mqtt2kafka route: --username needs a value\n")
    r = route("--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: mqtt2kafka route [-c FILE] TOPIC")
    (tmp_path / "acl").unlink()
    r = route("-c", str(cfg), "a")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == f"{cfg}:13:3: auth: {tmp_path / 'acl'}: cannot open: No such file or " \
                       "directory\n"
    cfg.write_text("kafka: {bootstrap_servers: embedded}\nmqtt: {max_inflight: 0}\n")
    r = route("-c", str(cfg), "a")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == f"{cfg}:2:22: mqtt.max_inflight: expected an integer from 1 to 65535, " \
                       "got \"0\"\n"


def test_the_example_in_operations_md():
    """docs/operations.md's example, run from the source directory."""
    with open(os.path.join(m2k.SOURCE_DIR, "docs", "operations.md")) as f:
        lines = f.read().split("\n")
    start = lines.index("    $ mqtt2kafka route -c config/mqtt2kafka.yaml sensors/17/temperature "
                        "--client-id sensor-17")
    end = lines.index("", start)
    expected = "".join(l[4:] + "\n" for l in lines[start + 1:end])
    r = subprocess.run([BIN, "route", "-c", "config/mqtt2kafka.yaml", "sensors/17/temperature",
                        "--client-id", "sensor-17"], cwd=m2k.SOURCE_DIR, capture_output=True,
                       text=True, timeout=30)
    assert (r.returncode, r.stdout, r.stderr) == (0, expected, "")


def test_mapped_but_refused_kafka_topic(tmp_path):
    """Issue 19 bug 6: the daemon refuses such a message whatever unmapped:
    says; the dry run says so (not "unmapped")."""
    cfg = write(tmp_path, unmapped="drop")
    r = route("-c", str(cfg), "plant/a b/x")
    assert (r.returncode, r.stderr) == (3, "")
    assert r.stdout == (
        "topic:    plant/a b/x\n"
        "client:   route-dry-run, no user name\n"
        f"rule:     {cfg}:7:5: topics[1] regex: \"^plant/([^/]+)/(.+)$\"\n"
        "refused:  it renders the Kafka topic 'plant-a b', which is not a legal Kafka topic name "
        "(a-z A-Z 0-9 . _ -, 1..249 characters): never acknowledged, the client is "
        "disconnected\n")


def test_regex_rules_skipped_for_long_topics(tmp_path):
    cfg = write(tmp_path)
    cfg.write_text(cfg.read_text() + "mqtt:\n  max_regex_topic_length: 16\n")
    r = route("-c", str(cfg), "plant/1234567/xy")  # 16 bytes: the regex applies
    assert (r.returncode, r.stdout.splitlines()[3]) == (0, "kafka:    plant-1234567")
    r = route("-c", str(cfg), "plant/1234567/xyz")
    assert (r.returncode, r.stderr) == (3, "")
    assert r.stdout.splitlines()[2:] == [
        "unmapped: no rule matches (regex rules skipped: the topic is longer than "
        "mqtt.max_regex_topic_length); unmapped: disconnect: the client is disconnected"]
