"""TLS listeners against real peers: mosquitto_pub, openssl s_client and
Python's ssl module. Certificates are made by the test with openssl (a CA, a
server certificate for IP 127.0.0.1, client certificates, an expired one via
`-days -1`, and a second CA); no key is committed. Each refusal is checked
in the log. Every subprocess and wait is bounded."""
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest

import m2k
from test_auth import APPLIED, UNCHANGED
from test_metrics import scrape


def run(*args, timeout=30, **kw):
    return subprocess.run(list(args), capture_output=True, timeout=timeout, **kw)


class Pki:
    def __init__(self, d):
        self.d = d
        self.ca = self.make_ca("ca", "m2k test CA")
        self.other_ca = self.make_ca("other", "some other CA")
        self.server = self.make_cert("server", "127.0.0.1", self.ca, san="IP:127.0.0.1")
        self.client = self.make_cert("client", "device-17", self.ca)
        self.expired = self.make_cert("expired", "device-old", self.ca, days="-1")
        self.foreign = self.make_cert("foreign", "device-x", self.other_ca)

    def p(self, name):
        return str(self.d / name)

    def make_ca(self, name, cn):
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", self.p(name + ".key"), "-out", self.p(name + ".crt"),
            "-subj", "/CN=" + cn, "-days", "2", check=True)
        return (self.p(name + ".crt"), self.p(name + ".key"))

    def make_cert(self, name, cn, ca, san=None, days="2"):
        key, csr, crt = self.p(name + ".key"), self.p(name + ".csr"), self.p(name + ".crt")
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", "/CN=" + cn, check=True)
        args = ["openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1],
                "-CAcreateserial", "-out", crt, "-days", days]
        if san:
            ext = self.d / (name + ".ext")
            ext.write_text(f"subjectAltName={san}\n")
            args += ["-extfile", str(ext)]
        run(*args, check=True)
        return (crt, key)


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path)


def tls_daemon(daemon, pki, **tls):
    conf = {"cert": pki.server[0], "key": pki.server[1]}
    conf.update(tls)
    d = daemon({
        "listeners": [{"listen": "127.0.0.1:0"}, {"listen": "127.0.0.1:0", "tls": conf}],
        "mqtt": {"connect_timeout_s": 2},
    })
    # A start-up line: the whole log is the right scope.
    m = d.wait_log(m2k.line(r"listening on 127\.0\.0\.1:(\d+) \(TLS\)", level="info",
                            regex=True), since=0)
    d.tls_port = int(m.group(1))
    return d


def refused(msg):
    """The line of a TLS connection that failed: about the peer's address."""
    return m2k.line(msg, level="warn", client="-", regex=True)


def mosquitto_pub(d, pki, topic, msg, cert=None, cafile=None, extra=()):
    args = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(d.tls_port), "-q", "1", "-t", topic,
            "-m", msg, "-i", "tls-pub", "--cafile", cafile or pki.ca[0]]
    if cert:
        args += ["--cert", cert[0], "--key", cert[1]]
    return run(*args, *extra)


def s_client(d, pki, *extra):
    r = run("openssl", "s_client", "-connect", f"127.0.0.1:{d.tls_port}", "-CAfile", pki.ca[0],
            *extra, input=b"", timeout=20)
    return r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


def test_mosquitto_pub_over_tls(daemon, mock_kafka, pki):
    d = tls_daemon(daemon, pki)
    r = mosquitto_pub(d, pki, "test/tls", "over-tls")
    assert r.returncode == 0, r.stderr
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 1)
    assert recs[0].value == b"over-tls"
    assert recs[0].headers["mqtt.client_id"] == b"tls-pub"


def test_protocol_versions(daemon, pki):
    d = tls_daemon(daemon, pki)
    out = s_client(d, pki, "-tls1_3")
    assert re.search(r"^New, TLSv1\.3, Cipher is ", out, re.M), out
    assert "Verify return code: 0 (ok)" in out
    out = s_client(d, pki, "-tls1_2")
    assert re.search(r"Protocol\s*: TLSv1\.2$", out, re.M), out
    mark = d.mark()
    out = s_client(d, pki, "-tls1_1")
    assert not re.search(r"^New, TLSv", out, re.M), out
    d.wait_log(refused("TLS handshake failed: unsupported protocol"), since=mark)


def test_min_version_1_3(daemon, pki):
    d = tls_daemon(daemon, pki, min_version="1.3")
    mark = d.mark()
    out = s_client(d, pki, "-tls1_2")
    assert not re.search(r"^New, TLSv1\.2", out, re.M), out
    d.wait_log(refused("TLS handshake failed: unsupported protocol"), since=mark)
    out = s_client(d, pki, "-tls1_3")
    assert re.search(r"^New, TLSv1\.3, Cipher is ", out, re.M), out


