#!/usr/bin/python3
"""The figures of docs/security.md, "Budgets" (run from the source tree after
`make build`; by hand, never in the suite):

    bench/budgets/budgets.py regex         regexec's cost per topic length
    bench/budgets/budgets.py topics N      RSS after N distinct Kafka topics
    bench/budgets/budgets.py partial N     N clients each 100 bytes short of a
                                           999,000-byte PUBLISH, keepalive 0
    bench/budgets/budgets.py hashing RATE  an innocent client's QoS 1 ack latency
                                           for 10 s, then for 10 s while RATE
                                           CONNECTs/s log in as a user whose `$7$`
                                           entry has 100,000 iterations
                                           (M2K_BUILD_DIR=... picks the binary)
    bench/budgets/budgets.py tls THREADS   the same ack latency while THREADS
                                           clients complete TLS handshakes
                                           against an RSA-4096 certificate
                                           one after another
    bench/budgets/budgets.py tls-replay THREADS
                                           the same while THREADS clients replay
                                           one ClientHello (connect, send it,
                                           read the server's first byte, close):
                                           a 4096-bit signature each for the
                                           daemon, next to nothing for them
"""
import ctypes
import os
import pathlib
import sys
import tempfile
import time

SRC = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(SRC / "tests" / "integration"))
os.environ.setdefault("M2K_BUILD_DIR", str(SRC / "build"))


def regex():
    """glibc's regexec, as the topic map calls it (REG_EXTENDED, 10 groups)."""
    libc = ctypes.CDLL("libc.so.6")
    for pat in ["(.+)/alarm", "^(.+)/alarm$", "^plant/([^/]+)/(.+)$"]:
        re = ctypes.create_string_buffer(256)  # regex_t is 64 bytes on x86-64
        assert libc.regcomp(re, pat.encode(), 1) == 0  # REG_EXTENDED
        pm = ctypes.create_string_buffer(8 * 10)
        for n in (64, 1024, 4096, 65401):
            topic = b"a" * (n - 6) + b"/alerm"  # no match: the worst case
            reps = 1 if n > 10000 else 5 if n > 2000 else 200
            t0 = time.perf_counter()
            for _ in range(reps):
                libc.regexec(re, topic, 10, pm, 0)
            print(f"{pat:24} {n:6} bytes: {(time.perf_counter() - t0) / reps * 1e6:12.1f} us")
        libc.regfree(re)


def topics(n):
    import m2k
    from m2k import Raw
    mk = m2k.MockKafka(brokers=1)  # its own process: its memory is not counted
    with tempfile.TemporaryDirectory() as tmp:
        d = m2k.Daemon(pathlib.Path(tmp), mk.bootstrap,
                       {"topics": [{"regex": "^t/([a-z0-9]+)$", "kafka": "t-{1}"}],
                        "kafka": {"max_topics": n}})
        c = Raw(d.port).connect("dev1")
        c.send(m2k.publish("t/warm", b"v", qos=1, pid=1))
        c.expect(m2k.puback(1), timeout=30)
        r0 = d.rss_kb()
        for i in range(1, n):
            pid = i % 65535 + 1
            c.send(m2k.publish(f"t/x{i}", b"v", qos=1, pid=pid))
            c.expect(m2k.puback(pid), timeout=30)
        r1 = d.rss_kb()
        c.send(m2k.publish("t/onemore", b"v", qos=1, pid=7))
        c.expect_close(b"")
        print(f"{n} Kafka topics: RSS {r0} -> {r1} KiB ({(r1 - r0) / max(n - 1, 1):.1f} KiB per "
              f"topic); topic {n + 1} refused")
        d.stop()
    mk.close()


def partial(n):
    import m2k
    from m2k import Raw
    from test_metrics import scrape
    mk = m2k.MockKafka(brokers=1)
    with tempfile.TemporaryDirectory() as tmp:
        d = m2k.Daemon(pathlib.Path(tmp), mk.bootstrap, {"metrics": {"listen": "127.0.0.1:0"}})
        import re
        mport = int(re.search(r"metrics listening on 127\.0\.0\.1:(\d+)", d.log()).group(1))
        r0 = d.rss_kb()
        pkt = m2k.publish("test/big", b"x" * (999000 - 16), qos=1, pid=1)
        assert len(pkt) == 999000
        conns, peak = [], 0
        for i in range(n):
            c = Raw(d.port).connect(f"p{i}", keepalive=0)
            try:
                c.send(pkt[:-100])
            except OSError:
                pass  # closed over the budget while sending
            conns.append(c)
            peak = max(peak, d.rss_kb())
        time.sleep(1)
        s = scrape(mport)
        closed = s['mqtt2kafka_input_closed_total{reason="input_budget"}']
        print(f"{n} partial 999,000-byte PUBLISHes: RSS {r0} -> peak {peak} KiB, "
              f"{d.rss_kb()} KiB after; buffered {s['mqtt2kafka_input_buffer_bytes']:.0f} bytes; "
              f"closed over the budget: {closed:.0f}")
        t0 = time.monotonic()
        m2k.wait_until(lambda: scrape(mport)["mqtt2kafka_input_buffer_bytes"] == 0, 60,
                       "packet_timeout_s to close the rest")
        print(f"every partial packet closed {time.monotonic() - t0:.1f} s later "
              f"(packet_timeout_s 30); RSS {d.rss_kb()} KiB")
        for c in conns:
            c.close()
        d.stop()
    mk.close()


