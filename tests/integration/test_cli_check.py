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
    # Accepted, with the lint's warnings (it trades safety).
    assert (r.returncode, r.stdout) == (0, "configuration OK\n")
    assert r.stderr == (
        f"{ok}:4:11: warning: kafka.properties.acks: 1: a record counts as delivered (and its "
        "QoS 1/2 message is acknowledged) before every in-sync replica has it; a leader failure "
        "can lose it (acks: all keeps it)\n"
        f"{ok}:5:25: warning: kafka.properties.enable.idempotence: false: a retried produce "
        "request can write a record twice or out of order\n"
    )


def test_check_accepts_property_templates_and_warns(tmp_path):
    """{property:NAME} (MQTT 5 user properties) is accepted in the key and
    Kafka topic templates; in the Kafka topic it is client input, warned
    about like {client_id}."""
    ok = tmp_path / "prop.yaml"
    ok.write_text(
        "kafka:\n"
        "  bootstrap_servers: 127.0.0.1:1\n"
        "topics:\n"
        "  - mqtt: a/+\n"
        "    kafka: a-{property:site}\n"
        "    key: \"{property:dev}-{1}\"\n"
    )
    r = run("--check", "-c", str(ok))
    assert (r.returncode, r.stdout) == (0, "configuration OK\n")
    assert r.stderr == (
        f"{ok}:5:12: warning: topics[0].kafka: {{property:NAME}} is chosen by the client and "
        "may hold any character: a message whose rendered Kafka topic is illegal is refused, "
        "never acknowledged (allowed: a-z A-Z 0-9 . _ -, 1..249 characters)\n"
    )


LINT_YAML = (
    "kafka:\n"
    "  bootstrap_servers: embedded\n"
    "  properties:\n"
    "    enable.idempotence: \"False\"\n"
    "    request.required.acks: 0\n"
    "topics:\n"
    "  - mqtt: \"a/#\"\n"
    "    kafka: a\n"
    "  - mqtt: \"a/+/b\"\n"
    "    kafka: b\n"
    "  - regex: \"^a$/b\"\n"
    "    kafka: c\n"
    "  - regex: \"^dev/\\\\+\"\n"
    "    kafka: c\n"
    "  - mqtt: \"#\"\n"
    "    kafka: all\n"
    "  - regex: \"^dev/\"\n"
    "    kafka: d\n"
    "  - regex: \"x$\"\n"
    "    kafka: d\n"
    "  - mqtt: \"$SYS/x\"\n"
    "    kafka: sys\n"
    "unmapped: drop\n"
    "auth:\n"
    "  acl_deny: drop\n"
    "headers: false\n"
)


def lint_lines(cfg):
    return [
        f"{cfg}:4:25: warning: kafka.properties.enable.idempotence: False: a retried produce "
        "request can write a record twice or out of order",
        f"{cfg}:5:28: warning: kafka.properties.request.required.acks: 0: a record counts as "
        "delivered (and its QoS 1/2 message is acknowledged) before every in-sync replica has "
        "it; a leader failure can lose it (acks: all keeps it)",
        f"{cfg}:9:11: warning: topics[1].mqtt: \"a/+/b\" never applies: topics[0] \"a/#\" "
        "(line 7) comes first and matches every topic it matches",
        f"{cfg}:11:12: warning: topics[2].regex: \"^a$/b\" can never match: '$' (the end of "
        "the topic) is followed by more to match",
        f"{cfg}:13:12: warning: topics[3].regex: \"^dev/\\+\" can never match: it requires a "
        "'+', which a PUBLISH topic cannot contain",
        f"{cfg}:17:12: warning: topics[5].regex: \"^dev/\" never applies: topics[4] \"#\" "
        "(line 15) comes first and matches every topic it matches",
        f"{cfg}:19:12: warning: topics[6].regex: \"x$\" applies only to topics beginning with "
        "'$': topics[4] \"#\" (line 15) comes first and matches every other topic",
        f"{cfg}:19:12: warning: topics[6].regex: \"x$\" is not anchored with '^': it is tried "
        "from every position of the topic, in time up to quadratic in the topic's length on "
        "the event loop (topics over mqtt.max_regex_topic_length skip regex rules)",
        f"{cfg}:23:11: warning: unmapped: drop: QoS 1 and 2 messages to topics no rule maps are "
        "acknowledged and thrown away",
        f"{cfg}:25:13: warning: auth.acl_deny: drop: QoS 1 and 2 messages the ACL refuses are "
        "acknowledged and thrown away",
    ]


