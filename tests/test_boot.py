"""The unit booted under a real systemd, and the image run by a real Docker (long mode).

Both start from a Debian bookworm tree made here with debootstrap (cached under
$SPAMD_TEST_CACHE, default /var/tmp/spamd-test) and spamd's wheel with its
dependencies, and run spamd against the test Dovecot on 127.0.0.1 (they share
the host's network).

* The unit: the tree boots with Debian's systemd as PID 1 in `systemd-nspawn`;
  spamd is installed as README's "Installing as a service" says, and the test
  checks READY, STATUS, the watchdog, the dynamic user, journald priorities,
  reload, stop and that a configuration error is not restarted.
* The image: the tree is imported as the base image the Dockerfile names,
  the image is built and run, and its HEALTHCHECK turns healthy.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from spamd.demo import sandbox
from tests.conftest import ROOT, SPAM, Box, wait_until

# Root's cache of a Debian tree, kept between runs (debootstrap takes a minute or two).
CACHE = Path(os.environ.get("SPAMD_TEST_CACHE", "/var/tmp/spamd-test"))  # noqa: S108
MIRROR = "http://deb.debian.org/debian"
# procps: /bin/kill, which the units' ExecReload= uses (in every Debian but minbase).
PACKAGES = "systemd,systemd-sysv,dbus,procps,python3,python3-venv,python-is-python3,ca-certificates"
MODEL_FILES = ("default.npz", "default.json", "default.base.npz")


@pytest.fixture(scope="session", autouse=True)
def long_mode_and_root(request: pytest.FixtureRequest) -> None:
    """Skips before any other session fixture here builds a tree or an image."""
    if not request.config.getoption("--long"):
        pytest.skip("long mode only (--long): debootstrap, a booted systemd, a Docker engine")
    if os.geteuid() != 0:
        pytest.skip("needs root (debootstrap, systemd-nspawn, dockerd)")


def command(*argv: str, timeout: float = 600, **options: object) -> str:
    """Run a command; its stdout, or an AssertionError with its output."""
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, **options
    )  # type: ignore[call-overload]
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return str(done.stdout)


@pytest.fixture(scope="session")
def bookworm() -> Path:
    """A pristine Debian bookworm tree (minbase + systemd + python3), made once."""
    for tool in ("debootstrap", "systemd-nspawn"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} missing (scripts/setup)")
    tree = CACHE / "bookworm"
    made = tree / ".made-with"
    if not made.exists() or made.read_text() != PACKAGES:
        shutil.rmtree(tree, ignore_errors=True)
        CACHE.mkdir(parents=True, exist_ok=True)
        command(
            "debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm", str(tree),
            MIRROR, timeout=1200,
        )  # fmt: skip
        made.write_text(PACKAGES)
    return tree


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """spamd's wheel and its dependencies' wheels, and what building it needs (setuptools)."""
    out = tmp_path_factory.mktemp("wheelhouse")
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    command(sys.executable, "-m", "pip", "wheel", "-q", "-w", str(out), str(ROOT), *build)
    return out


# -- the unit, booted ------------------------------------------------------------------


class Machine:
    """A tree booted with systemd as PID 1 in systemd-nspawn, on the host's network."""

    def __init__(self, root: Path, log: Path, http_port: int) -> None:
        self.root = root
        self.http_port = http_port  # spamd's listener, on the shared network
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "-q", "-D", str(root), "--boot", "--register=no", "--keep-unit",
             "--console=pipe"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.leader = 0  # PID 1 of the container, as the host sees it

    def boot(self) -> None:
        wait_until(self._booted, timeout=90, what="systemd to boot in the container")

    def _booted(self) -> bool:
        assert self.proc.poll() is None, "systemd-nspawn ended"
        if not self.leader:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
            # nspawn's first child forks the container's init and ends.
            for pid in children.split():
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                        self.leader = int(pid)
            if not self.leader:
                return False
        state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
        return state in ("running", "degraded")

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", *argv], capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        assert not check or done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
        return done

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        out = self.run("systemctl", "show", unit, *(f"--property={p}" for p in properties))
        return dict(line.split("=", 1) for line in out.stdout.splitlines())

    def journal(self, unit: str, *options: str) -> list[str]:
        out = self.run("journalctl", "-u", unit, "-o", "cat", "--no-pager", *options)
        return out.stdout.splitlines()

    def events(self, unit: str, *options: str) -> list[str]:
        """spamd's own (JSON) lines' events; systemd's lines about the unit left out."""
        lines = self.journal(unit, *options)
        return [json.loads(line)["event"] for line in lines if line.startswith("{")]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # nspawn asks systemd to power off
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()


