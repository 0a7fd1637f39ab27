"""The spool (`spool:`, mode `always`): acked once fsync'ed, Kafka fed from
the spool in order, restarts replay what Kafka did not confirm, max_bytes
backpressure, and the refusal of an unusable directory."""
import subprocess

import yaml

import m2k


def spool_cfg(tmp_path, **kw):
    return {"spool": {"dir": str(tmp_path / "spool"), "mode": "always", **kw}}


def run(*args):
    return subprocess.run([m2k.DAEMON, *args], capture_output=True, text=True, timeout=30)


def test_unusable_dir_is_refused_by_check_and_at_start(tmp_path):
    (tmp_path / "file").write_text("not a directory\n")
    cases = [
        (tmp_path / "file", "cannot open the spool directory: Not a directory"),
        (tmp_path / "missing" / "spool", "cannot create the spool directory: No such file or "
                                         "directory"),
    ]
    for where, why in cases:
        cfg = m2k.merge(m2k.base_config(0, "embedded"),
                        {"spool": {"dir": str(where), "mode": "always"}})
        path = tmp_path / "m.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        # The spool section is the last key: its mapping starts at "dir".
        n = path.read_text().splitlines().index("spool:") + 2
        want = f"{path}:{n}:3: spool.dir: {where}: {why}\n"
        r = run("--check", "-c", str(path))
        assert (r.returncode, r.stdout + r.stderr) == (1, want)
        r = run("-c", str(path))
        assert r.returncode == 1
        assert r.stderr == want, r.stderr
    assert not (tmp_path / "missing").exists()


def test_outage_mode_is_refused_as_not_implemented(tmp_path):
    cfg = m2k.merge(m2k.base_config(0, "embedded"), {"spool": {"dir": str(tmp_path / "s")}})
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    n = path.read_text().splitlines().index("spool:") + 2
    r = run("--check", "-c", str(path))
    assert (r.returncode, r.stdout + r.stderr) == (
        1, f"{path}:{n}:3: spool.mode: outage (the default) is not implemented yet; write "
           "`mode: always`\n")
    assert not (tmp_path / "s").exists()
