"""Installation and the Debian package: `cmake --install` into a DESTDIR
(never overwriting an existing configuration) and `cpack -G DEB` from the
already built M2K_BUILD_DIR into a temporary directory, inspected with
dpkg-deb: exact file list and modes, control fields, dependencies, conffiles
and maintainer scripts. Bounded: each command has a timeout."""
import gzip
import os
import re
import shutil
import subprocess

import pytest

BUILD = os.path.abspath(os.environ.get("M2K_BUILD_DIR", "build"))
SOURCE = os.path.abspath(os.environ.get("M2K_SOURCE_DIR", "."))
BIN = os.path.join(BUILD, "mqtt2kafka")

EXPECTED_FILES = {
    "./etc/mqtt2kafka/mqtt2kafka.yaml": "-rw-r--r--",
    "./lib/systemd/system/mqtt2kafka.service": "-rw-r--r--",
    "./usr/sbin/mqtt2kafka": "-rwxr-xr-x",
    "./usr/share/doc/mqtt2kafka/README.md": "-rw-r--r--",
    "./usr/share/doc/mqtt2kafka/configuration.md": "-rw-r--r--",
    "./usr/share/doc/mqtt2kafka/copyright": "-rw-r--r--",
    "./usr/share/doc/mqtt2kafka/deploy/mqtt2kafka-dashboard.json": "-rw-r--r--",
    "./usr/share/doc/mqtt2kafka/deploy/mqtt2kafka.rules.test.yml": "-rw-r--r--",
    "./usr/share/doc/mqtt2kafka/deploy/mqtt2kafka.rules.yml": "-rw-r--r--",
    "./usr/share/doc/mqtt2kafka/examples/acl-per-tenant.yaml": "-rw-r--r--",
    "./usr/share/doc/mqtt2kafka/examples/devices.acl": "-rw-r--r--",
    "./usr/share/doc/mqtt2kafka/examples/managed-kafka-scram.yaml": "-rw-r--r--",
    "./usr/share/doc/mqtt2kafka/examples/mqtt2kafka.yaml": "-rw-r--r--",
    "./usr/share/doc/mqtt2kafka/examples/mtls-devices.yaml": "-rw-r--r--",
    "./usr/share/doc/mqtt2kafka/examples/production.example.yaml": "-rw-r--r--",
    "./usr/share/doc/mqtt2kafka/examples/tenants.acl": "-rw-r--r--",
    "./usr/share/doc/mqtt2kafka/install.md": "-rw-r--r--",
    "./usr/share/doc/mqtt2kafka/migrating-from-confluent.md": "-rw-r--r--",
    "./usr/share/doc/mqtt2kafka/operations.md": "-rw-r--r--",
    "./usr/share/doc/mqtt2kafka/semantics.md": "-rw-r--r--",
    "./usr/share/man/man5/mqtt2kafka.yaml.5.gz": "-rw-r--r--",
    "./usr/share/man/man8/mqtt2kafka.8.gz": "-rw-r--r--",
}

# Every runtime library the daemon may link, by Debian 12 package.
ALLOWED_DEPENDS = {
    "adduser", "libc6", "libuv1", "librdkafka1", "libyaml-0-2", "libcjson1", "libssl3",
    "libhttp-parser2.9", "libwslay1",
}


def run(cmd, **kw):
    kw.setdefault("timeout", 300)
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def cache_value(name):
    with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split("=", 1)[1].strip()
    return None


