"""The `spamd` command: a thin layer over the library.

This is the only module that reads argv, prints for people and chooses exit
codes (the README lists them): domain errors become one line on stderr and exit
status 1; usage errors exit 2 (argparse); a configuration that cannot be used, or
a model a configured command (`run`, `check-config`, ...) cannot load, exits 78
(EX_CONFIG, sysexits.h: the units tell systemd not to restart then); an
interrupt exits 130.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any, TextIO, TypeVar

from spamd import __version__
from spamd.core import scorer as scorer_lib
from spamd.core.features import DEFAULT_CHANNELS
from spamd.core.layout import Listing, explain, find_junk, match_folder, move_method
from spamd.core.message import DEFAULT_MAX_BYTES
from spamd.errors import ConfigError, InputError, ModelError, SpamdError, UnreadableMessage
from spamd.ops import config as config_lib
from spamd.ops import log as log_lib
from spamd.store import versions
from spamd.training import corpus

T = TypeVar("T")


def shipped(name: str) -> Path:
    """A directory shipped with spamd: in an installed wheel, package data beside this
    module (``spamd/models``, ``spamd/samples``); in a checkout, the top-level one."""
    installed = Path(__file__).resolve().parent / name
    return installed if installed.is_dir() else installed.parent.parent / name


# A model is named by its ``.joblib`` path; the daemon reads the ``.npz`` and ``.json``
# beside it, so the wheel leaves the pipeline itself out (see pyproject.toml).
DEFAULT_MODEL = shipped("models") / "default.joblib"
SAMPLES = shipped("samples")
DEFAULT_CONFIG = Path("/etc/spamd/spamd.yaml")
EX_CONFIG = 78  # sysexits.h: "something was found in an unconfigured or misconfigured state"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except SpamdError as exc:
        print(f"spamd: error: {exc}", file=sys.stderr)
        # A configuration, or the model a configured command loads, that cannot be used.
        configured = isinstance(exc, ModelError) and hasattr(args, "config")
        return EX_CONFIG if isinstance(exc, ConfigError) or configured else 1
    except KeyboardInterrupt:
        print("spamd: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `spamd classify ... | head`
        sys.stderr.close()
        return 0
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spamd",
        description="IMAP spam filter that learns from the folders users drag mail into.",
    )
    parser.add_argument("--version", action="version", version=f"spamd {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="train a model from labelled mail, or an account's model from its folders",
        description="Either --corpus DIR... --out PATH: a new base model from labelled mail; "
        "or --from-imap --config FILE --account NAME: a first retrain of the account's model "
        "on its own folders (Junk as spam, received mail as ham), for people with no "
        "corrections yet.",
    )
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--corpus",
        action="append",
        type=Path,
        metavar="DIR",
        help="directory with ham/ and spam/ (folders of files, Maildirs or mbox files); repeatable",
    )
    source.add_argument(
        "--from-imap", action="store_true", help="label the account's newest mail by its folder"
    )
    train.add_argument("--out", type=Path, metavar="PATH", help="model file to write (--corpus)")
    train.add_argument(
        "--config", type=Path, metavar="FILE", help=f"configuration (--from-imap; {CONFIG_HELP})"
    )
    train.add_argument("--account", metavar="NAME", help="account to learn from (--from-imap)")
    train.add_argument(
        "--limit",
        type=int,
        default=500,
        metavar="N",
        help="most messages taken per class (--from-imap; default: %(default)s)",
    )
    train.add_argument(
        "--fp-budget",
        type=_fraction,
        default=scorer_lib.DEFAULT_FP_BUDGET,
        metavar="RATE",
        help="largest share of ham the threshold may send to Junk (default: %(default)s)",
    )
    train.set_defaults(handler=_train, usage_error=train.error)

    classify = commands.add_parser("classify", help="score messages: one line each")
    _model_option(classify)
    classify.add_argument(
        "--jsonl", action="store_true", help="print JSON objects: path, score, spam"
    )
    classify.add_argument(
        "paths", nargs="+", metavar="FILE|DIR|-", help="messages; DIRs are walked"
    )
    classify.set_defaults(handler=_classify)

    evaluate = commands.add_parser("evaluate", help="train on part of a corpus, report on the rest")
    evaluate.add_argument(
        "--corpus",
        action="append",
        required=True,
        type=Path,
        metavar="DIR",
        help="directory with ham/ and spam/ (as for train); repeatable",
    )
    evaluate.add_argument(
        "--split",
        choices=["stratified", "time"],
        default="stratified",
        help="random stratified 80/20, or oldest 80%% by delivery time",
    )
    evaluate.add_argument(
        "--test-size",
        type=_fraction,
        default=0.2,
        metavar="SHARE",
        help="share of the mail held out for the figures (default: %(default)s)",
    )
    evaluate.add_argument(
        "--seed", type=int, default=0, help="seed of the random split (default: %(default)s)"
    )
    evaluate.add_argument(
        "--plot", type=Path, metavar="FILE.png", help="write a ROC/threshold chart"
    )
    evaluate.add_argument(
        "--json", action="store_true", help="print the figures as one JSON object"
    )
    evaluate.set_defaults(handler=_evaluate)

    explain = commands.add_parser("explain", help="show the terms that pushed a score up and down")
    _model_option(explain)
    explain.add_argument("file", metavar="FILE|-", help="one message file, or - for standard input")
    explain.add_argument(
        "--top", type=int, default=10, help="terms shown per direction (default: %(default)s)"
    )
    explain.set_defaults(handler=_explain)

    run = commands.add_parser("run", help="watch the configured mailboxes (the daemon)")
    _config_option(run)
    run.set_defaults(handler=_run)

    scan = commands.add_parser("scan", help="classify a backlog of existing mail now")
    _config_option(scan)
    scan.add_argument("--account", required=True, metavar="NAME", help="account to scan")
    scan.add_argument("--folder", metavar="F", help="folder to scan (default: the watched ones)")
    scan.add_argument("--since", type=int, metavar="DAYS", help="only mail from the last DAYS days")
    scan.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="processes that classify (default: one per CPU)",
    )
    scan.set_defaults(handler=_scan)

    _learning_commands(commands)

    check = commands.add_parser("check-config", help="validate a configuration file")
    _config_option(check)
    check.add_argument(
        "--connect",
        action="store_true",
        help="also log in to every account and report what spamd would do there (read-only)",
    )
    check.set_defaults(handler=_check_config)

    demo = commands.add_parser(
        "demo", help="run spamd against a private Dovecot on 127.0.0.1 with sample mail"
    )
    demo.add_argument(
        "--samples",
        type=Path,
        default=SAMPLES,
        metavar="DIR",
        help="mail to deliver: DIR/*/*.eml (default: the samples shipped with spamd)",
    )
    _model_option(demo)
    demo.set_defaults(handler=_demo)
    return parser


CONFIG_HELP = f"default: $SPAMD_CONFIG or {DEFAULT_CONFIG}"


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help=f"configuration ({CONFIG_HELP})"
    )


def _model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        type=Path,
        default=_default_model(),
        metavar="PATH",
        help="model file (default: $SPAMD_MODEL or the shipped model)",
    )


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _progress(items: Iterator[T], what: str) -> Iterable[T]:
    """A progress bar on a terminal; the bare iterator otherwise."""
    if not sys.stderr.isatty():
        return items
    from tqdm import tqdm  # noqa: PLC0415 - only needed on a terminal

    bar: Iterable[T] = tqdm(items, desc=what, unit=" msg", file=sys.stderr, leave=False)
    return bar


def _load_examples(corpora: list[Path]) -> corpus.Examples:
    return corpus.load_examples(
        corpora,
        DEFAULT_CHANNELS,
        DEFAULT_MAX_BYTES,
        progress=lambda items: _progress(items, "reading"),
    )


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def _train(args: argparse.Namespace) -> int:
    if args.from_imap:
        return _train_from_imap(args)
    if not args.out:
        args.usage_error("--corpus needs --out")
    examples = _load_examples(args.corpus)
    from spamd.training import model as model_lib  # noqa: PLC0415 - scikit-learn only when training

    trained = model_lib.train(
        examples.features,
        examples.labels,
        sources=[c.resolve().name for c in args.corpus],
        fp_budget=args.fp_budget,
        on_step=lambda step: _say(f"spamd: {step}…"),
    )
    saved = model_lib.save(trained, args.out)
    meta = saved.metadata
    print(f"wrote {args.out} (version {saved.version}): {meta.ham} ham, {meta.spam} spam")
    print(f"threshold {meta.threshold:.4f} for a false-positive budget of {meta.fp_budget:.2%}")
    for key, value in meta.metrics.items():
        print(f"held-out {key}: {value:.4f}")
    return 0


def _train_from_imap(args: argparse.Namespace) -> int:
    if not args.account:
        args.usage_error("--from-imap needs --account")
    if args.limit < 1:
        args.usage_error(f"--limit must be at least 1, got {args.limit}")
    config = _load_config(args)
    account = config.account(args.account)
    from spamd.daemon import bootstrap  # noqa: PLC0415 - IMAP and scikit-learn only here
    from spamd.mail.imap import Connection  # noqa: PLC0415

    _say(f"spamd: reading {account.name}'s folders and retraining…")
    result = bootstrap.run(config, account, args.limit, Connection.open)
    outcome = result.outcome
    print(
        f"{account.name}: {result.spam} spam from Junk, {result.ham} ham from "
        f"{', '.join(result.folders) or 'no folder'}; {result.added} new"
    )
    if outcome.promoted:
        print(f"model {outcome.version} is live (a running spamd swaps to it within seconds)")
    else:
        print(f"model {outcome.version} was refused: {outcome.refused}")
    return 0 if outcome.promoted else 1


def _classify(args: argparse.Namespace) -> int:
    model = scorer_lib.load(args.model)
    failed = 0
    mails = _progress(corpus.read_inputs(args.paths, model.metadata.max_bytes), "classifying")
    for mail in mails:
        if mail.error:
            failed += 1
            print(f"spamd: error: {mail.error}", file=sys.stderr)
            continue
        try:
            score = model.score(mail.raw)
        except UnreadableMessage as exc:
            failed += 1
            print(f"spamd: error: {mail.source}: {exc}", file=sys.stderr)
            continue
        _print_verdict(sys.stdout, mail.source, score, model.is_spam(score), args.jsonl)
    return 1 if failed else 0


def _print_verdict(out: TextIO, path: str, score: float, spam: bool, jsonl: bool) -> None:
    if jsonl:
        out.write(json.dumps({"path": path, "score": round(score, 6), "spam": spam}) + "\n")
    else:
        out.write(f"{path}\t{score:.4f}\t{'spam' if spam else 'ham'}\n")


def _evaluate(args: argparse.Namespace) -> int:
    from spamd.training import evaluation, metrics  # noqa: PLC0415 - scikit-learn only here

    if args.plot:
        evaluation.check_plotting(args.plot)  # before the work, not after it
    examples = _load_examples(args.corpus)

    train_set, test_set = evaluation.split(examples, args.split, args.test_size, args.seed)
    if len(set(test_set.labels)) < 2:
        raise SpamdError(
            "the test part holds only one class: use more mail or a larger --test-size"
        )
    from spamd.training import model as model_lib  # noqa: PLC0415 - scikit-learn only when training

    trained = model_lib.train(
        train_set.features, train_set.labels, on_step=lambda step: _say(f"spamd: {step}…")
    )
    scores = trained.scorer.score_features(test_set.features)
    report = metrics.report(test_set.labels, scores, trained.scorer.threshold)
    if args.json:
        print(json.dumps(report.measured(), sort_keys=True))
    else:
        sizes = f"{len(train_set.labels)} train / {len(test_set.labels)} test"
        print(f"split           {args.split}, {sizes}")
        print("\n".join(report.lines()))
    if args.plot:
        title = f"spamd on {', '.join(c.name for c in args.corpus)} ({args.split} split)"
        evaluation.plot(test_set.labels, scores, trained.scorer.threshold, args.plot, title)
        _say(f"spamd: wrote {args.plot}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    model = scorer_lib.load(args.model)
    mails = list(islice(corpus.read_inputs([args.file], model.metadata.max_bytes), 2))
    if len(mails) > 1:
        raise InputError("holds more than one message: explain takes one file", path=args.file)
    if not mails:
        raise InputError("holds no messages: name a message file", path=args.file)
    (mail,) = mails
    if mail.error:
        raise SpamdError(mail.error)
    explanation = model.explain(mail.raw, args.top)
    verdict = "spam" if explanation.spam else "ham"
    print(
        f"{mail.source}: score {explanation.score:.4f} ({verdict}; threshold {model.threshold:.4f})"
    )
    for title, terms in (
        ("pushed towards spam", explanation.up),
        ("pushed towards ham", explanation.down),
    ):
        print(f"{title}:")
        for term in terms:
            print(f"  {term.weight:+8.3f}  {term.term}")
        if not terms:
            print("  (nothing)")
    return 0


def _default_model() -> Path:
    """The model a command uses when none is named: $SPAMD_MODEL, else the shipped one."""
    return Path(os.environ.get("SPAMD_MODEL", DEFAULT_MODEL))


def _config_path(args: argparse.Namespace) -> Path:
    """--config, else $SPAMD_CONFIG, else /etc/spamd/spamd.yaml."""
    return args.config or Path(os.environ.get("SPAMD_CONFIG") or DEFAULT_CONFIG)


def _load_config(args: argparse.Namespace) -> config_lib.Config:
    """The configuration, with its state_dir usable: every command that reads one keeps state."""
    config = config_lib.load(_config_path(args), _default_model())
    config_lib.check_state_dir(config)
    return config


def _run(args: argparse.Namespace) -> int:
    config = _load_config(args)
    from spamd.daemon import service  # noqa: PLC0415 - the daemon's imports only for daemon commands
    from spamd.ops.telemetry import Telemetry  # noqa: PLC0415

    telemetry = Telemetry()
    log_lib.configure(config.log_level, config.log_format, counters=telemetry.processor)
    return service.run(
        config, log=log_lib.get(), default_model=_default_model(), telemetry=telemetry
    )


def _scan(args: argparse.Namespace) -> int:
    config = _load_config(args)
    account = config.account(args.account)
    log_lib.configure(config.log_level, config.log_format, stream=sys.stderr)
    from spamd.daemon import service  # noqa: PLC0415

    folders = [args.folder] if args.folder else list(account.folders)
    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm  # noqa: PLC0415

        tqdm.monitor_interval = 0  # no monitor thread: the scan forks its workers
        bar = tqdm(desc="scanning", unit=" msg", file=sys.stderr)
    counts = service.scan(
        config,
        account,
        folders,
        args.since,
        log=log_lib.get(),
        progress=bar.update if bar else lambda n: None,
        total=(lambda n: setattr(bar, "total", n)) if bar else lambda n: None,
        workers=max(1, args.workers),
    )
    if bar:
        bar.close()
    summary = ", ".join(f"{n} {action}" for action, n in sorted(counts.items())) or "nothing new"
    print(f"scanned {sum(counts.values())} messages of {account.name}: {summary}")
    return 0


def _learning_commands(commands: Any) -> None:
    models = commands.add_parser("model", help="list model versions, or roll back to one")
    model_commands = models.add_subparsers(dest="model_command", required=True)
    listing = model_commands.add_parser(
        "list", help="versions: when, on what, metrics, which is live"
    )
    _config_option(listing)
    listing.set_defaults(handler=_model_list)
    rollback = model_commands.add_parser("rollback", help="make an earlier version live again")
    _config_option(rollback)
    rollback.add_argument("version", nargs="?", help="default: the one live before this one")
    rollback.set_defaults(handler=_model_rollback)

    corrections = commands.add_parser(
        "corrections",
        help="recent corrections users made (id, date, label, how, folder, sender, subject)",
    )
    # --config before or after `forget ID` / `restore`: the subcommands' own --config
    # leaves this one's value alone when they are not given it.
    _config_option(corrections)
    corrections.add_argument("--account", metavar="NAME", help="only this account's")
    corrections.add_argument(
        "--limit", type=int, default=50, help="most recent shown (default: %(default)s)"
    )
    corrections.set_defaults(handler=_corrections)
    what = corrections.add_subparsers(dest="corrections_command")
    forget = what.add_parser("forget", help="remove a correction by its id, then retrain")
    forget.add_argument("id", type=int, help="its id, as `spamd corrections` shows it")
    forget.add_argument(
        "--config", type=Path, metavar="FILE", default=argparse.SUPPRESS, help=CONFIG_HELP
    )
    forget.set_defaults(handler=_corrections_forget)
    restore = what.add_parser(
        "restore", help="learn corrections a rollback set aside again (one id, or all), retrain"
    )
    restore.add_argument("id", type=int, nargs="?", help="default: all set aside")
    restore.add_argument(
        "--config", type=Path, metavar="FILE", default=argparse.SUPPRESS, help=CONFIG_HELP
    )
    restore.set_defaults(handler=_corrections_restore)


def _store(config: config_lib.Config) -> versions.ModelStore:
    return versions.ModelStore(config.state_dir, config.model_path)


def _model_list(args: argparse.Namespace) -> int:
    for v in _store(_load_config(args)).versions():
        meta = v.metadata
        name = f"base ({v.path})" if v.name == versions.BASE else v.name
        what = (
            f"{meta.trained_at or '?'}  {meta.ham} ham / {meta.spam} spam  "
            f"threshold {meta.threshold:.4f}  "
            + " ".join(f"{k}={x:.4g}" for k, x in meta.metrics.items())
            if meta
            else "unreadable metadata"
        )
        refused = f"  [refused: {v.refused}]" if v.refused else ""
        print(f"{'*' if v.live else ' '} {name}  {what}{refused}")
    return 0


def _model_rollback(args: argparse.Namespace) -> int:
    """Make a version live, and set aside the corrections learnt since it was
    trained, so that the next retrain does not bring them back."""
    config = _load_config(args)
    store = _store(config)
    name = store.rollback(args.version)
    meta = scorer_lib.read_metadata(store.path(name))
    since = datetime.fromisoformat(meta.trained_at).timestamp() if meta.trained_at else 0.0
    with _state(config) as state:
        aside = state.set_aside(since)
    print(f"live model: {name} (a running spamd swaps to it within seconds)")
    if aside:
        print(
            f"{aside} correction(s) learnt since it was trained are set aside: "
            "see `spamd corrections`; `spamd corrections restore` learns them again"
        )
    return 0


@contextlib.contextmanager
def _state(config: config_lib.Config) -> Iterator[Any]:
    from spamd.store.state import State, state_path  # noqa: PLC0415

    state = State(state_path(config))
    try:
        yield state
    finally:
        state.close()


def _corrections(args: argparse.Namespace) -> int:
    config = _load_config(args)
    if args.account:
        config.account(args.account)  # an unknown name is an error, with suggestions
    with _state(config) as state:
        rows = state.corrections(args.account, args.limit)
    for c in rows:
        when = datetime.fromtimestamp(c.at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        aside = "  [set aside]" if c.set_aside else ""
        print(
            f"{c.id:>6}  {when}  {c.account}  {c.label:<4}  {c.how:<13}  {c.folder}  "
            f"{c.sender or '-'}  {c.subject!r}{aside}"
        )
    if not rows:
        print("no corrections yet")
    return 0


def _corrections_forget(args: argparse.Namespace) -> int:
    config = _load_config(args)
    with _state(config) as state:
        gone = state.forget(args.id)
        print(f"forgot correction {gone.id}: {gone.label} {gone.how} {gone.subject!r}")
        return _retrain_now(config, state)


def _corrections_restore(args: argparse.Namespace) -> int:
    config = _load_config(args)
    with _state(config) as state:
        print(f"{state.restore(args.id)} correction(s) learnt again")
        return _retrain_now(config, state)


def _retrain_now(config: config_lib.Config, state: Any) -> int:
    from spamd.training import retrain  # noqa: PLC0415 - scikit-learn only when retraining

    outcome = retrain.retrain(_store(config), state)
    live = "live now" if outcome.promoted else f"refused: {outcome.refused}"
    print(f"retrained: version {outcome.version}, {outcome.corrections} corrections, {live}")
    return 0


def _check_config(args: argparse.Namespace) -> int:
    """The file, state_dir, the model and every secret (commands are run, never shown)."""
    config = _load_config(args)
    model = scorer_lib.load(config.model_path)  # the base, which retraining starts from
    live = _store(config).live_path()
    model = model if live == config.model_path else scorer_lib.load(live)
    failed = 0
    for secret in config.secrets():
        try:
            secret.check()
        except SpamdError as exc:
            failed += 1
            print(f"spamd: error: {exc}", file=sys.stderr)
    if failed:
        return EX_CONFIG
    folders = sum(len(a.folders) for a in config.accounts)
    print(
        f"{config.source}: OK ({len(config.accounts)} accounts, {folders} folders, "
        f"model {model.version})"
    )
    return _check_connections(config) if args.connect else 0


def _check_connections(config: config_lib.Config) -> int:
    """Log in to each account and report, changing nothing on the server, what
    spamd would do there; 1 if anything would stop an account's filtering."""
    from spamd.mail.imap import Connection  # noqa: PLC0415 - the IMAP library only here

    failed = 0
    for account in config.accounts:
        try:
            connection = Connection.open(account)
        except SpamdError as exc:
            failed += 1
            print(f"{account.name}: FAILED: {_unnamed(exc, account.name)}")
            continue
        try:
            problems = _report(account, connection.capabilities, connection.listing())
            failed += bool(problems)
        except SpamdError as exc:
            failed += 1
            print(f"{account.name}: FAILED after login: {_unnamed(exc, account.name)}")
        finally:
            connection.logout()
    return 1 if failed else 0


