"""Every command block of the README, run against the daemon as `make run`
starts it, with the output the README shows checked.

`make run` itself is not run: it would install packages and bind the fixed
ports 1883 and 19092, which parallel tests (and other people on a shared
machine) cannot share. The test starts the same binary with the same
configuration file (config/mqtt2kafka.yaml, copied with two changes: the
listener on a free port instead of 1883, kafka.embedded_port on a free port
instead of 19092), and the commands get the same substitutions (`-p PORT`
for the MQTT clients (mosquitto_pub, mosquitto_sub), the embedded port for kcat, the build directory).
`make run` and `make test` are checked as Makefile targets (`make -n`).

Output is compared exactly, except where the README shows values that
change from run to run: in log lines and in the sensor simulation's output
every number is free (timestamps, ports, rates, readings), `...` stands for
any further lines, and the simulation's kcat lines may come in another
order. Every block of the README must
be one this test knows, so a new block fails here until it is handled."""
import os
import re
import signal
import subprocess

import yaml

import m2k

README = os.path.join(m2k.SOURCE_DIR, "README.md")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\S+Z (error|warn |info |debug) ")


def readme_blocks():
    """The README's indented blocks, as lists of lines without the indent."""
    blocks, cur = [], []
    with open(README) as f:
        for line in f.read().split("\n"):
            if line.startswith("    ") or (cur and line == ""):
                cur.append(line[4:])
            elif cur:
                blocks.append(cur)
                cur = []
    if cur:
        blocks.append(cur)
    for b in blocks:
        while b and b[-1] == "":
            b.pop()
    return blocks


def free_numbers(text):
    """A regex for `text` with every run of digits free."""
    return "".join(r"\d+" if part.isdigit() else re.escape(part)
                   for part in re.split(r"(\d+)", text))


def matches_log(expected, log):
    return re.search("^" + free_numbers(expected) + "$", log, re.M)


def commands(block):
    """[(command, [expected output lines])] of a block of "$ " lines."""
    out = []
    for line in block:
        if line.startswith("$ "):
            out.append((line[2:], []))
        else:
            out[-1][1].append(line)
    return out


def check_output(cmd, got, expected, free):
    lines = got.splitlines()
    if not free:
        assert lines == expected, f"{cmd}:\n{got}"
        return
    rest = "..." in expected
    expected = [e for e in expected if e != "..."]
    if rest:
        lines = lines[:len(expected)]
    assert len(lines) == len(expected), f"{cmd}:\n{got}"
    unused = [re.compile("^" + free_numbers(e) + "$") for e in expected]
    for line in lines:
        hit = next((rx for rx in unused if rx.match(line)), None)
        assert hit is not None, f"{cmd}: {line!r} is not one of {expected}:\n{got}"
        unused.remove(hit)


class MakeRun:
    """build/mqtt2kafka -c <config/mqtt2kafka.yaml on free ports>."""

    def __init__(self, tmp_path):
        with open(os.path.join(m2k.SOURCE_DIR, "config", "mqtt2kafka.yaml")) as f:
            cfg = yaml.safe_load(f)
        assert cfg["listeners"] == [{"listen": "127.0.0.1:1883"}], cfg["listeners"]
        assert cfg["kafka"]["embedded_port"] == 19092, cfg["kafka"]
        self.eport = m2k.free_port()
        cfg["listeners"] = [{"listen": "127.0.0.1:0"}]
        cfg["kafka"]["embedded_port"] = self.eport
        self.config = tmp_path / "mqtt2kafka.yaml"
        self.config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.log_path = tmp_path / "make-run.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([m2k.DAEMON, "-c", str(self.config)], stdout=self._log,
                                     stderr=subprocess.STDOUT)
        m = m2k.wait_until(lambda: re.search(r" listening on 127\.0\.0\.1:(\d+)$", self.log(),
                                             re.M), 15, lambda: f"the listener:\n{self.log()}")
        self.port = int(m.group(1))

    def log(self):
        return m2k.Daemon.log(self)  # the same fields (log_path, _log)

    def substitute(self, cmd):
        cmd = cmd.replace("127.0.0.1:19092", f"127.0.0.1:{self.eport}")
        for client in ("mosquitto_pub", "mosquitto_sub"):
            cmd = cmd.replace(f"{client} -h 127.0.0.1", f"{client} -h 127.0.0.1 -p {self.port}")
        if cmd.startswith("build/"):
            cmd = m2k.BUILD_DIR + cmd[len("build"):]
        if "mqtt-bench" in cmd:
            cmd += f" -p {self.port}"
        return cmd

    def stop(self):
        return m2k.Daemon.stop(self, signal.SIGINT)  # Ctrl-C, as the README says


def test_readme_command_blocks(tmp_path):
    blocks = readme_blocks()
    kinds = []
    for b in blocks:
        if b[0].startswith("make run"):
            kinds.append("make")
        elif b[0] == "$ make run":
            kinds.append("daemon")
        elif b[0].startswith("$ "):
            kinds.append("commands")
        elif all(LOG_LINE.match(line) for line in b):
            kinds.append("log")
        else:
            raise AssertionError(f"a README block this test does not know:\n" + "\n".join(b))
    assert kinds.count("daemon") == 1 and kinds.count("make") == 1, kinds

    # make run / make test: the Makefile's targets, make run as started below.
    make = blocks[kinds.index("make")]
    assert [l.split()[:2] for l in make] == [["make", "run"], ["make", "test"]]
    r = subprocess.run(["make", "-n", "run", "test"], cwd=m2k.SOURCE_DIR, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "mqtt2kafka -c config/mqtt2kafka.yaml\n" in r.stdout, r.stdout

    d = MakeRun(tmp_path)
    try:
        for kind, b in zip(kinds, blocks):
            if kind != "commands":
                continue
            free = any(line == "..." for line in b) or "mqtt-bench" in b[0]
            for cmd, expected in commands(b):
                run = d.substitute(cmd)
                r = subprocess.run(["bash", "-c", run], cwd=m2k.SOURCE_DIR, capture_output=True,
                                   text=True, timeout=60)
                assert r.returncode == 0, f"{run}: exit {r.returncode}\n{r.stderr}"
                check_output(run, r.stdout, expected, free)
        # Terminal 1's lines (after its "...": the build's output).
        daemon = blocks[kinds.index("daemon")]
        assert daemon[1] == "..."
        for line in daemon[2:]:
            if line == "...":  # lines the README leaves out
                continue
            assert matches_log(line, d.log()), f"README log line not in the log:\n{line}\n" \
                                               f"the log:\n{d.log()}"
    finally:
        rc = d.stop()
    assert rc == 0, d.log()
    # The shutdown lines (Ctrl-C).
    for kind, b in zip(kinds, blocks):
        if kind == "log":
            for line in b:
                assert matches_log(line, d.log()), f"README log line not in the log:\n{line}\n" \
                                                   f"the log:\n{d.log()}"
