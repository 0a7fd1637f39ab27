"""TLS handshakes off the event loop (issue 20 finding 6): an attacker
replays one ClientHello against an RSA-4096 certificate (each costs the
daemon a 4096-bit signature) while an innocent plain-TCP client publishes
QoS 1; the handshake steps run on libuv's threadpool
(mqtt.max_tls_handshake_workers at once) and are counted; a shutdown while
steps run and wait is clean (under make sanitize: no report). The key is
made once and kept in the build directory (RSA-4096 generation takes
seconds). Every wait is bounded; nothing here is timed."""
import os
import pathlib
import socket
import ssl
import subprocess
import threading

import m2k
from test_metrics import scrape

ATTACKERS = 4
REPLAYS = 25  # per attacker


def rsa4096():
    """A self-signed RSA-4096 certificate for 127.0.0.1, made once per build
    directory."""
    cache = pathlib.Path(os.environ.get("M2K_BUILD_DIR", "build")) / "test-cache"
    cert, key = cache / "rsa4096.crt", cache / "rsa4096.key"
    if not (cert.exists() and key.exists()):
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / f"rsa4096.{os.getpid()}"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:4096", "-nodes", "-keyout",
                        f"{tmp}.key", "-out", f"{tmp}.crt", "-days", "3650",
                        "-subj", "/CN=127.0.0.1"], check=True, capture_output=True, timeout=300)
        os.replace(f"{tmp}.key", key)
        os.replace(f"{tmp}.crt", cert)
    return str(cert), str(key)


def client_hello():
    """The first flight of Python's TLS client: one ClientHello record."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_side=False)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    assert hello[0] == 0x16, hello[:5]
    return hello


def tls_daemon(daemon, **mqtt):
    cert, key = rsa4096()
    d = daemon({
        "listeners": [{"listen": "127.0.0.1:0"},
                      {"listen": "127.0.0.1:0", "tls": {"cert": cert, "key": key}}],
        "mqtt": {"connect_timeout_s": 60, **mqtt},
        "metrics": {"listen": "127.0.0.1:0"},
    })
    d.tls_port = int(d.wait_log(m2k.line(r"listening on 127\.0\.0\.1:(\d+) \(TLS\)",
                                         level="info", regex=True), since=0).group(1))
    d.mport = int(d.wait_log(r"metrics listening on 127\.0\.0\.1:(\d+) ", since=0).group(1))
    return d


def test_clienthello_replay_while_innocent_publishes(daemon, mock_kafka):
    d = tls_daemon(daemon, max_tls_handshake_workers=1)
    hello = client_hello()
    innocent = m2k.Raw(d.port).connect("innocent")
    answered, failures = [0], []

    def attack():
        for _ in range(REPLAYS):
            try:
                with socket.create_connection(("127.0.0.1", d.tls_port), timeout=60) as s:
                    s.sendall(hello)
                    first = s.recv(1)  # the server's flight: its signature is done
                    if first == b"\x16":
                        answered[0] += 1
                    else:
                        failures.append(first)
            except OSError as e:
                failures.append(e)

    threads = [threading.Thread(target=attack) for _ in range(ATTACKERS)]
    for t in threads:
        t.start()
    # The innocent's acks keep coming while the handshakes run: each within
    # the bound (a missing ack fails), one after another until the attack ends.
    acks = 0
    while acks == 0 or any(t.is_alive() for t in threads):
        pid = acks % 65535 + 1
        innocent.send(m2k.publish("test/innocent", b"%d" % acks, qos=1, pid=pid))
        innocent.expect(m2k.puback(pid), timeout=10)
        acks += 1
    for t in threads:
        t.join(60)
    assert failures == []
    assert answered[0] == ATTACKERS * REPLAYS
    m = scrape(d.mport)
    # One step per replayed ClientHello (each arrives in one read), on the pool.
    assert m["mqtt2kafka_tls_handshake_steps_total"] == ATTACKERS * REPLAYS
    assert m['mqtt2kafka_connections_refused_total{reason="tls_handshake"}'] == 0
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", acks)
    assert [r.value for r in recs] == [b"%d" % i for i in range(acks)]
    innocent.close()


def test_shutdown_while_steps_run_and_wait(daemon):
    """SIGTERM with handshake steps on the pool and more waiting for the one
    worker: the connections close, each step completes and frees its
    connection's TLS state, the daemon exits 0 (under ASan: no report)."""
    d = tls_daemon(daemon, max_tls_handshake_workers=1)
    hello = client_hello()
    held = []
    for _ in range(ATTACKERS * 10):
        s = socket.create_connection(("127.0.0.1", d.tls_port), timeout=10)
        s.sendall(hello)
        held.append(s)
    # Every ClientHello read (a step each); ~40 RSA-4096 signatures on one
    # worker take far longer than the SIGTERM below needs to arrive.
    m2k.wait_until(lambda: scrape(d.mport)["mqtt2kafka_tls_handshake_steps_total"] == len(held),
                   30, f"{len(held)} handshake steps")
    mark = d.mark()
    assert d.stop() == 0
    assert d.log(mark).rstrip().endswith("exiting with status 0"), d.log(mark)[-2000:]
    for s in held:
        s.close()


def tls_login(d, client_id, source="127.0.0.1"):
    """A whole TLS handshake from `source`, then CONNECT and its CONNACK."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", d.tls_port), timeout=30,
                                   source_address=(source, 0))
    s = ctx.wrap_socket(raw)
    s.sendall(m2k.connect(client_id))
    got = b""
    while len(got) < 4:
        chunk = s.recv(4 - len(got))
        assert chunk, f"closed after {got!r}"
        got += chunk
    assert got == m2k.CONNACK_OK
    return s


def test_one_address_cannot_take_every_handshake_slot(daemon, mock_kafka):
    """mqtt.max_tls_handshakes_per_ip: handshakes in progress are counted per
    source address (the per-address connection limits' table); past the cap
    the address is refused at accept while another still gets a slot."""
    d = tls_daemon(daemon, max_tls_handshakes=4, max_tls_handshakes_per_ip=2)
    mark = d.mark()
    stalled = []
    for _ in range(2):  # the start of a ClientHello, then silence: in progress
        c = m2k.Raw(d.tls_port)
        c.send(b"\x16\x03\x01")
        stalled.append(c)
    m2k.wait_until(lambda: scrape(d.mport)["mqtt2kafka_connections"] == 2, 10, "2 connections")
    m2k.Raw(d.tls_port).expect_close()
    d.wait_log(m2k.line(r"refusing 127\.0\.0\.1:\d+ on 127\.0\.0\.1:\d+ \(TLS\): "
                        r"mqtt\.max_tls_handshakes_per_ip 2 in progress", level="warn",
                        regex=True), since=mark)
    assert scrape(d.mport)['mqtt2kafka_connections_refused_total{reason="tls_handshake"}'] == 1
    # Another address still has slots (4 in all): a whole handshake.
    other = tls_login(d, "other", source="127.0.0.2")
    # A handshake that ends frees its address's slot.
    stalled.pop().close()
    m2k.wait_until(lambda: scrape(d.mport)["mqtt2kafka_connections"] == 2, 10, "2 connections")
    again = tls_login(d, "again")
    assert scrape(d.mport)['mqtt2kafka_connections_refused_total{reason="tls_handshake"}'] == 1
    for s in (other, again, *stalled):
        s.close()
