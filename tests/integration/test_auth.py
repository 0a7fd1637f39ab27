"""Authentication and publish ACL end to end: a password file written by
mosquitto_passwd, CONNACK return codes as exact bytes, the ACL on QoS 1
publishes under both acl_deny policies, SIGHUP reload of the files (also with
an unchanged YAML; a broken file rejects the whole reload, YAML changes
included, and keeps the old files), the refusals on /metrics. Every wait is
bounded."""
import re
import signal
import subprocess


import m2k
from test_metrics import scrape

CONNACK_BAD_CREDENTIALS = bytes([0x20, 0x02, 0x00, 0x04])
CONNACK_NOT_AUTHORIZED = bytes([0x20, 0x02, 0x00, 0x05])


def make_passwd(tmp_path, users):
    pw = tmp_path / "passwd"
    first = True
    for user, password in users.items():
        args = ["mosquitto_passwd", "-b"] + (["-c"] if first else []) + [str(pw), user, password]
        subprocess.run(args, check=True, capture_output=True, timeout=30)
        first = False
    return pw


def auth_daemon(daemon, tmp_path, acl=None, **auth):
    pw = make_passwd(tmp_path, {"alice": "s3cret-Pw", "bob": "hunter2"})
    cfg = {"password_file": str(pw)}
    if acl is not None:
        aclf = tmp_path / "acl"
        aclf.write_text(acl)
        cfg["acl_file"] = str(aclf)
    cfg.update(auth)
    return daemon({"auth": cfg})


def test_right_password_publishes(daemon, mock_kafka, tmp_path):
    d = auth_daemon(daemon, tmp_path)
    c = m2k.Raw(d.port).connect("c-alice", username="alice", password="s3cret-Pw")
    c.send(m2k.publish("test/a", b"hello", qos=1, pid=7))
    c.expect(m2k.puback(7))
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 1)
    assert recs[0].value == b"hello"
    assert recs[0].headers["mqtt.username"] == b"alice"
    c.close()


def test_wrong_password_connack_4_and_no_password_in_log(daemon, mock_kafka, tmp_path):
    d = auth_daemon(daemon, tmp_path)
    c = m2k.Raw(d.port)
    c.send(m2k.connect("c-bad", username="alice", password="Wrong-Guess-42"))
    c.expect(CONNACK_BAD_CREDENTIALS)
    assert c.closed_within(5)
    m = d.wait_log(r"connection refused \(CONNACK 4\): client id 'c-bad', user 'alice': "
                   r"bad user name or password")
    assert m, d.log()
    # An unknown user gets the same answer.
    c2 = m2k.Raw(d.port)
    c2.send(m2k.connect("c-nobody", username="mallory", password="x"))
    c2.expect(CONNACK_BAD_CREDENTIALS, timeout=5)
    assert "Wrong-Guess-42" not in d.log()
    # A known user without a password is refused too.
    c3 = m2k.Raw(d.port)
    c3.send(m2k.connect("c-nopw", username="bob"))
    c3.expect(CONNACK_BAD_CREDENTIALS, timeout=5)
    # After failures the next answer from this address is delayed (logged).
    assert d.wait_log(r"answer delayed after recent failures from this address"), d.log()
    m2k.assert_no_records(mock_kafka.bootstrap, "test")


def test_anonymous_refused_connack_5(daemon, tmp_path):
    d = auth_daemon(daemon, tmp_path)
    c = m2k.Raw(d.port)
    c.send(m2k.connect("c-anon"))
    c.expect(CONNACK_NOT_AUTHORIZED)
    assert c.closed_within(5)
    assert d.wait_log(r"connection refused \(CONNACK 5\): client id 'c-anon', user '\(none\)': "
                      r"anonymous clients are not allowed"), d.log()


def test_anonymous_allowed_when_configured(daemon, tmp_path):
    d = auth_daemon(daemon, tmp_path, allow_anonymous=True)
    m2k.Raw(d.port).connect("c-anon2").close()


ACL = "user alice\ntopic write test/alice/#\n"


def test_acl_deny_qos1_disconnects(daemon, mock_kafka, tmp_path):
    d = auth_daemon(daemon, tmp_path, acl=ACL)
    c = m2k.Raw(d.port).connect("c1", username="alice", password="s3cret-Pw")
    c.send(m2k.publish("test/bob/x", b"no", qos=1, pid=3))
    assert c.closed_within(5)
    assert d.wait_log(r"client=c1 addr=127\.0\.0\.1:\d+ closing: the ACL does not allow "
                      r"publishing on topic 'test/bob/x' \(auth\.acl_deny: disconnect\)"), d.log()
    m2k.assert_no_records(mock_kafka.bootstrap, "test")
    # Allowed topic still works.
    c = m2k.Raw(d.port).connect("c2", username="alice", password="s3cret-Pw")
    c.send(m2k.publish("test/alice/x", b"yes", qos=1, pid=4))
    c.expect(m2k.puback(4))
    assert [r.value for r in m2k.assert_records(mock_kafka.bootstrap, "test", 1)] == [b"yes"]


