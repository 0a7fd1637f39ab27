"""Authentication and publish ACL end to end: a password file written by
mosquitto_passwd, CONNACK return codes as exact bytes, the ACL on QoS 1
publishes under both acl_deny policies, SIGHUP reload of the files (a broken
file keeps the old one). Every wait is bounded."""
import signal
import subprocess

import m2k

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
    assert d.wait_log(r"client c1 \(127\.0\.0\.1:\d+\): closing: the ACL does not allow "
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


def test_sighup_reload(daemon, mock_kafka, tmp_path):
    d = auth_daemon(daemon, tmp_path, acl=ACL)
    aclf = tmp_path / "acl"
    # A broken file: the old ACL stays in force, the log says why.
    aclf.write_text("user alice\ntopic scribble test/#\n")
    d.proc.send_signal(signal.SIGHUP)
    assert d.wait_log(r"reload: password/ACL files not reloaded, the old ones stay in force: "
                      r".*acl:2: "), d.log()
    c = m2k.Raw(d.port).connect("c1", username="alice", password="s3cret-Pw")
    c.send(m2k.publish("test/alice/1", b"old-acl", qos=1, pid=1))
    c.expect(m2k.puback(1))
    c.send(m2k.publish("test/bob/1", b"denied", qos=1, pid=2))
    assert c.closed_within(5)
    # A good new file applies, to connections already open as well.
    c = m2k.Raw(d.port).connect("c2", username="alice", password="s3cret-Pw")
    aclf.write_text("user alice\ntopic write test/bob/#\n")
    d.proc.send_signal(signal.SIGHUP)
    assert d.wait_log(r"reload: password and ACL files reloaded"), d.log()
    c.send(m2k.publish("test/bob/2", b"new-acl", qos=1, pid=3))
    c.expect(m2k.puback(3))
    c.send(m2k.publish("test/alice/2", b"now-denied", qos=1, pid=4))
    assert c.closed_within(5)
    vals = sorted(r.value for r in m2k.assert_records(mock_kafka.bootstrap, "test", 2))
    assert vals == [b"new-acl", b"old-acl"]
