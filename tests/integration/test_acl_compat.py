"""Publish decisions of our ACL against mosquitto 2.0.11 for one ACL file.

mosquitto drops a denied PUBLISH silently (it still acknowledges it), so a
watcher with read access to '#' records what got through; a final sentinel
message, published after every probe was acknowledged, marks the end. Our
decisions come from `test_acl check` (tests/unit/test_acl.c). The matrix holds
only cases where we claim Mosquitto's semantics; the deliberate differences
(%u/%c inside a level, '/' in names) are unit-tested and documented in
docs/security.md. Loopback only; every wait is bounded."""
import getpass
import os
import socket
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest

BUILD = os.environ.get("M2K_BUILD_DIR", "build")
HELPER = os.path.join(BUILD, "tests", "test_acl")

ACL = """\
# anonymous clients
topic write anon/#
topic deny anon/blocked

user alice
topic write alice/#
topic deny alice/secret/#
topic read ro/#
topic write both/x

user bob
topic shared/#

user watcher
topic read #

pattern write dev/%c/up
pattern readwrite users/%u/#
pattern deny users/%u/locked
pattern deny both/#
pattern write open/+/x
"""

# (user or None, client id, topic)
MATRIX = [
    (None, "anon1", "anon/a"), (None, "anon1", "anon/blocked"), (None, "anon1", "alice/a"),
    (None, "anon1", "dev/anon1/up"), (None, "anon1", "users/anon1/a"),
    ("alice", "a1", "alice/a"), ("alice", "a1", "alice"), ("alice", "a1", "alice/secret/x"),
    ("alice", "a1", "alice/secret"), ("alice", "a1", "ro/a"), ("alice", "a1", "anon/a"),
    ("alice", "a1", "both/x"), ("alice", "a1", "both/y"), ("alice", "a1", "users/alice/z"),
    ("alice", "a1", "users/alice"), ("alice", "a1", "users/alice/locked"),
    ("alice", "a1", "users/bob/z"), ("alice", "a1", "dev/a1/up"), ("alice", "a1", "dev/a2/up"),
    ("alice", "a1", "open/q/x"), ("alice", "a1", "open/q/y"), ("alice", "a1", "open//x"),
    ("bob", "b1", "shared/z"), ("bob", "b1", "shared"), ("bob", "b1", "alice/a"),
    ("bob", "b1", "users/bob/locked"), ("bob", "b#", "shared/z"), ("bob", "b#", "open/q/x"),
    ("bob", "b+", "open/q/x"), ("bob", "b+", "shared/q"),
]
USERS = {"alice": "pa", "bob": "pb", "watcher": "pw"}


def ours(acl, user, cid, topic):
    r = subprocess.run([HELPER, "check", str(acl), user or "-", cid, topic],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip() == "allow"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(port, cid, user):
    c = mqtt.Client(client_id=cid, clean_session=True, protocol=mqtt.MQTTv311)
    if user:
        c.username_pw_set(user, USERS[user])
    c.connect("127.0.0.1", port, keepalive=30)
    return c


@pytest.fixture
def broker(tmp_path):
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    pw = tmp_path / "pw"
    for i, (user, password) in enumerate(USERS.items()):
        args = ["-b"] + (["-c"] if i == 0 else []) + [str(pw), user, password]
        subprocess.run(["mosquitto_passwd", *args], check=True, timeout=30)
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("listener %d 127.0.0.1\nallow_anonymous true\npassword_file %s\n"
                    "acl_file %s\npersistence false\nuser %s\n"
                    % (port, pw, acl, getpass.getuser()))
    p = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        assert p.poll() is None and time.monotonic() < deadline, "mosquitto did not start"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port, acl
    p.terminate()
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def test_publish_decisions_match_mosquitto(broker):
    port, acl = broker
    got = set()
    done = threading.Event()
    subscribed = threading.Event()

    def on_message(client, userdata, msg):
        if msg.topic == "alice/END":
            done.set()
        else:
            got.add(msg.payload.decode())

    w = connect(port, "watcher1", "watcher")
    w.on_message = on_message
    w.on_subscribe = lambda *a: subscribed.set()
    w.loop_start()
    try:
        w.subscribe("#", qos=1)
        assert subscribed.wait(10)
        for i, (user, cid, topic) in enumerate(MATRIX):
            c = connect(port, cid, user)
            c.loop_start()
            info = c.publish(topic, str(i), qos=1)
            info.wait_for_publish(timeout=10)
            assert info.is_published(), (user, cid, topic)
            c.disconnect()
            c.loop_stop()
        c = connect(port, "end", "alice")
        c.loop_start()
        c.publish("alice/END", "", qos=1).wait_for_publish(timeout=10)
        c.disconnect()
        c.loop_stop()
        assert done.wait(10)
    finally:
        w.disconnect()
        w.loop_stop()
    theirs = {i for i in range(len(MATRIX)) if str(i) in got}
    mine = {i for i, (u, c, t) in enumerate(MATRIX) if ours(acl, u, c, t)}
    diff = [MATRIX[i] + ("mosquitto" if i in theirs else "ours",) for i in theirs ^ mine]
    assert diff == []
    # The matrix is not degenerate: both outcomes occur.
    assert 5 < len(mine) < len(MATRIX) - 5
