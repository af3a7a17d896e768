"""scripts/setup on a machine that lacks dovecot-imapd, with apt faked (no network, no root
changes): what it checks, how it waits for another package manager, what it says."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

IMAP = Path("/usr/lib/dovecot/imap")
FAKE_APT = """#!/bin/sh
# Records its arguments; says the dpkg lock is held for the first $LOCKED calls.
n=$(cat "$FAKE/calls" 2>/dev/null || echo 0); echo $((n + 1)) > "$FAKE/calls"
if [ "$n" -lt "${LOCKED:-0}" ]; then
    echo "E: Could not get lock /var/lib/dpkg/lock-frontend." \
        "It is held by process 4242 (unattended-upgr)" >&2
    exit 100
fi
echo "$*" >> "$FAKE/apt.log"
"""


def can_hide_imap() -> bool:
    """Whether this test may hide the imap binary in a mount namespace of its own."""
    if not IMAP.exists() or shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--mount", "--propagation", "private", "true"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


pytestmark = pytest.mark.skipif(
    not can_hide_imap(), reason="needs dovecot-imapd installed and unshare --mount (root)"
)


def setup_without_imap(
    tmp_path: Path, locked: int, lock_wait: int
) -> subprocess.CompletedProcess[str]:
    """Run a copy of scripts/setup where /usr/lib/dovecot/imap is not executable (only
    dovecot-core, as it were), with a fake apt-get; .venv is a stand-in, up to date."""
    tree = tmp_path / "tree"
    (tree / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup", tree / "scripts" / "setup")
    (tree / "scripts" / "cyrus").write_text("#!/bin/sh\n")  # Cyrus is not this test's business
    (tree / "scripts" / "cyrus").chmod(0o755)
    (tree / "pyproject.toml").write_text("")
    (tree / ".venv" / "bin").mkdir(parents=True)
    (tree / ".venv" / "bin" / "python").symlink_to(shutil.which("python3") or "/usr/bin/python3")
    (tree / ".venv" / ".spamd-installed").touch()
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "apt-get").write_text(FAKE_APT)
    (fake / "apt-get").chmod(0o755)
    (fake / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    (fake / "sudo").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}",
        "FAKE": str(fake),
        "LOCKED": str(locked),
        "SPAMD_SETUP_LOCK_WAIT": str(lock_wait),
    }
    hide = f"mount --bind /dev/null {IMAP} && exec {tree / 'scripts' / 'setup'}"
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", hide],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_setup_installs_dovecot_imapd_when_only_its_imap_binary_is_missing(
    tmp_path: Path,
) -> None:
    assert shutil.which("dovecot")  # dovecot-core is here: the old check was satisfied
    done = setup_without_imap(tmp_path, locked=0, lock_wait=60)
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "fake" / "apt.log").read_text().splitlines()
    assert calls[0] == "-qq -o DPkg::Lock::Timeout=0 update"
    assert calls[1].startswith("-qq -o DPkg::Lock::Timeout=0 install -y --no-install-recommends ")
    assert "dovecot-imapd" in calls[1].split()
    packages = calls[1].split("--no-install-recommends ")[1]
    assert done.stdout == f"setup: installed Debian packages: {packages}\n"
    assert done.stderr == ""


def test_setup_waits_for_the_dpkg_lock_and_says_so(tmp_path: Path) -> None:
    done = setup_without_imap(tmp_path, locked=2, lock_wait=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == (
        "setup: another package manager holds the dpkg lock (automatic updates?): "
        "waiting up to 60 s for it\n"
    )
    assert done.stdout.startswith("setup: installed Debian packages: ")


def test_setup_gives_up_on_the_dpkg_lock_after_a_bounded_wait(tmp_path: Path) -> None:
    done = setup_without_imap(tmp_path, locked=1000, lock_wait=1)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "setup: another package manager held the dpkg lock for 1 s: let it finish "
        "(see: ps -C apt,apt-get,dpkg,unattended-upgr), then run scripts/setup again"
    )
    assert done.stdout == ""