def test_check_lint_warnings_pass(tmp_path):
    """Warnings alone: every one, sorted by line, and the check passes
    (headers: false and "$SYS/x" after "#" are fine)."""
    cfg = tmp_path / "lint.yaml"
    cfg.write_text(LINT_YAML)
    r = run("--check", "-c", str(cfg))
    assert (r.returncode, r.stdout) == (0, "configuration OK\n")
    assert r.stderr == "".join(l + "\n" for l in lint_lines(cfg))


def test_check_lint_warnings_sorted_with_errors(tmp_path):
    """With loader errors (a partial configuration) and with a runtime error
    (a missing password file), in --check and at the start: one list by line."""
    cfg = tmp_path / "lintbad.yaml"
    cfg.write_text(LINT_YAML.replace("  - mqtt: \"$SYS/x\"\n", "  - mqtt: \"$SYS/#/x\"\n")
                   .replace("  acl_deny: drop\n", "  acl_deny: drop\n  password_file: nopw\n"))
    lines = lint_lines(cfg)
    loader = (f"{cfg}:21:11: topics[7].mqtt: invalid topic filter \"$SYS/#/x\": '#' must be "
              "alone in the last level")
    pw = f"{cfg}:25:3: auth: {tmp_path / 'nopw'}: cannot open: No such file or directory"
    expect = "".join(l + "\n" for l in lines[:8] + [loader, lines[8], pw, lines[9]])
    for args in (["--check", "-c", str(cfg)], ["-c", str(cfg)]):
        r = run(*args)
        assert (r.returncode, r.stdout, r.stderr) == (1, "", expect), args
    cfg.write_text(LINT_YAML.replace("  acl_deny: drop\n",
                                     "  acl_deny: drop\n  password_file: nopw\n"))
    expect = "".join(l + "\n" for l in lines[:9] + [pw, lines[9]])
    for args in (["--check", "-c", str(cfg)], ["-c", str(cfg)]):
        r = run(*args)
        assert (r.returncode, r.stdout, r.stderr) == (1, "", expect), args


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


@pytest.mark.parametrize("form", [["-c", "{}"], ["--config", "{}"], ["-c={}"], ["--config={}"]])
def test_config_option_forms(form):
    shipped = os.path.join(SOURCE, "config", "mqtt2kafka.yaml")
    r = run("--check", *[f.format(shipped) for f in form])
    assert (r.returncode, r.stdout, r.stderr) == (0, "configuration OK\n", "")


@pytest.mark.parametrize("arg,name", [("--config", "--config"), ("-c=", "-c"),
                                      ("--config=", "--config")])
def test_config_option_without_a_file(arg, name):
    r = run(arg)
    assert r.returncode == 2
    assert r.stderr.startswith(f"mqtt2kafka: {name} needs a file name\nusage: mqtt2kafka ")


def test_config_option_prefix_is_not_the_option():
    r = run("--configx")
    assert r.returncode == 2
    assert r.stderr.startswith("mqtt2kafka: unknown argument '--configx'\n")


def test_topic_map_bench_help_prints_usage():
    bench = os.path.join(BUILD, "bench", "topic_map_bench")
    # Without --help handling the benchmark runs for seconds: the timeout fails it.
    r = subprocess.run([bench, "--help"], capture_output=True, text=True, timeout=5)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.startswith("usage: topic_map_bench [--smoke] [-h|--help]\n")
    r = subprocess.run([bench, "--bogus"], capture_output=True, text=True, timeout=5)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("topic_map_bench: unknown argument '--bogus'\nusage: ")


