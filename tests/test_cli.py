"""The command line: outputs, streaming, and one-line errors without tracebacks."""

from __future__ import annotations

import argparse
import io
import json
import mailbox
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from spamd.cli import EX_CONFIG, _parser, main
from tests.conftest import SAMPLES


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_then_classify_and_explain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_path = tmp_path / "m.joblib"
    code, out, _ = run(capsys, "train", "--corpus", str(SAMPLES), "--out", str(out_path))
    assert code == 0 and "6 ham, 6 spam" in out
    assert out_path.exists() and out_path.with_suffix(".json").exists()

    code, out, _ = run(capsys, "classify", "--model", str(out_path), str(SAMPLES))
    lines = [line.split("\t") for line in out.splitlines()]
    assert code == 0 and len(lines) == 12
    for path, score, verdict in lines:
        assert 0 <= float(score) <= 1
        assert verdict in {"spam", "ham"}
        assert Path(path).is_file()

    code, out, _ = run(
        capsys,
        "classify",
        "--jsonl",
        "--model",
        str(out_path),
        str(SAMPLES / "spam" / "01-prize.eml"),
    )
    record = json.loads(out)
    assert set(record) == {"path", "score", "spam"} and isinstance(record["spam"], bool)

    code, out, _ = run(
        capsys, "explain", "--model", str(out_path), str(SAMPLES / "spam" / "01-prize.eml")
    )
    assert code == 0 and "pushed towards spam:" in out and "pushed towards ham:" in out


def test_classify_reads_stdin(
    small_model: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = (SAMPLES / "ham" / "01-meeting.eml").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))
    code, out, _ = run(capsys, "classify", "--model", str(small_model), "-")
    assert code == 0 and out.startswith("-\t")


def test_train_accepts_mbox_and_maildir_classes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus_dir = tmp_path / "corpus"
    corpus_dir.mkdir()
    box = mailbox.mbox(corpus_dir / "ham.mbox")
    for path in sorted((SAMPLES / "ham").glob("*.eml")):
        box.add(path.read_bytes())
    box.close()
    maildir = mailbox.Maildir(corpus_dir / "spam")
    for path in sorted((SAMPLES / "spam").glob("*.eml")):
        maildir.add(path.read_bytes())
    code, out, err = run(
        capsys, "train", "--corpus", str(corpus_dir), "--out", str(tmp_path / "m.joblib")
    )
    assert code == 0, err
    assert "6 ham, 6 spam" in out


def test_evaluate_prints_figures_and_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus_dir = tmp_path / "c"
    for label in ("ham", "spam"):  # enough mail for a 5-fold threshold on the training part
        for i in range(4):
            shutil.copytree(SAMPLES / label, corpus_dir / label / str(i))
    plot = tmp_path / "roc.png"
    code, out, err = run(
        capsys, "evaluate", "--corpus", str(corpus_dir), "--json", "--plot", str(plot)
    )
    assert code == 0, err
    figures = json.loads(out)
    for key in (
        "precision",
        "recall",
        "f1",
        "false_positive_rate",
        "roc_auc",
        "recall_at_fpr_0_1pct",
        "recall_at_fpr_1pct",
        "true_positives",
    ):
        assert key in figures
    assert figures["n_ham"] + figures["n_spam"] == 10
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A few test ham cannot measure a recall at FPR <= 0.1 % (or 1 %): none is claimed.
    assert figures["recall_at_fpr_0_1pct"] is None and figures["recall_at_fpr_1pct"] is None

    code, out, _ = run(capsys, "evaluate", "--corpus", str(corpus_dir), "--split", "time")
    assert code == 0 and "ROC AUC" in out and "confusion" in out
    lines = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in out.splitlines())
    ham = lines["messages"].split()[0]
    assert lines["recall @FPR<=0.1%"] == f"n/a ({ham} test ham cannot measure it: needs 1000)"
    assert lines["recall @FPR<=1%"] == f"n/a ({ham} test ham cannot measure it: needs 100)"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--corpus", "/no/such/dir", "--out", "x"], "corpus directory not found"),
        (["classify", "--model", "/no/such/model.joblib", "x"], "model file not found"),
    ],
)
def test_errors_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_empty_class_and_missing_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ham").mkdir()
    code, _, err = run(capsys, "train", "--corpus", str(tmp_path), "--out", str(tmp_path / "m"))
    assert code == 1 and "no spam/ folder" in err
    (tmp_path / "spam").mkdir()
    code, _, err = run(capsys, "train", "--corpus", str(tmp_path), "--out", str(tmp_path / "m"))
    assert code == 1 and f"{tmp_path / 'ham'}: holds no messages" in err


