"""mqtt2kafka's command line: --check (nginx -t style), --import-confluent,
and startup refusing a bad configuration. Runs the real binary; no network."""
import os
import re
import subprocess

import pytest

BUILD = os.environ.get("M2K_BUILD_DIR", "build")
SOURCE = os.environ.get("M2K_SOURCE_DIR", ".")
BIN = os.path.join(BUILD, "mqtt2kafka")


def run(*args, cwd=None):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=30, cwd=cwd)


@pytest.mark.parametrize("name", ["mqtt2kafka.yaml", "production.example.yaml"])
def test_shipped_configs_pass_check(name):
    r = run("--check", "-c", os.path.join(SOURCE, "config", name))
    assert (r.returncode, r.stdout, r.stderr) == (0, "configuration OK\n", "")


def test_check_reports_every_error_with_position(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "listeners:\n"
        "  - listen: \"0.0.0.0:1883\"\n"
        "  - listen: \"0.0.0.0:1883\"\n"
        "kafka:\n"
        "  bootstrap_servers: embedded\n"
        "topics:\n"
        "  - mqtt: \"a/#/b\"\n"
        "    kafka: x\n"
        "mqtt:\n"
        "  max_inflight: 0\n"
    )
    r = run("-t", "-c", str(bad))
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr == (
        f"{bad}:3:13: listeners[1].listen: duplicate listener \"0.0.0.0:1883\" (first at line 2)\n"
        f"{bad}:7:11: topics[0].mqtt: invalid topic filter \"a/#/b\": '#' must be alone in the last level\n"
        f"{bad}:10:17: mqtt.max_inflight: expected an integer from 1 to 65535, got \"0\"\n"
    )


def test_check_asks_librdkafka_about_properties(tmp_path):
    bad = tmp_path / "props.yaml"
    bad.write_text(
        "kafka:\n"
        "  bootstrap_servers: embedded\n"
        "  properties:\n"
        "    linger.ms: soon\n"
        "    no.such.property: 1\n"
        "    compression.type: lz4\n"
    )
    for args in (["--check", "-c", str(bad)], ["-c", str(bad)]):
        r = run(*args)
        assert r.returncode == 1
        assert r.stdout == ""
        assert r.stderr == (
            f"{bad}:4:16: kafka.properties.linger.ms: Invalid value for configuration property \"queue.buffering.max.ms\"\n"
            f"{bad}:5:23: kafka.properties.no.such.property: No such configuration property: \"no.such.property\"\n"
        )


@pytest.mark.parametrize(
    "prop,col,message",
    [
        ("acks: 1", 11, "`acks` must be set to `all` when `enable.idempotence` is true"),
        (
            "max.in.flight.requests.per.connection: 10",
            44,
            "`max.in.flight` must be set <= 5 when `enable.idempotence` is true",
        ),
        (
            "security.protocol: sasl_ssl",
            24,
            'Invalid sasl.kerberos.kinit.cmd value: Property not available: "sasl.kerberos.keytab"',
        ),
    ],
)
def test_check_refuses_what_the_producer_refuses(tmp_path, prop, col, message):
    """Each property is valid alone; librdkafka refuses the whole at
    rd_kafka_new, so --check must build the producer as the start does."""
    bad = tmp_path / "combo.yaml"
    bad.write_text(
        "kafka:\n"
        "  bootstrap_servers: 127.0.0.1:1\n"
        "  properties:\n"
        f"    {prop}\n"
        "topics:\n"
        "  - mqtt: \"a/#\"\n"
        "    kafka: t\n"
    )
    name = prop.split(":")[0]
    r = run("--check", "-c", str(bad))
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == f"{bad}:4:{col}: kafka.properties.{name}: kafka producer: {message}\n"


def test_check_passes_acks_1_without_idempotence(tmp_path):
    ok = tmp_path / "acks1.yaml"
    ok.write_text(
        "kafka:\n"
        "  bootstrap_servers: 127.0.0.1:1\n"
        "  properties:\n"
        "    acks: 1\n"
        "    enable.idempotence: false\n"
    )
    r = run("--check", "-c", str(ok))
    assert (r.returncode, r.stdout, r.stderr) == (0, "configuration OK\n", "")


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "absent.yaml"
    for args in (["-t", "-c", str(path)], ["-c", str(path)]):
        r = run(*args)
        assert (r.returncode, r.stdout) == (1, "")
        assert r.stderr == f"{path}: cannot open: No such file or directory\n"


def test_import_confluent_matches_golden_and_checks(tmp_path):
    data = os.path.join(SOURCE, "tests", "data")
    r = run("--import-confluent", "kafka-mqtt.properties", cwd=data)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(data, "kafka-mqtt.expected.yaml")) as f:
        assert r.stdout == f.read()
    out = tmp_path / "imported.yaml"
    out.write_text(r.stdout)
    c = run("--check", "-c", str(out))
    assert (c.returncode, c.stdout, c.stderr) == (0, "configuration OK\n", "")


def test_usage_errors():
    r = run("--bogus")
    assert r.returncode == 2
    assert r.stderr.startswith("mqtt2kafka: unknown argument '--bogus'\nusage: mqtt2kafka [-c FILE]")
    r = run("-c")
    assert r.returncode == 2
    assert r.stderr.startswith("mqtt2kafka: -c needs a file name\n")
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("mqtt2kafka ")
    r = run("-h")
    assert r.returncode == 0 and "--import-confluent FILE" in r.stdout


