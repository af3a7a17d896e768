"""Service packaging: the systemd units and the container image's Dockerfile."""

from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

import spamd
from tests.conftest import HAM, ROOT, SPAM, example_config

UNITS = ("spamd.service", "spamd@.service")
MAX_EXPOSURE = 2.0
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze missing (scripts/setup)"
)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """spamd's wheel, built from this checkout (without its dependencies)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    (built,) = out.glob("spamd-*.whl")
    return built


def installed_copy(unit: str, tmp_path: Path) -> Path:
    """The unit as an install would have it: ExecStart= names this checkout's spamd."""
    spamd = Path(sys.executable).with_name("spamd")
    text = (ROOT / "systemd" / unit).read_text().replace("/opt/spamd/bin/spamd", str(spamd))
    name = unit.replace("@.", "@test.")  # an instance: what systemd analyses for real
    (tmp_path / name).write_text(text)
    return tmp_path / name


@needs_analyze
@pytest.mark.parametrize("unit", UNITS)
def test_unit_verifies_cleanly(unit: str, tmp_path: Path) -> None:
    path = installed_copy(unit, tmp_path)
    done = subprocess.run(
        [str(ANALYZE), "verify", path.name], cwd=tmp_path, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "" and done.stdout.strip() == ""


@needs_analyze
@pytest.mark.parametrize("unit", UNITS)
def test_unit_exposure_is_low(unit: str, tmp_path: Path) -> None:
    path = installed_copy(unit, tmp_path)
    done = subprocess.run(
        [str(ANALYZE), "security", "--offline=true", path.name], cwd=tmp_path,
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert found, done.stdout[-500:] + done.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE


def test_the_template_differs_from_the_unit_only_where_it_must() -> None:
    def settings(unit: str) -> list[str]:
        lines = (ROOT / "systemd" / unit).read_text().splitlines()
        return [line for line in lines if line and not line.startswith("#")]

    single, template = settings(UNITS[0]), settings(UNITS[1])
    differ = {(a, b) for a, b in zip(single, template, strict=True) if a != b}
    assert differ == {
        ("Description=spamd IMAP spam filter", "Description=spamd IMAP spam filter (%i)"),
        (
            "ExecStart=/opt/spamd/bin/spamd run --config /etc/spamd/spamd.yaml",
            "ExecStart=/opt/spamd/bin/spamd run --config /etc/spamd/%i.yaml",
        ),
        ("StateDirectory=spamd", "StateDirectory=spamd/%i"),
    }
    assert "Type=notify" in single and "WatchdogSec=60s" in single
    # A configuration error (exit 78, EX_CONFIG) is not retried every RestartSec=.
    assert "Restart=on-failure" in single and "RestartPreventExitStatus=78" in single


def test_the_units_document_spamd_with_the_readme_the_wheel_installs(wheel: Path) -> None:
    for unit in UNITS:
        text = (ROOT / "systemd" / unit).read_text()
        (docs,) = re.findall(r"^Documentation=file:/opt/spamd/(\S+)$", text, re.M)
        (exec_start,) = re.findall(r"^ExecStart=/opt/spamd/(\S+) ", text, re.M)
        assert exec_start == "bin/spamd"
        with zipfile.ZipFile(wheel) as archive:
            assert f"spamd-{spamd.__version__}.data/data/{docs}" in archive.namelist()


def test_the_wheel_says_its_license_and_what_it_is(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        info = f"spamd-{spamd.__version__}.dist-info"
        metadata = email.message_from_bytes(archive.read(f"{info}/METADATA"))
        license_text = archive.read(f"{info}/licenses/LICENSE").decode()
    assert metadata["License-Expression"] == "MIT"
    assert metadata["License-File"] == "LICENSE" and "License" not in metadata
    assert license_text.startswith("MIT License")
    classifiers = metadata.get_all("Classifier") or []
    assert "Topic :: Communications :: Email :: Filters" in classifiers
    assert "Environment :: No Input/Output (Daemon)" in classifiers


def test_dockerfile_has_no_hadolint_findings() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    done = subprocess.run(
        [str(hadolint), "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""


def test_the_image_takes_the_model_from_the_wheel_only() -> None:
    """The wheel carries the model (tested above in a fresh venv); the image's final
    stage copies only the venv the wheel went into, so the model is not in it twice and
    no SPAMD_MODEL points past the package."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    final = dockerfile[dockerfile.rindex("\nFROM ") :]
    copies = re.findall(r"^COPY .*$", final, re.M)
    assert copies == ["COPY --from=build /opt/venv /opt/venv"], copies
    assert "SPAMD_MODEL" not in dockerfile


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    """.dockerignore admits every file or folder the Dockerfile copies (samples/ was
    copied for the wheel but left out of the context, so `docker build` failed)."""
    admitted = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = [
        source
        for line in re.findall(
            r"^COPY (?!--from)(.*) \S+$", (ROOT / "Dockerfile").read_text(), re.M
        )
        for source in line.split()
    ]
    assert copied
    for source in (s.rstrip("/") for s in copied):
        assert any(
            source == a or a.startswith(f"{source}/") or source.startswith(f"{a}/")
            for a in admitted
        ), f".dockerignore leaves out {source}, which the Dockerfile copies"


def fresh_venv(wheel: Path, tmp_path: Path) -> Path:
    """A new venv outside the checkout with the wheel installed; its bin directory.

    The tests may not reach PyPI, so the wheel's dependencies are lent from this
    test run's venv (every entry of its site-packages but spamd's own), and
    `pip check` proves that what the wheel requires is all there."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.check_output([str(python), "-c", purelib], text=True).strip())
    lent = tmp_path / "lent"
    lent.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(("spamd", "__editable__")) and entry.suffix != ".pth":
            (lent / entry.name).symlink_to(entry)
    (site / "lent.pth").write_text(f"{lent}\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    subprocess.run([*pip, "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    checked = subprocess.run([*pip, "check"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return venv / "bin"


def test_the_wheel_carries_the_model_and_classifies_in_a_fresh_venv(
    wheel: Path, tmp_path: Path
) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {
        "spamd/models/default.npz",
        "spamd/models/default.json",
        "spamd/models/default.base.npz",
        "spamd/samples/spam/01-prize.eml",
    } <= names
    assert not [n for n in names if n.endswith(".joblib")]  # the daemon never unpickles
    assert wheel.stat().st_size < 8_000_000

    bin_dir = fresh_venv(wheel, tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in {"SPAMD_MODEL", "PYTHONPATH"}}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"

    def spamd(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(bin_dir / "spamd"), *argv], cwd=tmp_path, env=env, capture_output=True,
            text=True, check=False,
        )  # fmt: skip

    where = subprocess.run(
        [str(bin_dir / "python"), "-c",
         "import spamd.cli as c; print(c.__file__, c.DEFAULT_MODEL, c.SAMPLES, sep='\\n')"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    installed = bin_dir.parent.resolve()
    assert all(Path(path).is_relative_to(installed) for path in where), where
    samples = Path(where[2])

    done = spamd("classify", str(samples))
    assert done.returncode == 0, done.stderr
    verdicts = {
        Path(line.split("\t")[0]).name: line.split("\t")[2] for line in done.stdout.splitlines()
    }
    assert [verdicts[p.name] for p in SPAM] == ["spam"] * len(SPAM)
    assert [verdicts[p.name] for p in HAM] == ["ham"] * len(HAM)

    config = example_config(tmp_path)
    done = spamd("check-config", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{config}: OK (1 accounts, 1 folders")


def test_the_image_build_copies_what_the_wheel_carries() -> None:
    """`pip install .` in the image's build stage needs every directory pyproject maps."""
    with (ROOT / "pyproject.toml").open("rb") as file:
        mapped = tomllib.load(file)["tool"]["setuptools"]["package-dir"].values()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert mapped and all(f"\nCOPY {d} ./{d}\n" in dockerfile for d in mapped)