def test_client_with_wrong_ca_refuses_server(daemon, mock_kafka, pki):
    d = tls_daemon(daemon, pki)
    mark = d.mark()
    r = mosquitto_pub(d, pki, "test/tls", "x", cafile=pki.other_ca[0])
    assert r.returncode != 0
    # The client's alert, as OpenSSL names it.
    d.wait_log(refused("TLS handshake failed: tlsv1 alert unknown ca"), since=mark)
    m2k.assert_no_records(mock_kafka.bootstrap, "test")


def test_plaintext_client_on_tls_port(daemon, pki):
    d = tls_daemon(daemon, pki)
    mark = d.mark()
    c = m2k.Raw(d.tls_port)
    c.send(m2k.connect("plain"))
    assert c.closed_within(5)
    d.wait_log(refused(re.escape("TLS handshake failed: wrong version number (first byte 0x10 is "
                                 "not a TLS handshake: a plaintext client on a TLS listener?)")),
               since=mark)


def test_handshake_timeout(daemon, pki):
    d = tls_daemon(daemon, pki)
    mark = d.mark()
    t0 = time.monotonic()
    c = m2k.Raw(d.tls_port)
    c.send(b"\x16\x03\x01")  # the start of a ClientHello, then silence
    c.expect_close(timeout=6)
    assert time.monotonic() - t0 >= 2.0, "closed before connect_timeout_s"
    d.wait_log(refused("TLS handshake not completed within connect_timeout_s 2"), since=mark)
    d.wait_log(refused("closing: TLS handshake timeout"), since=mark)


def mutual(daemon, pki, **extra):
    return tls_daemon(daemon, pki, ca=pki.ca[0], require_client_cert=True, **extra)


def test_mutual_tls(daemon, mock_kafka, pki):
    d = mutual(daemon, pki)
    r = mosquitto_pub(d, pki, "test/m", "mutual", cert=pki.client)
    assert r.returncode == 0, r.stderr
    assert [x.value for x in m2k.assert_records(mock_kafka.bootstrap, "test", 1)] == [b"mutual"]


def test_mutual_tls_refusals(daemon, mock_kafka, pki):
    d = mutual(daemon, pki)
    for name, cert, why in [
            ("nocert", None, "peer did not return a certificate"),
            ("expired", pki.expired, "client certificate verify failed: certificate has expired"),
            ("foreign", pki.foreign,
             "client certificate verify failed: unable to get local issuer certificate")]:
        mark = d.mark()
        assert mosquitto_pub(d, pki, "test/m", name, cert=cert).returncode != 0, name
        d.wait_log(refused(re.escape(f"TLS handshake failed: {why}")), since=mark)
    m2k.assert_no_records(mock_kafka.bootstrap, "test")


def test_identity_as_username(daemon, mock_kafka, pki, tmp_path):
    acl = tmp_path / "acl"
    acl.write_text("user device-17\ntopic write test/device-17/#\n")
    d = daemon({
        "listeners": [{"listen": "127.0.0.1:0"},
                      {"listen": "127.0.0.1:0",
                       "tls": {"cert": pki.server[0], "key": pki.server[1], "ca": pki.ca[0],
                               "require_client_cert": True, "use_identity_as_username": True}}],
        "auth": {"acl_file": str(acl), "allow_anonymous": False},
    })
    # A start-up line: the whole log is the right scope.
    d.tls_port = int(d.wait_log(r"listening on 127\.0\.0\.1:(\d+) \(TLS\)$", since=0).group(1))
    # The CONNECT's user name is replaced by the certificate's CN.
    r = mosquitto_pub(d, pki, "test/device-17/t", "by-cn", cert=pki.client,
                      extra=("-u", "someone-else", "-P", "ignored"))
    assert r.returncode == 0, r.stderr
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 1)
    assert recs[0].headers["mqtt.username"] == b"device-17"
    # Anonymous on the plain listener is still refused.
    c = m2k.Raw(d.port)
    c.send(m2k.connect("anon"))
    c.expect_close(bytes([0x20, 2, 0, 5]))


def tls_client(d, pki):
    ctx = ssl.create_default_context(cafile=pki.ca[0])
    raw = socket.create_connection(("127.0.0.1", d.tls_port), timeout=5)
    s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    return s


