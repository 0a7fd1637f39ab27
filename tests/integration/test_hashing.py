"""Password checks off the event loop (issue 20 finding 6): a `$7$` entry
with 1,000,000 iterations (~0.5 s a check) is warned about at load; while
checks run on the threadpool another client's PINGREQ is answered; at most
auth.max_hashing run and auth.max_hashing_queue wait, the next CONNECT gets
CONNACK 3 (server unavailable), logged and counted; a connection that goes
away while its check runs is handled; a reload while a check waits or runs
has it checked against the new file. Every wait is bounded."""
import signal
import socket
import subprocess

import m2k
from test_metrics import scrape

CONNACK_UNAVAILABLE = bytes([0x20, 0x02, 0x00, 0x03])


def slow_daemon(daemon, tmp_path, iterations=1000000, **auth):
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", "-I", str(iterations), str(pw), "alice",
                    "s3cret"],
                   check=True, capture_output=True, timeout=60)
    cfg = {"password_file": str(pw), "allow_anonymous": True}
    cfg.update(auth)
    # The CONNECTs wait for the checks, one after another (~3 s each under
    # ASan on a loaded machine): connect_timeout_s must not close them first.
    d = daemon({"auth": cfg, "metrics": {"listen": "127.0.0.1:0"},
                "mqtt": {"connect_timeout_s": 120}})
    mport = int(d.wait_log(r"metrics listening on 127\.0\.0\.1:(\d+) ", since=0).group(1))
    d.wait_log(m2k.line(rf"auth\.password_file {pw}: an entry with \$7\$ {iterations} iterations "
                        r"costs \d+\.\d ms per CONNECT \(measured at load; over 10 ms\): at most "
                        r"auth\.max_hashing of them run at once; mosquitto_passwd's default is 101",
                        level="warn", regex=True), since=0)
    return d, mport


def nothing_received(c):
    c.sock.setblocking(False)
    try:
        c.sock.recv(1, socket.MSG_PEEK)
        return False
    except BlockingIOError:
        return True
    finally:
        c.sock.setblocking(True)


def test_checks_off_the_loop_queue_bounded(daemon, tmp_path):
    d, mport = slow_daemon(daemon, tmp_path, max_hashing=1, max_hashing_queue=1)
    innocent = m2k.Raw(d.port).connect("innocent")
    mark = d.mark()
    logins = []
    for i in range(3):
        c = m2k.Raw(d.port)
        c.send(m2k.connect(f"c{i}", username="alice", password="s3cret"))
        logins.append(c)
    # The loop answers while the checks run (each ~0.5 s, one at a time).
    innocent.send(m2k.PINGREQ)
    innocent.expect(m2k.PINGRESP)
    assert sum(nothing_received(c) for c in logins) >= 1
    # One runs, one waits, the third is refused at once.
    d.wait_log(m2k.line("closing: connection refused (CONNACK 3): 1 password checks running and "
                        "1 waiting (auth.max_hashing_queue 1)", level="warn", client="-"),
               since=mark)
    answers = []
    for c in logins:
        got = c.recv_exact(4, timeout=20)
        answers.append(got)
        if got == CONNACK_UNAVAILABLE:
            c.expect_close()
    assert sorted(answers) == sorted([m2k.CONNACK_OK, m2k.CONNACK_OK, CONNACK_UNAVAILABLE])
    assert scrape(mport)['mqtt2kafka_connections_refused_total{reason="server_unavailable"}'] == 1
    # A wrong password is checked off the loop too, and refused as before.
    c = m2k.Raw(d.port)
    c.send(m2k.connect("c-bad", username="alice", password="wrong"))
    c.expect_close(bytes([0x20, 0x02, 0x00, 0x04]), timeout=20)


def test_connection_gone_while_checking(daemon, tmp_path):
    # ~55 ms a check (more under ASan): the three are done well within the waits.
    d, mport = slow_daemon(daemon, tmp_path, iterations=100000, max_hashing=1,
                           max_hashing_queue=4)
    gone = []
    for i in range(3):  # one running, two waiting: all three go away
        c = m2k.Raw(d.port)
        c.send(m2k.connect(f"gone{i}", username="alice", password="s3cret"))
        gone.append(c)
    m2k.wait_until(lambda: scrape(mport)["mqtt2kafka_connections"] == 3, 10, "3 connections")
    for c in gone:
        c.close()
    # A paused connection reads nothing: each close is seen once its check is done.
    m2k.wait_until(lambda: scrape(mport)["mqtt2kafka_connections"] == 0, 10, "0 connections")
    # The daemon goes on: the next login waits for the check still running.
    m2k.Raw(d.port).connect("after", username="alice", password="s3cret")


def test_reload_during_a_check_checks_the_new_file(daemon, tmp_path):
    d, mport = slow_daemon(daemon, tmp_path, max_hashing=1)
    # The next file, made beforehand: alice's password changed (`$6$`, cheap).
    new = tmp_path / "passwd.new"
    subprocess.run(["mosquitto_passwd", "-b", "-c", "-H", "sha512", str(new), "alice", "n3w"],
                   check=True, capture_output=True, timeout=60)
    innocent = m2k.Raw(d.port).connect("innocent")
    # Two logins ahead of it in the one slot: c-old's check (against the file
    # it was queued with) ends ~1.5 s later, well after the reload.
    ahead = [m2k.Raw(d.port) for _ in range(2)]
    for i, a in enumerate(ahead):
        a.send(m2k.connect(f"ahead{i}", username="alice", password="s3cret"))
    c = m2k.Raw(d.port)
    c.send(m2k.connect("c-old", username="alice", password="s3cret"))
    innocent.send(m2k.PINGREQ)  # answered after the CONNECTs were read: queued
    innocent.expect(m2k.PINGRESP)
    new.replace(tmp_path / "passwd")
    mark = d.mark()
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log(m2k.line(r"reload: configuration applied \(\d+ topic rules, unmapped \S+, log "
                        r"level \w+\)", level="info", regex=True), since=mark)
    # Checked again against the new file: the old password is refused.
    c.expect_close(bytes([0x20, 0x02, 0x00, 0x04]), timeout=30)
    m2k.Raw(d.port).connect("c-new", username="alice", password="n3w")
    for a in ahead:
        a.close()


