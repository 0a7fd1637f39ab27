"""Password files are interchangeable with Mosquitto 2.0 in both directions.

mosquitto_passwd writes, our verifier reads: driven through `test_auth check`
(the unit-test executable doubles as a helper, see tests/unit/test_auth.c).
Our passwd tool writes (`test_auth passwd`, the same passwd_tool_main that
`mqtt2kafka passwd` runs), mosquitto 2.0.11 reads: a real broker on a free
loopback port with allow_anonymous false, probed with mosquitto_pub.
Every subprocess is bounded by a timeout."""
import getpass
import hashlib
import base64
import os
import socket
import subprocess
import time

import pytest

BUILD = os.environ.get("M2K_BUILD_DIR", "build")
HELPER = os.path.join(BUILD, "tests", "test_auth")


def helper(*args, stdin=""):
    return subprocess.run([HELPER, *args], input=stdin, capture_output=True, text=True,
                          timeout=30)


def check(path, user, password):
    r = helper("check", str(path), user, stdin=password + "\n")
    assert r.stderr == ""
    return r.stdout.strip()


def mosquitto_passwd(*args):
    subprocess.run(["mosquitto_passwd", *args], check=True, capture_output=True, timeout=30)


def test_file_from_mosquitto_passwd(tmp_path):
    pw = tmp_path / "pw"
    mosquitto_passwd("-b", "-c", str(pw), "alice", "s3cret")
    mosquitto_passwd("-b", "-H", "sha512", str(pw), "bob", "hunter2")
    mosquitto_passwd("-b", "-I", "1000", str(pw), "carol", "p\u00e4ss w\u00f6rd")
    mosquitto_passwd("-b", str(pw), "dave", "x" * 1000)
    assert helper("load", str(pw)).stdout == "4\n"
    assert check(pw, "alice", "s3cret") == "OK"
    assert check(pw, "bob", "hunter2") == "OK"
    assert check(pw, "carol", "p\u00e4ss w\u00f6rd") == "OK"
    assert check(pw, "dave", "x" * 1000) == "OK"
    for user, wrong in [("alice", "s3cre"), ("alice", "S3cret"), ("alice", "hunter2"),
                        ("bob", "hunter"), ("carol", "pass word"), ("dave", "x" * 999),
                        ("eve", "s3cret"), ("Alice", "s3cret")]:
        assert check(pw, user, wrong) == "BAD", (user, wrong)
    # Updating with mosquitto_passwd replaces the old password.
    mosquitto_passwd("-b", str(pw), "alice", "n3w")
    assert check(pw, "alice", "n3w") == "OK"
    assert check(pw, "alice", "s3cret") == "BAD"


def test_python_pbkdf2_vector(tmp_path):
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", b"py-pass", salt, 555, 64)
    pw = tmp_path / "pw"
    pw.write_text("py:$7$555$%s$%s\n" % (base64.b64encode(salt).decode(),
                                         base64.b64encode(digest).decode()))
    assert check(pw, "py", "py-pass") == "OK"
    assert check(pw, "py", "py-pas") == "BAD"


def test_our_tool_then_mosquitto_passwd_edits_it(tmp_path):
    pw = tmp_path / "pw"
    assert helper("passwd", str(pw), "alice", stdin="one\n").returncode == 0
    assert oct(pw.stat().st_mode & 0o777) == "0o600"
    # mosquitto_passwd rejects comments, so keep this file entries-only.
    mosquitto_passwd("-b", str(pw), "bob", "two")
    assert check(pw, "alice", "one") == "OK"
    assert check(pw, "bob", "two") == "OK"
    r = helper("passwd", "-D", str(pw), "bob")
    assert (r.returncode, r.stderr) == (0, "")
    assert check(pw, "bob", "two") == "BAD"
    assert helper("load", str(pw)).stdout == "1\n"


def test_errors_name_file_and_line(tmp_path):
    pw = tmp_path / "pw"
    mosquitto_passwd("-b", "-c", str(pw), "alice", "s3cret")
    with open(pw, "a") as f:
        f.write("# fine\nbob:plaintext\n")
    r = helper("load", str(pw))
    assert r.returncode == 1
    assert r.stdout == ("%s:3: unsupported password hash (expected $6$ or $7$ as written by "
                        "mosquitto_passwd)\n" % pw)
    # The tool refuses to touch such a file.
    before = pw.read_bytes()
    r = helper("passwd", str(pw), "carol", stdin="x\n")
    assert r.returncode == 1
    assert r.stderr.startswith("mqtt2kafka passwd: %s:3: unsupported password hash" % pw)
    assert r.stderr.endswith("(file left unchanged)\n")
    assert pw.read_bytes() == before


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def broker(tmp_path):
    """Starts mosquitto with the password file tmp_path/pw (filled by the test
    before calling start())."""
    procs = []

    def start(extra=""):
        port = free_port()
        conf = tmp_path / "mosquitto.conf"
        conf.write_text("listener %d 127.0.0.1\npassword_file %s\nallow_anonymous false\n"
                        "persistence false\nuser %s\n%s"
                        % (port, tmp_path / "pw", getpass.getuser(), extra))
        p = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        procs.append(p)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert p.poll() is None, p.stderr.read().decode()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return port
            except OSError:
                time.sleep(0.05)
        pytest.fail("mosquitto did not start listening")

    yield start
    for p in procs:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def mosquitto_pub(port, user, password):
    r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-u", user,
                        "-P", password, "-t", "probe", "-m", "x", "-q", "1"],
                       capture_output=True, text=True, timeout=20)
    return r.returncode, r.stderr


def test_mosquitto_accepts_our_file(tmp_path, broker):
    pw = tmp_path / "pw"
    pw.write_text("# written by hand, kept by the tool\n\n")
    assert helper("passwd", str(pw), "alice", stdin="s3cret\n").returncode == 0
    assert helper("passwd", str(pw), "bob smith", stdin="p\u00e4ss\n").returncode == 0
    assert helper("passwd", str(pw), "alice", stdin="n3w\n").returncode == 0
    text = pw.read_text()
    assert text.startswith("# written by hand, kept by the tool\n\nalice:$7$101$")
    port = broker()
    assert mosquitto_pub(port, "alice", "n3w") == (0, "")
    assert mosquitto_pub(port, "bob smith", "p\u00e4ss") == (0, "")
    for user, password in [("alice", "s3cret"), ("alice", "n3w "), ("bob smith", "pass"),
                           ("carol", "n3w")]:
        rc, err = mosquitto_pub(port, user, password)
        assert rc == 5 and "not authorised" in err, (user, password, rc, err)