def recv_n(s, n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        assert chunk, "closed"
        b += chunk
    return b


def test_sighup_reloads_certificate(daemon, mock_kafka, pki):
    d = tls_daemon(daemon, pki)
    old = tls_client(d, pki)
    old.sendall(m2k.connect("old-conn"))
    assert recv_n(old, 4) == m2k.CONNACK_OK
    assert old.getpeercert()["subject"] == ((("commonName", "127.0.0.1"),),)
    # New certificate (another CN) in the same files.
    pki.make_cert("server", "127.0.0.1-renewed", pki.ca, san="IP:127.0.0.1")
    mark = d.mark()
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log(m2k.line("reload: listener 127.0.0.1:0 (TLS): TLS certificate reloaded (new "
                        "handshakes use it)", level="info"), since=mark)
    d.wait_log(APPLIED, since=mark)
    new = tls_client(d, pki)
    assert new.getpeercert()["subject"] == ((("commonName", "127.0.0.1-renewed"),),)
    new.close()
    # The established connection stays up and works.
    old.sendall(m2k.publish("test/reload", b"still-up", qos=1, pid=9))
    assert recv_n(old, 4) == m2k.puback(9)
    assert [x.value for x in m2k.assert_records(mock_kafka.bootstrap, "test", 1)] == [b"still-up"]
    # A broken key file: the old certificate stays in use.
    with open(pki.server[1], "w") as f:
        f.write("not a key\n")
    mark = d.mark()
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log(m2k.line(r"reload: TLS certificates: listener 127\.0\.0\.1:0 \(TLS\): "
                        + re.escape(pki.server[1]) + r": .+", level="error", regex=True),
               since=mark)
    d.wait_log(UNCHANGED, since=mark)
    assert "TLS certificate reloaded" not in d.log(mark)
    again = tls_client(d, pki)
    assert again.getpeercert()["subject"] == ((("commonName", "127.0.0.1-renewed"),),)
    again.close()
    old.close()


def make_crl(pki, revoked_crt, out):
    """A CRL of the test CA revoking one certificate (python3-cryptography)."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    ca = x509.load_pem_x509_certificate(open(pki.ca[0], "rb").read())
    key = serialization.load_pem_private_key(open(pki.ca[1], "rb").read(), None)
    serial = x509.load_pem_x509_certificate(open(revoked_crt, "rb").read()).serial_number
    now = datetime.datetime.now(datetime.timezone.utc)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
           .last_update(now - datetime.timedelta(hours=1))
           .next_update(now + datetime.timedelta(days=1))
           .add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(serial)
                                    .revocation_date(now - datetime.timedelta(hours=1)).build())
           .sign(key, hashes.SHA256()))
    out.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return str(out)


def test_crl_refuses_a_revoked_client_certificate(daemon, mock_kafka, pki, tmp_path):
    """Issue 20 finding 11: tls.crl_file (without it a revoked certificate
    still logged in)."""
    other = pki.make_cert("client2", "device-18", pki.ca)
    crl = make_crl(pki, pki.client[0], tmp_path / "ca.crl")
    d = mutual(daemon, pki, crl_file=crl)
    mark = d.mark()
    assert mosquitto_pub(d, pki, "test/m", "revoked", cert=pki.client).returncode != 0
    d.wait_log(refused(re.escape("TLS handshake failed: client certificate verify failed: "
                                 "certificate revoked")), since=mark)
    r = mosquitto_pub(d, pki, "test/m", "not revoked", cert=other)
    assert r.returncode == 0, r.stderr
    assert [x.value for x in m2k.assert_records(mock_kafka.bootstrap, "test", 1)] == \
        [b"not revoked"]


def test_max_tls_handshakes(daemon, mock_kafka, pki):
    d = daemon({
        "listeners": [{"listen": "127.0.0.1:0"},
                      {"listen": "127.0.0.1:0",
                       "tls": {"cert": pki.server[0], "key": pki.server[1]}}],
        "mqtt": {"connect_timeout_s": 30, "max_tls_handshakes": 2},
        "metrics": {"listen": "127.0.0.1:0"},
    })
    port = d.tls_port = int(d.wait_log(m2k.line(r"listening on 127\.0\.0\.1:(\d+) \(TLS\)",
                                                level="info", regex=True), since=0).group(1))
    mport = int(d.wait_log(r"metrics listening on 127\.0\.0\.1:(\d+) ", since=0).group(1))
    mark = d.mark()
    stalled = []
    for _ in range(2):  # the start of a ClientHello, then silence: in progress
        c = m2k.Raw(port)
        c.send(b"\x16\x03\x01")
        stalled.append(c)
    m2k.wait_until(lambda: scrape(mport)["mqtt2kafka_connections"] == 2, 10, "2 connections")
    third = m2k.Raw(port)
    third.expect_close()
    d.wait_log(m2k.line("refused: mqtt.max_tls_handshakes 2 in progress", level="warn",
                        client="-"), since=mark)
    assert scrape(mport)['mqtt2kafka_connections_refused_total{reason="tls_handshake"}'] == 1
    # The plain listener is not limited; a finished handshake frees its slot.
    m2k.Raw(d.port).connect("plain").close()
    stalled.pop().close()
    m2k.wait_until(lambda: scrape(mport)["mqtt2kafka_connections"] == 1, 10, "1 connection")
    s = tls_client(d, pki)
    s.sendall(m2k.connect("tls-ok"))
    assert recv_n(s, 4) == m2k.CONNACK_OK
    # Open, it no longer counts: another handshake gets the freed slot.
    s2 = tls_client(d, pki)
    s2.sendall(m2k.connect("tls-ok2"))
    assert recv_n(s2, 4) == m2k.CONNACK_OK
    for x in (s, s2, *stalled):
        x.close()