def connect5_login(client_id, username, password):
    """An MQTT 5 CONNECT with a user name and password (clean start, no
    properties)."""
    body = m2k.enc_str("MQTT") + bytes([5, 0xC2]) + (60).to_bytes(2, "big") + b"\x00"
    body += m2k.enc_str(client_id) + m2k.enc_str(username) + m2k.enc_str(password)
    return m2k.packet(0x10, body)


def test_v5_checks_off_the_loop_queue_bounded(daemon, tmp_path):
    """MQTT 5 CONNECTs take the same queue; the one past it gets CONNACK
    0x89 (server busy) in the MQTT 5 form."""
    d, mport = slow_daemon(daemon, tmp_path, max_hashing=1, max_hashing_queue=1)
    mark = d.mark()
    logins = []
    for i in range(3):
        c = m2k.Raw(d.port)
        c.send(connect5_login(f"v5-{i}", "alice", "s3cret"))
        logins.append(c)
    d.wait_log(m2k.line("closing: connection refused (CONNACK 0x89): 1 password checks running "
                        "and 1 waiting (auth.max_hashing_queue 1)", level="warn", client="-"),
               since=mark)
    why = ("connection refused (CONNACK 0x89): 1 password checks running and 1 waiting "
           "(auth.max_hashing_queue 1)")
    # with the log line's text as its reason string (property 0x1F)
    busy = m2k.packet(0x20, bytes([0x00, 0x89, len(why) + 3, 0x1f]) + m2k.enc_str(why))
    answers = []
    for c in logins:
        got = c.recv_exact(4, timeout=20)
        answers.append(got[:4])
        if got == busy[:4]:
            assert c.recv_exact(len(busy) - 4, timeout=5) == busy[4:]
            c.expect_close()
    # Two accepted (CONNACK, remaining length, flags 0, reason 0), one busy.
    assert sorted(a[3] for a in answers) == [0x00, 0x00, 0x89], answers
    assert all(a[0] == 0x20 for a in answers), answers
    assert scrape(mport)['mqtt2kafka_connections_refused_total{reason="server_unavailable"}'] == 1



def test_threadpool_fits_hashing_and_the_spool_sync(daemon, tmp_path):
    """libuv's threadpool is sized auth.max_hashing + max_tls_handshake_workers
    + 2 (here 4 + 2 + 2): with four password checks running, the spool's
    fsync still gets a thread, so a QoS 1 PUBLISH is acked while every check
    still runs. With libuv's default of 4 threads the sync waited behind the
    checks, queued first, and the PUBACK came after their CONNACKs."""
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", "-I", "1000000", str(pw), "alice", "s3cret"],
                   check=True, capture_output=True, timeout=60)
    d = daemon({"auth": {"password_file": str(pw), "allow_anonymous": True, "max_hashing": 4,
                         "max_hashing_queue": 1},
                "mqtt": {"connect_timeout_s": 120},
                "spool": {"dir": str(tmp_path / "spool"), "mode": "always"},
                "log": {"level": "debug"}})
    # threads: N (M2K_THREADS): 4 + N x (2 / N) + 2 per worker's spool.
    n = m2k.workers(d)
    d.wait_log(m2k.line(f"libuv's threadpool: {4 + n * max(1, 2 // n) + 2 * n} threads",
                        level="debug"), since=0)
    innocent = m2k.Raw(d.port).connect("innocent")
    mark = d.mark()
    logins = []
    for i in range(6):
        c = m2k.Raw(d.port)
        c.send(m2k.connect(f"c{i}", username="alice", password="s3cret"))
        logins.append(c)
    # Four checks were handed to the threadpool, one waits, the sixth is refused.
    d.wait_log(m2k.line("closing: connection refused (CONNACK 3): 4 password checks running and "
                        "1 waiting (auth.max_hashing_queue 1)", level="warn", client="-"),
               since=mark)
    innocent.send(m2k.publish("test/t", b"while hashing", qos=1, pid=1))
    innocent.expect(m2k.puback(1), timeout=20)
    # The refused one got CONNACK 3, the five others nothing yet. With
    # threads: N each CONNECT goes to its client id's worker first, so the
    # one refused is the last admitted, not always the last sent.
    refused = [c for c in logins if not nothing_received(c)]
    assert len(refused) == 1
    refused[0].expect_close(CONNACK_UNAVAILABLE)


def test_threadpool_size_from_the_environment_is_kept_and_warned(daemon, tmp_path):
    d = daemon({}, env={"UV_THREADPOOL_SIZE": "3"})
    # threads: N: each worker runs max(1, 2 // N) of the 2 handshake steps,
    # so 3 workers run 3 (the line says so), where 1 or 2 run 2.
    n = m2k.workers(d)
    share = max(1, 2 // n)
    shares = "" if n * share == 2 else f" ({n} workers x {share})"
    d.wait_log(m2k.line(f"UV_THREADPOOL_SIZE=3 is below auth.max_hashing + "
                        f"mqtt.max_tls_handshake_workers{shares} + 2 = {2 + n * share + 2}: "
                        "password checks, TLS handshakes and the spool's fsync may wait for each "
                        "other", level="warn"), since=0)