def install(tree: Path, wheelhouse: Path, box: Box, http_port: int) -> None:
    """What README's "Installing as a service" says, done in the tree."""
    command(
        "systemd-nspawn", "-q", "-D", str(tree), "--register=no", "--keep-unit",
        f"--bind-ro={wheelhouse}:/tmp/wheels", "/bin/sh", "-c",
        "python3 -m venv /opt/spamd && "
        "/opt/spamd/bin/pip install -q --no-index --find-links /tmp/wheels spamd",
    )  # fmt: skip
    models = tree / "usr/local/share/spamd/models"
    models.mkdir(parents=True)
    for name in MODEL_FILES:
        shutil.copy(ROOT / "models" / name, models)
    units = tree / "etc/systemd/system"
    shutil.copy(ROOT / "systemd/spamd.service", units)
    (units / "multi-user.target.wants").mkdir(exist_ok=True)
    (units / "multi-user.target.wants/spamd.service").symlink_to(
        "/etc/systemd/system/spamd.service"
    )
    (units / "spamd.service.d").mkdir()
    (units / "spamd.service.d/credentials.conf").write_text(
        "[Service]\nLoadCredential=mail.password:/etc/spamd/mail.password\n"
    )
    etc = tree / "etc/spamd"
    etc.mkdir(mode=0o755)
    (etc / "mail.password").write_text(box.password + "\n")
    (etc / "mail.password").chmod(0o600)
    (etc / "spamd.yaml").write_text(yaml.safe_dump(config(box, http_port)))
    (etc / "spamd.yaml").chmod(0o644)


def config(box: Box, http_port: int, **top: object) -> dict[str, object]:
    account = {**box.settings(), "password_file": "mail.password"}
    del account["password"]
    down = {**account, "name": "down", "port": sandbox.free_port(), "timeout": 3}
    return {
        "model": {"path": "/usr/local/share/spamd/models/default.joblib"},
        "accounts": [account, down],
        "http": {"listen": f"127.0.0.1:{http_port}"},
        **top,
    }


@pytest.fixture
def machine(bookworm: Path, wheelhouse: Path, mailbox: Box, tmp_path: Path) -> Iterator[Machine]:
    tree = tmp_path / "tree"
    command("cp", "-a", "--reflink=auto", str(bookworm), str(tree))
    http_port = sandbox.free_port()
    install(tree, wheelhouse, mailbox, http_port)
    booted = Machine(tree, tmp_path / "console.log", http_port)
    try:
        booted.boot()
        yield booted
    finally:
        booted.close()
        shutil.rmtree(tree)  # a few hundred MB


