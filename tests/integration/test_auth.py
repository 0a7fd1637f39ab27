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


def refused(rc, cid, user, why, delayed=False):
    """The exact line of a refused CONNECT (src/mqtt/session.c authorize_connect)."""
    return m2k.line(f"closing: connection refused (CONNACK {rc}): client id '{cid}', user "
                    f"'{user}': {why}"
                    + ("; answer delayed after recent failures from this address" if delayed
                       else ""), level="warn", client="-")


BAD_CREDENTIALS = "bad user name or password"


def make_passwd(tmp_path, users):
    pw = tmp_path / "passwd"
    first = True
    for user, password in users.items():
        args = ["mosquitto_passwd", "-b"] + (["-c"] if first else []) + [str(pw), user, password]
        subprocess.run(args, check=True, capture_output=True, timeout=30)
        first = False
    return pw


def auth_daemon(daemon, tmp_path, acl=None, extra=None, **auth):
    pw = make_passwd(tmp_path, {"alice": "s3cret-Pw", "bob": "hunter2"})
    cfg = {"password_file": str(pw)}
    if acl is not None:
        aclf = tmp_path / "acl"
        aclf.write_text(acl)
        cfg["acl_file"] = str(aclf)
    cfg.update(auth)
    return daemon({"auth": cfg, **(extra or {})})


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
    mark = d.mark()
    c = m2k.Raw(d.port)
    c.send(m2k.connect("c-bad", username="alice", password="Wrong-Guess-42"))
    c.expect_close(CONNACK_BAD_CREDENTIALS)
    d.wait_log(refused(4, "c-bad", "alice", BAD_CREDENTIALS), since=mark)
    # An unknown user gets the same answer; after a failure the next answer
    # from this address is delayed (logged).
    mark = d.mark()
    c2 = m2k.Raw(d.port)
    c2.send(m2k.connect("c-nobody", username="mallory", password="x"))
    c2.expect_close(CONNACK_BAD_CREDENTIALS)
    d.wait_log(refused(4, "c-nobody", "mallory", BAD_CREDENTIALS, delayed=True), since=mark)
    assert "Wrong-Guess-42" not in d.log()
    # A known user without a password is refused too.
    mark = d.mark()
    c3 = m2k.Raw(d.port)
    c3.send(m2k.connect("c-nopw", username="bob"))
    c3.expect_close(CONNACK_BAD_CREDENTIALS)
    d.wait_log(refused(4, "c-nopw", "bob", BAD_CREDENTIALS, delayed=True), since=mark)
    m2k.assert_no_records(mock_kafka.bootstrap, "test")


def test_anonymous_refused_connack_5(daemon, tmp_path):
    d = auth_daemon(daemon, tmp_path)
    mark = d.mark()
    c = m2k.Raw(d.port)
    c.send(m2k.connect("c-anon"))
    c.expect_close(CONNACK_NOT_AUTHORIZED)
    d.wait_log(refused(5, "c-anon", "(none)",
                       "anonymous clients are not allowed (auth.allow_anonymous: false)"),
               since=mark)


def test_anonymous_allowed_when_configured(daemon, tmp_path):
    d = auth_daemon(daemon, tmp_path, allow_anonymous=True)
    m2k.Raw(d.port).connect("c-anon2").close()


ACL = "user alice\ntopic write test/alice/#\n"


def test_acl_deny_qos1_disconnects(daemon, mock_kafka, tmp_path):
    d = auth_daemon(daemon, tmp_path, acl=ACL)
    c = m2k.Raw(d.port).connect("c1", username="alice", password="s3cret-Pw")
    mark = d.mark()
    c.send(m2k.publish("test/bob/x", b"no", qos=1, pid=3))
    c.expect_close()  # no PUBACK
    d.wait_log(m2k.line("closing: the ACL does not allow publishing on topic 'test/bob/x' "
                        "(auth.acl_deny: disconnect)", level="warn", client="c1"), since=mark)
    m2k.assert_no_records(mock_kafka.bootstrap, "test")
    # Allowed topic still works.
    c = m2k.Raw(d.port).connect("c2", username="alice", password="s3cret-Pw")
    c.send(m2k.publish("test/alice/x", b"yes", qos=1, pid=4))
    c.expect(m2k.puback(4))
    assert [r.value for r in m2k.assert_records(mock_kafka.bootstrap, "test", 1)] == [b"yes"]