def test_unreadable_file_is_reported_and_the_rest_classified(
    tmp_path: Path, small_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.eml"
    good.write_bytes((SAMPLES / "ham" / "01-meeting.eml").read_bytes())
    code, out, err = run(
        capsys, "classify", "--model", str(small_model), str(tmp_path / "missing.eml"), str(good)
    )
    assert code == 1
    assert "missing.eml: no such file or directory" in err
    assert out.startswith(str(good))


def test_an_unreadable_message_is_reported_not_scored(
    tmp_path: Path,
    small_model: Path,
    capsys: pytest.CaptureFixture[str],
    parser_breaker: bytes,
) -> None:
    spam = (SAMPLES / "spam" / "01-prize.eml").read_bytes()
    (tmp_path / "broken.eml").write_bytes(parser_breaker + spam)
    (tmp_path / "good.eml").write_bytes(spam)
    code, out, err = run(capsys, "classify", "--model", str(small_model), str(tmp_path))
    assert code == 1
    assert f"{tmp_path / 'broken.eml'}: unreadable message (RecursionError); not scored" in err
    assert out.startswith(str(tmp_path / "good.eml")) and "broken" not in out


def test_bad_model_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.joblib"
    bad.write_bytes(b"not a pickle")
    code, _, err = run(capsys, "classify", "--model", str(bad), str(SAMPLES))
    assert (
        code == 1 and "metadata file beside the model not found" in err and "Traceback" not in err
    )


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--corpus", "x", "--out", "y", "--fp-budget", "2"])
    assert exit_info.value.code == 2
    assert "must be between 0 and 1" in capsys.readouterr().err


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("train", "classify", "evaluate", "explain"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "usage: spamd " + command in capsys.readouterr().out


def test_every_command_and_option_has_help() -> None:
    def undocumented(parser: argparse.ArgumentParser, name: str) -> Iterator[str]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    if not choice.help:
                        yield f"{name} {choice.dest}"
                for sub, subparser in action.choices.items():
                    yield from undocumented(subparser, f"{name} {sub}")
            elif not action.help:
                yield f"{name} {'/'.join(action.option_strings) or action.dest}"

    assert list(undocumented(_parser(), "spamd")) == []


def test_explain_takes_one_message_not_a_directory_of_them(
    small_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "explain", "--model", str(small_model), str(SAMPLES / "spam"))
    assert (code, out) == (1, "")
    problem = "holds more than one message: explain takes one file"
    assert err == f"spamd: error: {SAMPLES / 'spam'}: {problem}\n"


@pytest.mark.parametrize("command", ["classify", "explain"])
def test_empty_standard_input_is_an_error_not_a_score(
    command: str,
    small_model: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    code, out, err = run(capsys, command, "--model", str(small_model), "-")
    assert (code, out) == (1, "")
    assert err == (
        "spamd: error: -: standard input is empty: give it a message (headers and body)\n"
    )


def test_an_empty_file_is_reported_and_the_rest_classified(
    tmp_path: Path, small_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-empty.eml").write_bytes(b"\r\n")
    shutil.copy(SAMPLES / "ham" / "01-meeting.eml", tmp_path / "b.eml")
    code, out, err = run(capsys, "classify", "--model", str(small_model), str(tmp_path))
    assert code == 1
    problem = "the file is empty: give it a message (headers and body)"
    assert err == f"spamd: error: {tmp_path / 'a-empty.eml'}: {problem}\n"
    assert out.startswith(f"{tmp_path / 'b.eml'}\t")


def test_evaluate_plot_without_matplotlib_fails_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib: ImportError
    plot = tmp_path / "roc.png"
    code, out, err = run(
        capsys, "evaluate", "--corpus", str(tmp_path / "no-such-corpus"), "--plot", str(plot)
    )
    assert (code, out) == (1, "")  # not "corpus directory not found": nothing was read
    assert err == f"spamd: error: {plot}: --plot needs matplotlib: pip install 'spamd[plot]'\n"


ACCOUNT = "accounts: [{name: a, host: 127.0.0.1, username: a, password_command: %s}]\n"
FIX_STATE = "point state_dir at a directory spamd's user may write to, or fix its owner and mode"


@pytest.mark.parametrize(
    "command", [["run"], ["corrections"], ["check-config"], ["model", "list"]], ids=" ".join
)
def test_an_unusable_state_dir_is_one_line_before_anything_starts(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = tmp_path / "spamd.yaml"
    config.write_text(f"state_dir: {blocker}/state\n" + ACCOUNT % "'echo pw'")
    code, out, err = run(capsys, *command, "--config", str(config))
    assert (code, out) == (EX_CONFIG, "")
    assert err == (
        f"spamd: error: {config}:state_dir: {blocker}/state cannot hold spamd's state: "
        f"{blocker} is not a directory; {FIX_STATE}\n"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_state_dir_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o500)
    config = tmp_path / "spamd.yaml"
    config.write_text(f"state_dir: {state}\n" + ACCOUNT % "'echo pw'")
    code, _, err = run(capsys, "run", "--config", str(config))
    assert code == EX_CONFIG
    assert err.count("\n") == 1 and f"{state} is not readable and writable for user" in err


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        ("'echo s3cret >&2; exit 3'", "exited with status 3; run it as the user spamd runs as"),
        ("'true'", "printed nothing: it must print the secret on standard output"),
    ],
)
def test_check_config_runs_each_secret_command_without_showing_its_output(
    command: str, problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "spamd.yaml"
    config.write_text(f"state_dir: {tmp_path}\n" + ACCOUNT % command)
    code, out, err = run(capsys, "check-config", "--config", str(config))
    assert (code, out) == (EX_CONFIG, "")
    assert err.startswith(f"spamd: error: {config}:accounts[0].password_command: command {problem}")
    assert err.count("\n") == 1 and "s3cret" not in err

    config.write_text(f"state_dir: {tmp_path}\n" + ACCOUNT % "'echo s3cret'")
    code, out, err = run(capsys, "check-config", "--config", str(config))
    assert code == 0 and out.startswith(f"{config}: OK (1 accounts, 1 folders, model ")
    assert "s3cret" not in out + err