def test_the_unit_boots_notifies_reloads_stops_and_refuses_a_bad_configuration(
    machine: Machine, mailbox: Box
) -> None:
    wait_until(
        lambda: (
            machine.run("systemctl", "is-active", "spamd", check=False).stdout.strip()
            in ("active", "failed")
        ),
        timeout=120,
        what="spamd to start",
    )
    shown = machine.show(
        "spamd", "ActiveState", "StatusText", "MainPID", "WatchdogUSec", "NRestarts",
        "WatchdogTimestampMonotonic",
    )  # fmt: skip
    assert shown["ActiveState"] == "active", machine.journal("spamd")  # READY=1 arrived
    assert shown["StatusText"].startswith("1/2 accounts connected, "), shown
    assert shown["WatchdogUSec"] == "1min" and shown["NRestarts"] == "0"
    status = machine.run("cat", f"/proc/{shown['MainPID']}/status").stdout
    uid = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("Uid:"))
    assert 61184 <= uid <= 65519  # a DynamicUser= uid, reading the config and the credential
    pinged = shown["WatchdogTimestampMonotonic"]
    wait_until(
        lambda: (
            machine.show("spamd", "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"]
            not in ("0", pinged)
        ),
        what="another WATCHDOG=1",
    )

    mailbox.append(SPAM[0].read_bytes())  # the sandboxed service does its work
    wait_until(lambda: mailbox.count("Junk") == 1, what="the spam moved to Junk")

    def metrics() -> str:
        url = f"http://127.0.0.1:{machine.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())

    moved = f'spamd_moves_total{{account="{mailbox.user}"}} 1.0'
    wait_until(lambda: moved in metrics(), what="the move counted")
    text = metrics()
    assert f'spamd_connected{{account="{mailbox.user}"}} 1.0' in text
    assert 'spamd_connected{account="down"} 0.0' in text
    assert "process_resident_memory_bytes " in text

    warnings = machine.events("spamd", "--priority=warning")
    assert "connection_failed" in warnings and "ready" not in warnings
    assert "ready" in machine.events("spamd")
    assert not [line for line in machine.journal("spamd") if line.startswith("<")]

    machine.run("systemctl", "reload", "spamd")
    wait_until(lambda: machine.events("spamd").count("ready") == 2, what="ready after reload")
    assert "reloading" in machine.events("spamd")
    assert machine.show("spamd", "ActiveState")["ActiveState"] == "active"

    started = time.monotonic()
    machine.run("systemctl", "stop", "spamd")
    assert time.monotonic() - started < 15
    assert machine.show("spamd", "ActiveState", "Result") == {
        "ActiveState": "inactive",
        "Result": "success",
    }
    assert machine.events("spamd")[-1] == "stopped_all"

    bad = config(mailbox, 8025, stat_dir="typo")
    (machine.root / "etc/spamd/spamd.yaml").write_text(yaml.safe_dump(bad))
    assert machine.run("systemctl", "start", "spamd", check=False).returncode != 0
    # Failed for good: with a restart pending the unit would be "activating" (auto-restart).
    assert machine.show("spamd", "ActiveState", "Result", "ExecMainStatus", "NRestarts") == {
        "ActiveState": "failed",
        "Result": "exit-code",
        "ExecMainStatus": "78",
        "NRestarts": "0",
    }
    assert any("stat_dir: unknown key" in line for line in machine.journal("spamd")[-5:])


# -- the image, built and run ----------------------------------------------------------

BASE_IMAGE = "python:3.11-slim-bookworm"  # what the Dockerfile's FROM names
IMAGE = "spamd-test"


@pytest.fixture(scope="session")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment for `docker` commands: a Docker engine of our own, on a socket of ours."""
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        pytest.skip("dockerd missing (scripts/setup: docker.io)")
    root = CACHE / "docker"
    run = tmp_path_factory.mktemp("dockerd")
    env = {**os.environ, "DOCKER_HOST": f"unix://{run}/docker.sock", "DOCKER_BUILDKIT": "0"}
    with (run / "dockerd.log").open("w") as log:
        # Containers use the host's network (--network host): no bridge, no iptables.
        daemon = subprocess.Popen(
            ["dockerd", "--data-root", str(root), "--exec-root", str(run / "exec"),
             "--pidfile", str(run / "dockerd.pid"), "-H", env["DOCKER_HOST"],
             "--iptables=false", "--ip6tables=false", "--bridge=none"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            wait_until(
                lambda: (
                    subprocess.run(
                        ["docker", "info"], env=env, capture_output=True, check=False
                    ).returncode
                    == 0
                ),
                timeout=60,
                what="dockerd",
            )
            yield env
        finally:
            daemon.terminate()
            daemon.wait(30)


@contextlib.contextmanager
def served(directory: Path) -> Iterator[str]:
    """A directory over HTTP on 127.0.0.1 (pip's --find-links for the image's build)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()