def _report(account: config_lib.Account, capabilities: Iterable[str], listing: Listing) -> int:
    """Print what spamd would do on this account; returns how many problems would stop it."""
    caps = sorted(capabilities)
    ns = listing.namespace
    print(
        f"{account.name}: connected to {account.host}:{account.port} "
        f"({account.tls}, {account.auth}); namespace {ns.prefix!r}, separator {ns.separator!r}"
    )
    print(f"  capabilities: {' '.join(caps)}")
    for line in explain(caps):
        print(f"  {line}")
    junk = find_junk(listing, account.junk_folder)
    where = "found" if junk.exists else "would be created as"
    print(f"  Junk folder: {where} {junk.name!r} ({junk.how})")
    problems = 0
    for wanted in account.folders:
        found = match_folder(wanted, listing)
        if found is None:
            problems += 1
            print(f"  watched folder {wanted!r}: MISSING: fix folders: (the server has: "
                  f"{', '.join(listing.names()[:20])})")  # fmt: skip
        else:
            print(f"  watched folder {wanted!r}: found as {found!r}")
    if move_method(caps) == "flag" and account.mode == "move":
        print("  WARNING: this server cannot move mail safely: spam will be flagged $Junk "
              "in place (mode: flag) instead of moved")  # fmt: skip
    return problems


def _unnamed(exc: SpamdError, account: str) -> str:
    """An IMAP error without the account name the line already starts with."""
    return str(exc).removeprefix(f"{account}: ")


def _demo(args: argparse.Namespace) -> int:
    from spamd.demo import run as demo  # noqa: PLC0415

    return demo.main(args.samples, args.model)


if __name__ == "__main__":
    sys.exit(main())