def test_acl_deny_drop_acks_without_producing(daemon, mock_kafka, tmp_path):
    d = auth_daemon(daemon, tmp_path, acl=ACL, acl_deny="drop")
    c = m2k.Raw(d.port).connect("c1", username="alice", password="s3cret-Pw")
    c.send(m2k.publish("test/bob/x", b"no", qos=1, pid=3))
    c.expect(m2k.puback(3))
    c.send(m2k.publish("test/bob/x", b"no", qos=2, pid=4))
    c.expect(m2k.pubrec(4))
    c.send(m2k.pubrel(4))
    c.expect(m2k.pubcomp(4))
    assert d.wait_log(r"the ACL does not allow publishing on topic 'test/bob/x': dropped"), d.log()
    m2k.assert_no_records(mock_kafka.bootstrap, "test")
    assert not c.closed_within(0.3)


def test_will_topic_checked(daemon, tmp_path):
    d = auth_daemon(daemon, tmp_path, acl=ACL)
    c = m2k.Raw(d.port)
    c.send(m2k.connect("c-will", username="alice", password="s3cret-Pw",
                       will=("test/bob/will", b"bye", 0, False)))
    c.expect(CONNACK_NOT_AUTHORIZED)
    assert d.wait_log(r"the ACL does not allow publishing on the will topic 'test/bob/will'")


def reload(d, pattern):
    """SIGHUP, then waits for `pattern` and the reload's last line."""
    start = len(d.log())
    d.proc.send_signal(signal.SIGHUP)
    ok = m2k.wait_until(lambda: re.search(pattern, d.log()[start:]) and re.search(
        r"reload: (configuration applied|the running configuration stays unchanged)",
        d.log()[start:]), 10)
    assert ok, f"no {pattern!r} after SIGHUP:\n{d.log()}"
    return d.log()[start:]


def test_sighup_reload(daemon, mock_kafka, tmp_path):
    d = auth_daemon(daemon, tmp_path, acl=ACL)
    aclf = tmp_path / "acl"
    # A broken file: the whole reload is rejected, the old ACL stays in force.
    aclf.write_text("user alice\ntopic scribble test/#\n")
    log = reload(d, r"reload: auth files: .*/acl:2: unknown access 'scribble'")
    assert "reload: the running configuration stays unchanged" in log, log
    c = m2k.Raw(d.port).connect("c1", username="alice", password="s3cret-Pw")
    c.send(m2k.publish("test/alice/1", b"old-acl", qos=1, pid=1))
    c.expect(m2k.puback(1))
    c.send(m2k.publish("test/bob/1", b"denied", qos=1, pid=2))
    assert c.closed_within(5)
    # A good new file applies, to connections already open as well.
    c = m2k.Raw(d.port).connect("c2", username="alice", password="s3cret-Pw")
    aclf.write_text("user alice\ntopic write test/bob/#\n")
    reload(d, r"reload: password and ACL files reloaded")
    c.send(m2k.publish("test/bob/2", b"new-acl", qos=1, pid=3))
    c.expect(m2k.puback(3))
    c.send(m2k.publish("test/alice/2", b"now-denied", qos=1, pid=4))
    assert c.closed_within(5)
    vals = sorted(r.value for r in m2k.assert_records(mock_kafka.bootstrap, "test", 2))
    assert vals == [b"new-acl", b"old-acl"]


def test_sighup_unchanged_yaml_applies_new_password(daemon, mock_kafka, tmp_path):
    d = auth_daemon(daemon, tmp_path)
    yaml_before = d.config_path.read_bytes()
    open_conn = m2k.Raw(d.port).connect("c-open", username="alice", password="s3cret-Pw")
    subprocess.run(["mosquitto_passwd", "-b", str(tmp_path / "passwd"), "alice", "n3w-Secret"],
                   check=True, capture_output=True, timeout=30)
    log = reload(d, r"reload: password and ACL files reloaded")
    assert "reload: configuration applied" in log, log
    assert d.config_path.read_bytes() == yaml_before
    # The new password logs in, the old one no longer does.
    m2k.Raw(d.port).connect("c-new", username="alice", password="n3w-Secret").close()
    c = m2k.Raw(d.port)
    c.send(m2k.connect("c-old", username="alice", password="s3cret-Pw"))
    c.expect(CONNACK_BAD_CREDENTIALS, timeout=5)
    # A connection logged in with the old password stays up.
    open_conn.send(m2k.publish("test/a", b"still-here", qos=1, pid=5))
    open_conn.expect(m2k.puback(5))
    assert [r.value for r in m2k.assert_records(mock_kafka.bootstrap, "test", 1)] == [
        b"still-here"]