def test_acl_deny_drop_acks_without_producing(daemon, mock_kafka, tmp_path):
    d = auth_daemon(daemon, tmp_path, acl=ACL, acl_deny="drop")
    c = m2k.Raw(d.port).connect("c1", username="alice", password="s3cret-Pw")
    mark = d.mark()
    c.send(m2k.publish("test/bob/x", b"no", qos=1, pid=3))
    c.expect(m2k.puback(3))
    c.send(m2k.publish("test/bob/x", b"no", qos=2, pid=4))
    c.expect(m2k.pubrec(4))
    c.send(m2k.pubrel(4))
    c.expect(m2k.pubcomp(4))
    dropped = m2k.line("the ACL does not allow publishing on topic 'test/bob/x': dropped "
                       "(auth.acl_deny: drop)", level="warn", client="c1")
    m2k.wait_until(lambda: len(re.findall(dropped, d.log(mark), re.M)) == 2, 10,
                   lambda: f"two lines {dropped!r}:\n{d.log(mark)}")
    m2k.assert_no_records(mock_kafka.bootstrap, "test")
    c.send(m2k.PINGREQ)  # still connected
    c.expect(m2k.PINGRESP)


def test_will_topic_checked(daemon, tmp_path):
    d = auth_daemon(daemon, tmp_path, acl=ACL)
    mark = d.mark()
    c = m2k.Raw(d.port)
    c.send(m2k.connect("c-will", username="alice", password="s3cret-Pw",
                       will=("test/bob/will", b"bye", 0, False)))
    c.expect_close(CONNACK_NOT_AUTHORIZED)
    d.wait_log(refused(5, "c-will", "alice", "the ACL does not allow publishing on the will "
                       "topic 'test/bob/will'"), since=mark)


APPLIED = m2k.line(r"reload: configuration applied \(\d+ topic rules, unmapped \S+, log level "
                   r"\w+\)", level="info", regex=True)
UNCHANGED = m2k.line("reload: the running configuration stays unchanged", level="error")


def reloaded_files(pw, acl="none", anonymous="refused"):
    return m2k.line(f"reload: password and ACL files reloaded (password file {pw}, ACL file "
                    f"{acl}, anonymous clients {anonymous})", level="info")


def reload(d, pattern, last=APPLIED):
    """SIGHUP, then waits for the line `pattern` and the reload's last line
    `last`; returns the log the reload wrote."""
    mark = d.mark()
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log(pattern, since=mark)
    d.wait_log(last, since=mark)
    return d.log(mark)


def test_sighup_reload(daemon, mock_kafka, tmp_path):
    d = auth_daemon(daemon, tmp_path, acl=ACL)
    aclf = tmp_path / "acl"
    # A broken file: the whole reload is rejected, the old ACL stays in force.
    aclf.write_text("user alice\ntopic scribble test/#\n")
    reload(d, m2k.line(f"reload: auth files: {aclf}:2: unknown access 'scribble' (expected read, "
                       "write, readwrite or deny)", level="error"), last=UNCHANGED)
    c = m2k.Raw(d.port).connect("c1", username="alice", password="s3cret-Pw")
    c.send(m2k.publish("test/alice/1", b"old-acl", qos=1, pid=1))
    c.expect(m2k.puback(1))
    c.send(m2k.publish("test/bob/1", b"denied", qos=1, pid=2))
    c.expect_close()
    # A good new file applies, to connections already open as well.
    c = m2k.Raw(d.port).connect("c2", username="alice", password="s3cret-Pw")
    aclf.write_text("user alice\ntopic write test/bob/#\n")
    reload(d, reloaded_files(tmp_path / "passwd", acl=aclf))
    c.send(m2k.publish("test/bob/2", b"new-acl", qos=1, pid=3))
    c.expect(m2k.puback(3))
    c.send(m2k.publish("test/alice/2", b"now-denied", qos=1, pid=4))
    c.expect_close()
    vals = sorted(r.value for r in m2k.assert_records(mock_kafka.bootstrap, "test", 2))
    assert vals == [b"new-acl", b"old-acl"]


def test_will_rechecked_against_the_acl_in_force(daemon, mock_kafka, tmp_path):
    d = auth_daemon(daemon, tmp_path, acl=ACL,
                    extra={"metrics": {"listen": "127.0.0.1:0"}})
    aclf = tmp_path / "acl"
    mport = int(d.wait_log(r"metrics listening on 127\.0\.0\.1:(\d+) ", since=0).group(1))
    will = ("test/alice/will", b"gone", 0, False)
    revoked = m2k.Raw(d.port).connect("c-will", username="alice", password="s3cret-Pw",
                                      will=will)
    # A reload that revokes alice's write right on her will topic.
    aclf.write_text("user alice\ntopic write test/bob/#\n")
    reload(d, reloaded_files(tmp_path / "passwd", acl=aclf))
    mark = d.mark()
    revoked.close()  # no DISCONNECT: the will is due
    d.wait_log(m2k.line("will message not published: the ACL in force does not allow "
                        "publishing on topic 'test/alice/will'", level="warn", client="c-will"),
               since=mark)
    m2k.wait_until(lambda: scrape(mport)["mqtt2kafka_wills_lost_total"] == 1, 10,
                   "mqtt2kafka_wills_lost_total 1")
    # The positive case: a reload that grants it back; the will is produced.
    allowed = m2k.Raw(d.port).connect("c-will2", username="alice", password="s3cret-Pw",
                                      will=("test/bob/will", b"bye", 0, False))
    aclf.write_text("user alice\ntopic write test/bob/#\ntopic write test/alice/#\n")
    reload(d, reloaded_files(tmp_path / "passwd", acl=aclf))
    allowed.close()
    m2k.wait_until(lambda: scrape(mport)["mqtt2kafka_wills_published_total"] == 1, 10,
                   "mqtt2kafka_wills_published_total 1")
    assert [r.value for r in m2k.assert_records(mock_kafka.bootstrap, "test", 1)] == [b"bye"]
    assert scrape(mport)["mqtt2kafka_wills_lost_total"] == 1