def test_make_run_installs_the_demo_clients():
    """`make run` installs what the README demo runs (mosquitto_pub, kcat)."""
    r = subprocess.run(["make", "-n", "run"], cwd=SOURCE, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert "scripts/install-deps.sh run\n" in r.stdout, r.stdout
    # install-deps.sh's own listing: what `run` wants, without installing.
    r = subprocess.run(["sh", "-c", '. /dev/stdin; echo "$run_pkgs"'],
                       input=open(os.path.join(SOURCE, "scripts", "install-deps.sh")).read()
                       .split("case ")[0], capture_output=True, text=True, timeout=10)
    assert r.stdout.split() == ["mosquitto-clients", "kcat"], r


def test_relative_paths_are_taken_from_the_config_files_directory(tmp_path):
    """auth.password_file: passwd in /x/conf/m.yaml names /x/conf/passwd,
    whatever the working directory (the check runs from elsewhere)."""
    conf = tmp_path / "conf"
    conf.mkdir()
    r = subprocess.run([BIN, "passwd", str(conf / "passwd"), "alice"], input="s3cret-Pw\n",
                       text=True, capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    (conf / "acl").write_text("user alice\ntopic write sensors/#\n")
    cfg = _auth_config(conf, None, ("passwd", "acl"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = run("--check", "-c", str(cfg), cwd=elsewhere)
    assert (r.returncode, r.stdout, r.stderr) == (0, "configuration OK\n", "")
    # The configuration named relatively: still beside it.
    r = run("--check", "-c", "conf/files.yaml", cwd=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (0, "configuration OK\n", "")
    # A missing one is named as the daemon looked for it.
    (conf / "passwd").unlink()
    r = run("--check", "-c", str(cfg), cwd=elsewhere)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == (f"{cfg}:9:3: auth: {conf / 'passwd'}: cannot open: "
                        "No such file or directory\n")


ALL_ERRORS_YAML = (
    "listeners:\n"
    "  - listen: \"127.0.0.1:8883\"\n"
    "    tls:\n"
    "      cert: none.pem\n"
    "      key: none.key\n"
    "      use_identity_as_username: true\n"
    "kafka:\n"
    "  bootstrap_servers: embedded\n"
    "  properties:\n"
    "    linger.ms: {linger}\n"
    "    bootstrap.servers: x:9092\n"
    "    acks: 1\n"
    "topics:\n"
    "  - mqtt: \"a/#/b\"\n"
    "    kafka: x\n"
    "  - mqtt: \"c/#\"\n"
    "    kafka: c\n"
    "auth:\n"
    "  password_file: nopw\n"
    "mqtt:\n"
    "  max_inflight: 0\n")


@pytest.mark.parametrize("linger", ["soon", "5"])
def test_every_error_of_one_run_sorted_by_line(tmp_path, linger):
    """Loader errors (a TLS identity setting, bootstrap.servers under
    properties, a topic filter, a number) do not hide the files and Kafka
    properties the rest names; the producer is checked when librdkafka took
    every property; all of it sorted by line. The start prints the same."""
    cfg = tmp_path / "all.yaml"
    cfg.write_text(ALL_ERRORS_YAML.replace("{linger}", linger))
    expect = [
        f"{cfg}:4:7: listeners[0].tls: {tmp_path / 'none.pem'}: No such file or directory",
        f"{cfg}:6:33: listeners[0].tls.use_identity_as_username: needs require_client_cert: true",
        f"{cfg}:10:16: kafka.properties.linger.ms: Invalid value for configuration property "
        "\"queue.buffering.max.ms\"" if linger == "soon" else None,
        f"{cfg}:11:24: kafka.properties.bootstrap.servers: set kafka.bootstrap_servers instead",
        None if linger == "soon" else
        f"{cfg}:12:11: kafka.properties.acks: kafka producer: `acks` must be set to `all` when "
        "`enable.idempotence` is true",
        f"{cfg}:14:11: topics[0].mqtt: invalid topic filter \"a/#/b\": '#' must be alone in the "
        "last level",
        f"{cfg}:19:3: auth: {tmp_path / 'nopw'}: cannot open: No such file or directory",
        f"{cfg}:21:17: mqtt.max_inflight: expected an integer from 1 to 65535, got \"0\"",
    ]
    expect = "".join(l + "\n" for l in expect if l)
    for args in (["--check", "-c", str(cfg)], ["-c", str(cfg)]):
        r = run(*args)
        assert (r.returncode, r.stdout, r.stderr) == (1, "", expect), args


def test_runtime_errors_sorted_by_line(tmp_path):
    """A configuration the loader takes: librdkafka's property error (line 8)
    after the TLS file (line 4), though the properties are checked first."""
    cfg = tmp_path / "rt.yaml"
    cfg.write_text("listeners:\n"
                   "  - listen: \"127.0.0.1:8883\"\n"
                   "    tls:\n"
                   "      cert: none.pem\n"
                   "      key: none.key\n"
                   "kafka:\n"
                   "  bootstrap_servers: embedded\n"
                   "  properties: {linger.ms: soon}\n"
                   "topics:\n"
                   "  - {mqtt: \"#\", kafka: x}\n")
    r = run("--check", "-c", str(cfg))
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == (
        f"{cfg}:4:7: listeners[0].tls: {tmp_path / 'none.pem'}: No such file or directory\n"
        f"{cfg}:8:27: kafka.properties.linger.ms: Invalid value for configuration property "
        "\"queue.buffering.max.ms\"\n")


def test_man_page_names_every_section_and_setting_group():
    """The man page's CONFIGURATION names every top-level section of the
    settings table (auth and tls were missing once) and the Kafka headers."""
    r = run("--settings-markdown")
    assert r.returncode == 0
    names = set()
    for line in r.stdout.splitlines():
        m = re.match(r"\| `([a-z_]+)(?:\[\])?[.`]", line)
        if m:
            names.add(m.group(1))
    with open(os.path.join(SOURCE, "man", "mqtt2kafka.8")) as f:
        man = f.read()
    conf = man[man.index(".SH CONFIGURATION"):man.index(".SH SIGNALS")]
    words = set(re.findall(r"[a-z_.]+", conf))
    assert {"listeners", "kafka", "topics", "unmapped", "headers", "mqtt", "auth", "metrics",
            "log"} <= names, names
    assert names - {"shutdown_timeout_s"} <= words, names - words
    assert {"tls", "password_file", "acl_file", "mqtt.topic", "mqtt.client_id", "mqtt.qos",
            "mqtt.retain", "mqtt.username"} <= words


def test_embedded_port_needs_the_embedded_cluster(tmp_path):
    cfg = tmp_path / "ep.yaml"
    cfg.write_text("kafka:\n  bootstrap_servers: k1:9092\n  embedded_port: 19092\n"
                   "topics:\n  - {mqtt: \"#\", kafka: x}\n")
    r = run("--check", "-c", str(cfg))
    assert (r.returncode, r.stdout, r.stderr) == (
        1, "", f"{cfg}:3:18: kafka.embedded_port: only with bootstrap_servers: embedded\n")


def test_loader_errors_sorted_too(tmp_path):
    """A missing required key is found after the file is read (at 1:1): it
    still comes first."""
    cfg = tmp_path / "p1.yaml"
    cfg.write_text("topics:\n  - {mqtt: \"#\", kafka: x}\nmqtt: {max_inflight: 0}\n")
    r = run("--check", "-c", str(cfg))
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == (
        f"{cfg}:1:1: kafka.bootstrap_servers: missing (\"host:port,...\", or \"embedded\" for the "
        "in-process test cluster)\n"
        f"{cfg}:3:22: mqtt.max_inflight: expected an integer from 1 to 65535, got \"0\"\n")