def test_sighup_new_password_file_path(daemon, mock_kafka, tmp_path):
    d = auth_daemon(daemon, tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    pw2 = make_passwd(other, {"carol": "c4rol-Pw"})
    d.rewrite_config({"auth": {"password_file": str(pw2)}})
    reload(d, r"reload: password and ACL files reloaded \(password file .*/other/passwd, ")
    m2k.Raw(d.port).connect("c-carol", username="carol", password="c4rol-Pw").close()
    c = m2k.Raw(d.port)
    c.send(m2k.connect("c-alice", username="alice", password="s3cret-Pw"))
    c.expect(CONNACK_BAD_CREDENTIALS, timeout=5)


def test_sighup_broken_password_file_rejects_the_whole_reload(daemon, mock_kafka, tmp_path):
    d = auth_daemon(daemon, tmp_path)
    # The same reload changes the YAML (a rule to another Kafka topic) and
    # breaks the password file: neither applies.
    d.rewrite_config({"topics": [{"mqtt": "test/#", "kafka": "test-reloaded"}]})
    pw = tmp_path / "passwd"
    good = pw.read_text()
    pw.write_text(good + "mallory-without-a-hash\n")
    log = reload(d, r"reload: auth files: .*/passwd:3: missing ':' between user name and "
                    r"password hash")
    assert "reload: the running configuration stays unchanged" in log, log
    assert "reload: configuration applied" not in log, log
    assert "reload: password and ACL files reloaded" not in log, log
    # The old password file is still in force, and the old topic rule too.
    c = m2k.Raw(d.port).connect("c-alice", username="alice", password="s3cret-Pw")
    c.send(m2k.publish("test/x", b"old-rule", qos=1, pid=1))
    c.expect(m2k.puback(1))
    assert [r.value for r in m2k.assert_records(mock_kafka.bootstrap, "test", 1)] == [b"old-rule"]
    m2k.assert_no_records(mock_kafka.bootstrap, "test-reloaded")
    # Once the file is fixed, the next SIGHUP applies both.
    pw.write_text(good)
    reload(d, r"reload: configuration applied")
    c.send(m2k.publish("test/y", b"new-rule", qos=1, pid=2))
    c.expect(m2k.puback(2))
    assert [r.value for r in m2k.assert_records(mock_kafka.bootstrap, "test-reloaded", 1)] == [
        b"new-rule"]


def test_refusals_on_metrics(daemon, mock_kafka, tmp_path):
    pw = make_passwd(tmp_path, {"alice": "s3cret-Pw"})
    aclf = tmp_path / "acl"
    aclf.write_text(ACL)
    d = daemon({"auth": {"password_file": str(pw), "acl_file": str(aclf)},
                "metrics": {"listen": "127.0.0.1:0"}})
    mport = int(d.wait_log(r"metrics listening on 127\.0\.0\.1:(\d+) ").group(1))
    c = m2k.Raw(d.port)
    c.send(m2k.connect("c-bad", username="alice", password="wrong"))
    c.expect(CONNACK_BAD_CREDENTIALS)
    c = m2k.Raw(d.port)
    c.send(m2k.connect("c-anon"))
    c.expect(CONNACK_NOT_AUTHORIZED, timeout=5)
    c = m2k.Raw(d.port).connect("c-ok", username="alice", password="s3cret-Pw")
    c.send(m2k.publish("test/bob/x", b"no", qos=1, pid=1))
    assert c.closed_within(5)
    c = m2k.Raw(d.port)
    c.send(m2k.connect("c-will", username="alice", password="s3cret-Pw",
                       will=("test/bob/will", b"bye", 0, False)))
    c.expect(CONNACK_NOT_AUTHORIZED, timeout=5)
    assert c.closed_within(5)
    s = scrape(mport)
    got = {k: s.get(k) for k in [
        "mqtt2kafka_auth_failures_total", "mqtt2kafka_acl_denied_total",
        'mqtt2kafka_connections_refused_total{reason="not_authorized"}',
        'mqtt2kafka_connections_refused_total{reason="max_connections_per_ip"}',
        'mqtt2kafka_connections_refused_total{reason="connect_rate_per_ip"}',
        'mqtt2kafka_connections_refused_total{reason="tls_handshake"}']}
    assert got == {
        "mqtt2kafka_auth_failures_total": 2,  # bad password, anonymous
        "mqtt2kafka_acl_denied_total": 2,  # a PUBLISH, a will topic
        'mqtt2kafka_connections_refused_total{reason="not_authorized"}': 3,
        'mqtt2kafka_connections_refused_total{reason="max_connections_per_ip"}': 0,
        'mqtt2kafka_connections_refused_total{reason="connect_rate_per_ip"}': 0,
        'mqtt2kafka_connections_refused_total{reason="tls_handshake"}': 0}