def ack_latencies(c, seconds):
    """Sends QoS 1 PUBLISHes one after another for `seconds`; their ack
    latencies in ms."""
    import m2k
    lat, pid, end = [], 0, time.monotonic() + seconds
    while time.monotonic() < end:
        pid = pid % 65535 + 1
        t0 = time.perf_counter()
        c.send(m2k.publish("test/innocent", b"v", qos=1, pid=pid))
        c.expect(m2k.puback(pid), timeout=60)
        lat.append((time.perf_counter() - t0) * 1e3)
        time.sleep(0.02)
    return sorted(lat)


def hashing(rate):
    import subprocess
    import threading
    import m2k
    from m2k import Raw
    mk = m2k.MockKafka(brokers=1)
    with tempfile.TemporaryDirectory() as tmp:
        pw = pathlib.Path(tmp) / "passwd"
        subprocess.run(["mosquitto_passwd", "-b", "-c", "-I", "100000", str(pw), "alice", "s3"],
                       check=True, capture_output=True, timeout=60)
        d = m2k.Daemon(pathlib.Path(tmp), mk.bootstrap,
                       {"auth": {"password_file": str(pw), "allow_anonymous": True}})
        c = Raw(d.port).connect("innocent")
        ack_latencies(c, 1)  # warm up (producer, metadata)
        quiet = ack_latencies(c, 10)
        stop, opened, conns = threading.Event(), [0], []

        def attack():
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    a = Raw(d.port)
                    a.send(m2k.connect(f"a{opened[0]}", username="alice", password="s3"))
                    conns.append(a)
                    opened[0] += 1
                except OSError:
                    pass
                while len(conns) > 4 * rate:
                    conns.pop(0).close()
                time.sleep(max(0.0, 1.0 / rate - (time.monotonic() - t0)))

        t = threading.Thread(target=attack)
        t.start()
        loud = ack_latencies(c, 10)
        stop.set()
        t.join()
        for a in conns:
            a.close()
        print(f"{os.environ['M2K_BUILD_DIR']}: innocent ack latency, quiet: {fig(quiet)}")
        print(f"  during {opened[0]} CONNECTs in 10 s ($7$ 100,000 iterations): {fig(loud)}")
        d.stop()
    mk.close()


def fig(lat):
    return (f"median {lat[len(lat) // 2]:.1f} ms, p99 {lat[len(lat) * 99 // 100]:.1f} ms, "
            f"max {lat[-1]:.1f} ms over {len(lat)}")


def tls(threads, replay=False):
    import socket
    import ssl
    import subprocess
    import threading
    import m2k
    from m2k import Raw
    mk = m2k.MockKafka(brokers=1)
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = f"{tmp}/cert.pem", f"{tmp}/key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:4096", "-nodes", "-keyout",
                        key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1"],
                       check=True, capture_output=True, timeout=120)
        d = m2k.Daemon(pathlib.Path(tmp), mk.bootstrap,
                       {"listeners": [{"listen": "127.0.0.1:0"},
                                      {"listen": "127.0.0.1:0",
                                       "tls": {"cert": cert, "key": key}}]})
        import re
        tport = int(re.search(r"listening on 127\.0\.0\.1:(\d+) \(TLS\)", d.log()).group(1))
        c = Raw(d.port).connect("innocent")
        ack_latencies(c, 1)
        quiet = ack_latencies(c, 10)
        stop, done = threading.Event(), [0]
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE

        from test_tls_workers import client_hello
        hello = client_hello()

        def attack():
            while not stop.is_set():
                try:
                    with socket.create_connection(("127.0.0.1", tport), timeout=10) as raw:
                        if replay:
                            raw.sendall(hello)
                            if raw.recv(1) == b"\x16":  # the server signed
                                done[0] += 1
                        else:
                            with ctx.wrap_socket(raw):
                                done[0] += 1
                except OSError:
                    pass

        ts = [threading.Thread(target=attack) for _ in range(threads)]
        for t in ts:
            t.start()
        loud = ack_latencies(c, 10)
        stop.set()
        for t in ts:
            t.join()
        print(f"{os.environ['M2K_BUILD_DIR']}: innocent ack latency, quiet: {fig(quiet)}")
        what = "ClientHellos answered" if replay else "TLS handshakes"
        print(f"  during {done[0]} {what} in 10 s (RSA-4096, {threads} clients): "
              f"{fig(loud)}")
        d.stop()
    mk.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["regex"]:
        regex()
    elif sys.argv[1:2] == ["topics"] and len(sys.argv) == 3:
        topics(int(sys.argv[2]))
    elif sys.argv[1:2] == ["partial"] and len(sys.argv) == 3:
        partial(int(sys.argv[2]))
    elif sys.argv[1:2] == ["hashing"] and len(sys.argv) == 3:
        hashing(int(sys.argv[2]))
    elif sys.argv[1:2] == ["tls"] and len(sys.argv) == 3:
        tls(int(sys.argv[2]))
    elif sys.argv[1:2] == ["tls-replay"] and len(sys.argv) == 3:
        tls(int(sys.argv[2]), replay=True)
    else:
        sys.exit(__doc__)