def _auth_config(tmp_path, tls, auth):
    cfg = tmp_path / "files.yaml"
    cfg.write_text(
        "listeners:\n"
        "  - listen: \"127.0.0.1:8883\"\n"
        + (f"    tls:\n      cert: {tls[0]}\n      key: {tls[1]}\n" if tls else "")
        + "kafka:\n"
        "  bootstrap_servers: embedded\n"
        "topics:\n"
        "  - mqtt: \"#\"\n"
        "    kafka: x\n"
        "auth:\n"
        f"  password_file: {auth[0]}\n"
        f"  acl_file: {auth[1]}\n")
    return cfg


def test_check_loads_tls_password_and_acl_files(tmp_path):
    """--check loads what the daemon loads at start: a missing certificate or
    password file fails the check with the position of its setting."""
    cfg = _auth_config(tmp_path, (tmp_path / "none.pem", tmp_path / "none.key"),
                       (tmp_path / "no-passwd", tmp_path / "no-acl"))
    r = run("--check", "-c", str(cfg))
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 2, r.stderr
    assert lines[0] == (f"{cfg}:4:7: listeners[0].tls: {tmp_path / 'none.pem'}: No such file or "
                        "directory")
    assert lines[1] == (f"{cfg}:12:3: auth: {tmp_path / 'no-passwd'}: cannot open: "
                        "No such file or directory")
    # With real files (a password file written by our passwd subcommand, an
    # ACL, a self-signed certificate) the same configuration passes.
    pw, acl = tmp_path / "passwd", tmp_path / "acl"
    r = subprocess.run([BIN, "passwd", str(pw), "alice"], input="s3cret-Pw\n", text=True,
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    acl.write_text("user alice\ntopic write sensors/#\n")
    crt, key = tmp_path / "srv.pem", tmp_path / "srv.key"
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(crt)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = run("--check", "-c", str(_auth_config(tmp_path, (crt, key), (pw, acl))))
    assert (r.returncode, r.stdout, r.stderr) == (0, "configuration OK\n", "")
    # A key that does not belong to the certificate is caught too.
    other = tmp_path / "other.key"
    subprocess.run(["openssl", "genrsa", "-out", str(other), "2048"], capture_output=True,
                   timeout=60, check=True)
    r = run("--check", "-c", str(_auth_config(tmp_path, (crt, other), (pw, acl))))
    assert r.returncode == 1 and f"{tmp_path / 'files.yaml'}:4:7: listeners[0].tls: " in r.stderr


def test_settings_markdown_is_the_documented_table():
    """The hidden --settings-markdown prints the settings table that
    docs/configuration.md carries between its two markers."""
    r = run("--settings-markdown")
    assert (r.returncode, r.stderr) == (0, "")
    with open(os.path.join(SOURCE, "docs", "configuration.md")) as f:
        doc = f.read()
    start = doc.index("<!-- settings table")
    start = doc.index("-->\n", start) + len("-->\n")
    end = doc.index("<!-- end of the settings table -->")
    assert r.stdout == doc[start:end]
    assert "--settings-markdown" not in run("--help").stdout


def test_check_warns_about_slow_regexes_and_illegal_topic_templates(tmp_path):
    cfg = tmp_path / "warn.yaml"
    cfg.write_text(
        "kafka:\n"
        "  bootstrap_servers: embedded\n"
        "topics:\n"
        "  - regex: \"(.+)/alarm\"\n"
        "    kafka: alarms\n"
        "  - regex: \"^plant/([^/]+)/(.+)$\"\n"
        "    kafka: \"plant-{1}\"\n"
        "  - regex: \"^site/([a-z0-9-]+)/.+$\"\n"
        "    kafka: \"site-{1}\"\n"
        "  - mqtt: \"dev/+/#\"\n"
        "    kafka: \"dev-{2}\"\n")
    r = run("--check", "-c", str(cfg))
    tail = (": a message whose rendered Kafka topic is illegal is refused, never acknowledged "
            "(allowed: a-z A-Z 0-9 . _ -, 1..249 characters)\n")
    assert (r.returncode, r.stdout) == (0, "configuration OK\n")
    assert r.stderr == (
        f"{cfg}:4:12: warning: topics[0].regex: \"(.+)/alarm\" is not anchored with '^': it is "
        "tried from every position of the topic, in time up to quadratic in the topic's length "
        "on the event loop (topics over mqtt.max_regex_topic_length skip regex rules)\n"
        f"{cfg}:7:12: warning: topics[1].kafka: {{1}} is regex group 1, which may match a byte "
        "a Kafka topic name cannot hold (write the group with [a-zA-Z0-9._-])" + tail +
        f"{cfg}:11:12: warning: topics[3].kafka: {{2}} is what '#' matches, which may hold "
        "'/'" + tail)


def test_password_file_readable_or_writable_by_others_is_warned_about(tmp_path):
    """Issue 20 finding 11: such a file loaded silently (Mosquitto warns)."""
    pw, acl = tmp_path / "passwd", tmp_path / "acl"
    r = subprocess.run([BIN, "passwd", str(pw), "alice"], input="s3cret-Pw\n", text=True,
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    acl.write_text("user alice\ntopic write sensors/#\n")
    cfg = _auth_config(tmp_path, None, (pw, acl))
    assert oct(os.stat(pw).st_mode & 0o777) == "0o600"
    assert run("--check", "-c", str(cfg)).stderr == ""
    for mode, what, why in [
            (0o644, "readable", "its hashes can be guessed offline"),
            (0o666, "writable", "anyone on the host can add a user")]:
        os.chmod(pw, mode)
        r = run("--check", "-c", str(cfg))
        assert (r.returncode, r.stdout) == (0, "configuration OK\n")
        assert re.fullmatch(
            rf"\S+ warn  auth\.password_file {re.escape(str(pw))}: {what} by every user "
            rf"\(mode 0{mode:o}\): {why}; chmod o-rw\n", r.stderr), r.stderr