def version():
    r = run([BIN, "-V"], timeout=30)
    assert r.returncode == 0
    m = re.fullmatch(r"mqtt2kafka (\S+)\n", r.stdout)
    assert m, r.stdout
    return m.group(1)


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    # cmake and dpkg-dev come with scripts/install-deps.sh: fail, never skip.
    for tool in ("cpack", "dpkg-deb", "dpkg-shlibdeps"):
        assert shutil.which(tool), f"{tool} not installed"
    assert os.path.exists(os.path.join(BUILD, "CPackConfig.cmake")) and os.path.exists(BIN), \
        "build directory not configured/built"
    out = tmp_path_factory.mktemp("pkg")
    r = run(["cpack", "--config", os.path.join(BUILD, "CPackConfig.cmake"), "-G", "DEB",
             "-B", str(out)], cwd=str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    path = out / f"mqtt2kafka_{version()}_{arch}.deb"
    assert path.exists(), os.listdir(out)
    root = out / "root"
    ctl = out / "control"
    assert run(["dpkg-deb", "-x", str(path), str(root)]).returncode == 0
    assert run(["dpkg-deb", "-e", str(path), str(ctl)]).returncode == 0
    return {"path": str(path), "root": root, "control": ctl, "arch": arch}


def field(deb, name):
    r = run(["dpkg-deb", "-f", deb["path"], name])
    assert r.returncode == 0
    return r.stdout.strip()


def test_files_and_modes(deb):
    r = run(["dpkg-deb", "-c", deb["path"]])
    assert r.returncode == 0
    files = {}
    for line in r.stdout.splitlines():
        mode, owner, _size, _date, _time, name = line.split(None, 5)
        assert owner == "root/root", line
        if not mode.startswith("d"):
            files[name] = mode
        else:
            assert mode == "drwxr-xr-x", line
    assert files == EXPECTED_FILES


def test_control_fields(deb):
    assert field(deb, "Package") == "mqtt2kafka"
    assert field(deb, "Version") == version()
    assert field(deb, "Architecture") == deb["arch"]
    assert field(deb, "Section") == "net"
    assert field(deb, "Priority") == "optional"
    assert field(deb, "Description").splitlines()[0] == "MQTT 3.1.1 to Kafka proxy daemon"


def needed_packages(binary):
    """The Debian packages owning the binary's DT_NEEDED libraries."""
    r = run(["objdump", "-p", binary])
    assert r.returncode == 0
    libs = re.findall(r"^\s+NEEDED\s+(\S+)$", r.stdout, re.M)
    assert libs
    multiarch = run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"]).stdout.strip()
    assert multiarch
    pkgs = set()
    for lib in libs:
        r = run(["dpkg", "-S", f"*/{multiarch}/{lib}"])
        assert r.returncode == 0, lib
        owners = {line.split(":")[0] for line in r.stdout.splitlines() if not
                  line.startswith("diversion")}
        # -dev packages own the unversioned .so symlink only; NEEDED names the soname
        owners = {o for o in owners if not o.endswith("-dev")}
        assert len(owners) == 1, (lib, owners)
        pkgs |= owners
    return pkgs


def test_depends_match_linked_libraries(deb):
    depends = [d.strip() for d in field(deb, "Depends").split(",")]
    names = []
    for d in depends:
        m = re.fullmatch(r"([a-z0-9][a-z0-9.+-]+)(?: \(>= [0-9][^)]*\))?", d)
        assert m, d
        names.append(m.group(1))
    assert len(names) == len(set(names)), depends
    binary = str(deb["root"] / "usr/sbin/mqtt2kafka")
    assert set(names) == {"adduser"} | needed_packages(binary)
    allowed = set(ALLOWED_DEPENDS)
    if cache_value("ENABLE_SANITIZERS") == "ON":
        allowed |= {n for n in names if n.startswith(("libasan", "libubsan", "libgcc-s"))}
    assert set(names) <= allowed
    # what the binary links today in every build: libc, librdkafka, libyaml
    assert {"libc6", "librdkafka1", "libyaml-0-2"} <= set(names)


def test_conffiles_and_maintainer_scripts(deb):
    ctl = deb["control"]
    assert (ctl / "conffiles").read_text() == "/etc/mqtt2kafka/mqtt2kafka.yaml\n"
    for script in ("postinst", "prerm", "postrm"):
        p = ctl / script
        assert p.read_text() == open(os.path.join(SOURCE, "packaging/deb", script)).read()
        assert os.stat(p).st_mode & 0o777 == 0o755
    assert not (ctl / "preinst").exists()
    postinst = (ctl / "postinst").read_text()
    assert ("adduser --system --group --quiet --no-create-home --home /nonexistent \\\n"
            "            --gecos \"mqtt2kafka daemon\" mqtt2kafka") in postinst
    assert "chmod 0640 /etc/mqtt2kafka/mqtt2kafka.yaml" in postinst
    assert "systemctl enable" not in postinst.replace("`systemctl enable --now", "")
    postrm = (ctl / "postrm").read_text()
    assert "purge)" in postrm and "deluser --system" in postrm
    for script in ("postinst", "prerm", "postrm"):
        assert run(["sh", "-n", str(ctl / script)]).returncode == 0


def test_payload_contents(deb):
    root = deb["root"]
    src = lambda p: open(os.path.join(SOURCE, p), "rb").read()  # noqa: E731
    assert (root / "etc/mqtt2kafka/mqtt2kafka.yaml").read_bytes() == src("config/mqtt2kafka.yaml")
    # prefix /usr: the unit is installed as written
    assert (root / "lib/systemd/system/mqtt2kafka.service").read_bytes() == \
        src("systemd/mqtt2kafka.service")
    with gzip.open(root / "usr/share/man/man8/mqtt2kafka.8.gz") as f:
        assert f.read() == src("man/mqtt2kafka.8")
    with gzip.open(root / "usr/share/man/man5/mqtt2kafka.yaml.5.gz") as f:
        assert f.read() == src("man/mqtt2kafka.yaml.5")
    r = run([str(root / "usr/sbin/mqtt2kafka"), "-V"], timeout=30)
    assert (r.returncode, r.stdout) == (0, f"mqtt2kafka {version()}\n")
    r = run([str(root / "usr/sbin/mqtt2kafka"), "--check", "-c",
             str(root / "etc/mqtt2kafka/mqtt2kafka.yaml")], timeout=30)
    assert (r.returncode, r.stdout) == (0, "configuration OK\n")


def test_unit_verifies(deb, tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    unit = (deb["root"] / "lib/systemd/system/mqtt2kafka.service").read_text()
    unit = unit.replace("/usr/sbin/mqtt2kafka", str(deb["root"] / "usr/sbin/mqtt2kafka"))
    p = tmp_path / "mqtt2kafka.service"
    p.write_text(unit)
    r = run(["systemd-analyze", "verify", "--man=no", str(p)], timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def install(destdir):
    r = run(["cmake", "--install", BUILD], env={**os.environ, "DESTDIR": str(destdir)})
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_cmake_install_keeps_existing_config(tmp_path):
    assert os.path.exists(BIN), "not built"
    prefix = cache_value("CMAKE_INSTALL_PREFIX")
    etc = "/etc/mqtt2kafka" if prefix == "/usr" else prefix + "/etc/mqtt2kafka"
    units = "/lib/systemd/system" if prefix == "/usr" else prefix + "/lib/systemd/system"
    out = install(tmp_path)
    conf = tmp_path / etc.lstrip("/") / "mqtt2kafka.yaml"
    assert conf.read_bytes() == open(os.path.join(SOURCE, "config/mqtt2kafka.yaml"), "rb").read()
    assert "Keeping existing" not in out
    unit = (tmp_path / units.lstrip("/") / "mqtt2kafka.service").read_text()
    assert f"\nExecStart={prefix}/sbin/mqtt2kafka -c {etc}/mqtt2kafka.yaml\n" in unit
    assert os.access(tmp_path / prefix.lstrip("/") / "sbin/mqtt2kafka", os.X_OK)
    assert (tmp_path / prefix.lstrip("/") / "share/man/man8/mqtt2kafka.8.gz").exists()

    conf.write_text("# edited by the administrator\n")
    out = install(tmp_path)
    assert f"-- Keeping existing: {tmp_path}{etc}/mqtt2kafka.yaml\n" in out
    assert conf.read_text() == "# edited by the administrator\n"


def test_default_config_path_follows_the_install_prefix(tmp_path):
    """Without -c the binary reads the configuration where `cmake --install`
    put it for this build's prefix (the etc rule of install-extra.cmake)."""
    prefix = cache_value("CMAKE_INSTALL_PREFIX")
    etc = "/etc/mqtt2kafka" if prefix == "/usr" else prefix + "/etc/mqtt2kafka"
    r = run([BIN, "-h"], timeout=30)
    assert r.returncode == 0
    assert f"                configuration file, default {etc}/mqtt2kafka.yaml\n" in r.stdout
    if not os.path.exists(f"{etc}/mqtt2kafka.yaml"):
        r = run([BIN, "--check"], cwd=str(tmp_path), timeout=30)
        assert (r.returncode, r.stdout) == (1, "")
        assert r.stderr == f"{etc}/mqtt2kafka.yaml: cannot open: No such file or directory\n"