@pytest.fixture(scope="session")
def image(docker: dict[str, str], bookworm: Path, wheelhouse: Path) -> str:
    """The Dockerfile built on the bookworm tree, imported under the name FROM gives."""
    if subprocess.run(
        ["docker", "image", "inspect", BASE_IMAGE], env=docker, capture_output=True, check=False
    ).returncode:
        with subprocess.Popen(
            ["tar", "-C", str(bookworm), "--exclude=./.made-with", "-c", "."],
            stdout=subprocess.PIPE,
        ) as tar:
            command("docker", "import", "-", BASE_IMAGE, stdin=tar.stdout, env=docker)
        assert tar.returncode == 0
    with served(wheelhouse) as url:
        command(
            "docker", "build", "-q", "--network", "host", "--build-arg", "PIP_NO_INDEX=1",
            "--build-arg", f"PIP_FIND_LINKS={url}", "-t", IMAGE, str(ROOT), env=docker,
            timeout=900,
        )  # fmt: skip
    return IMAGE


def test_the_image_runs_spamd_and_turns_healthy(
    image: str, docker: dict[str, str], mailbox: Box, tmp_path: Path
) -> None:
    port = sandbox.free_port()
    config = tmp_path / "spamd.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_dir": "/var/lib/spamd",
                "accounts": [mailbox.settings()],
                "http": {"listen": f"127.0.0.1:{port}"},
            }
        )
    )
    config.chmod(0o644)
    name = f"spamd-test-{port}"
    # The image's own HEALTHCHECK command, asked every second rather than every 30 s.
    command(
        "docker", "run", "-d", "--name", name, "--network", "host", "--health-interval", "1s",
        "-e", f"SPAMD_HEALTHZ=http://127.0.0.1:{port}/healthz",
        "-v", f"{config}:/etc/spamd/spamd.yaml:ro", image, env=docker,
    )  # fmt: skip
    try:

        def health() -> str:
            out = command("docker", "inspect", "-f", "{{json .State}}", name, env=docker)
            state = json.loads(out)
            assert state["Running"], command("docker", "logs", name, env=docker)
            return str(state["Health"]["Status"])

        wait_until(lambda: health() == "healthy", timeout=120, what="HEALTHCHECK healthy")
        mailbox.append(SPAM[0].read_bytes())
        wait_until(lambda: mailbox.count("Junk") == 1, what="the spam moved to Junk")
        user = command("docker", "exec", name, "id", "-u", env=docker).strip()
        assert user == "10025"
        license_file = "import importlib.metadata as m; print(m.distribution('spamd')" + (
            ".read_text('licenses/LICENSE').splitlines()[0])"
        )
        assert command("docker", "exec", name, "python", "-c", license_file, env=docker) == (
            "MIT License\n"
        )
        started = time.monotonic()
        command("docker", "stop", name, env=docker)
        assert time.monotonic() - started < 10  # SIGTERM, not docker's SIGKILL after 10 s
        exit_code = command("docker", "inspect", "-f", "{{.State.ExitCode}}", name, env=docker)
        assert exit_code.strip() == "0"
        logs = subprocess.run(
            ["docker", "logs", name], env=docker, capture_output=True, text=True, check=True
        )
        events = [json.loads(line)["event"] for line in (logs.stdout + logs.stderr).splitlines()]
        assert "ready" in events and events[-1] == "stopped_all"
    finally:
        subprocess.run(["docker", "rm", "-f", name], env=docker, capture_output=True, check=False)