def test_sighup_unchanged_yaml_applies_new_password(daemon, mock_kafka, tmp_path):
    d = auth_daemon(daemon, tmp_path)
    yaml_before = d.config_path.read_bytes()
    open_conn = m2k.Raw(d.port).connect("c-open", username="alice", password="s3cret-Pw")
    subprocess.run(["mosquitto_passwd", "-b", str(tmp_path / "passwd"), "alice", "n3w-Secret"],
                   check=True, capture_output=True, timeout=30)
    reload(d, reloaded_files(tmp_path / "passwd"))
    assert d.config_path.read_bytes() == yaml_before
    # The new password logs in, the old one no longer does.
    m2k.Raw(d.port).connect("c-new", username="alice", password="n3w-Secret").close()
    c = m2k.Raw(d.port)
    c.send(m2k.connect("c-old", username="alice", password="s3cret-Pw"))
    c.expect_close(CONNACK_BAD_CREDENTIALS)
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
    reload(d, reloaded_files(pw2))
    m2k.Raw(d.port).connect("c-carol", username="carol", password="c4rol-Pw").close()
    c = m2k.Raw(d.port)
    c.send(m2k.connect("c-alice", username="alice", password="s3cret-Pw"))
    c.expect_close(CONNACK_BAD_CREDENTIALS)


def test_sighup_broken_password_file_rejects_the_whole_reload(daemon, mock_kafka, tmp_path):
    d = auth_daemon(daemon, tmp_path)
    # The same reload changes the YAML (a rule to another Kafka topic) and
    # breaks the password file: neither applies.
    d.rewrite_config({"topics": [{"mqtt": "test/#", "kafka": "test-reloaded"}]})
    pw = tmp_path / "passwd"
    good = pw.read_text()
    pw.write_text(good + "mallory-without-a-hash\n")
    log = reload(d, m2k.line(f"reload: auth files: {pw}:3: missing ':' between user name and "
                             "password hash", level="error"), last=UNCHANGED)
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
    reload(d, reloaded_files(pw))
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
    # A start-up line: the whole log is the right scope.
    mport = int(d.wait_log(r"metrics listening on 127\.0\.0\.1:(\d+) ", since=0).group(1))
    c = m2k.Raw(d.port)
    c.send(m2k.connect("c-bad", username="alice", password="wrong"))
    c.expect_close(CONNACK_BAD_CREDENTIALS)
    c = m2k.Raw(d.port)
    c.send(m2k.connect("c-anon"))
    c.expect_close(CONNACK_NOT_AUTHORIZED)
    c = m2k.Raw(d.port).connect("c-ok", username="alice", password="s3cret-Pw")
    c.send(m2k.publish("test/bob/x", b"no", qos=1, pid=1))
    c.expect_close()
    c = m2k.Raw(d.port)
    c.send(m2k.connect("c-will", username="alice", password="s3cret-Pw",
                       will=("test/bob/will", b"bye", 0, False)))
    c.expect_close(CONNACK_NOT_AUTHORIZED)
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


def test_guesses_from_one_address_are_bounded(daemon, mock_kafka, tmp_path):
    """Issue 20 finding 5: parallel connections bought guesses (the throttle
    held answers, it did not limit them). Now one address gets 10 password
    checks; later CONNECTs are refused unchecked, the right password too."""
    pw = make_passwd(tmp_path, {"alice": "s3cret-Pw"})
    d = daemon({"auth": {"password_file": str(pw)}, "metrics": {"listen": "127.0.0.1:0"}})
    mport = int(d.wait_log(r"metrics listening on 127\.0\.0\.1:(\d+) ", since=0).group(1))
    conns = [m2k.Raw(d.port) for _ in range(20)]
    for i, c in enumerate(conns):
        c.send(m2k.connect(f"g-{i}", username="alice", password=f"guess-{i}"))
    for c in conns:
        c.expect_close(CONNACK_BAD_CREDENTIALS, timeout=10)
    c = m2k.Raw(d.port)
    c.send(m2k.connect("g-right", username="alice", password="s3cret-Pw"))
    c.expect_close(CONNACK_BAD_CREDENTIALS, timeout=10)
    s = scrape(mport)
    assert s["mqtt2kafka_auth_failures_total"] == 21
    assert s["mqtt2kafka_auth_unchecked_refusals_total"] == 11
