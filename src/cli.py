"""The ``cadence`` command line: wires stages together, holds no logic of its own.

Examples
--------
``cadence generate --customers 2000 --days 90 --seed 1 --out data/raw/small``
``cadence validate data/raw/small``
``cadence demo``
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
import types
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    from cadence.data.gate import Gate

def _short_path(filename: str) -> str:
    """A source file as ``package/module.py`` (from the package root or site-packages), never a home folder."""
    parts = Path(filename).parts
    for anchor in ("site-packages", "dist-packages"):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor) + 1:])
    if "cadence" in parts:
        return "/".join(parts[len(parts) - 1 - parts[::-1].index("cadence"):])
    return "/".join(parts[-2:])


def error_location(error: BaseException) -> str:
    """Where an exception was raised, and the innermost cadence frame on the way, without its message.

    The message of an unexpected error may carry row values (a pandas
    ``KeyError`` names the key, a ``ValueError`` may quote a cell), so the
    one-liner shows the exception's type and location only.

    >>> try:
    ...     int("CUSTOMER-42")
    ... except ValueError as e:
    ...     where = error_location(e)
    >>> where.endswith("in <module>"), "CUSTOMER" in where
    (True, False)
    """
    import traceback

    frames = list(traceback.walk_tb(error.__traceback__))
    if not frames:
        return "unknown location"

    def place(frame: types.FrameType, line: int) -> str:
        return f"{_short_path(frame.f_code.co_filename)}:{line} in {frame.f_code.co_name}"

    where = place(*frames[-1])
    ours = [f for f in frames if str(f[0].f_globals.get("__name__", "")).split(".")[0] == "cadence"]
    if ours and ours[-1] is not frames[-1]:
        where += f" (from {place(*ours[-1])})"
    return where


class _OneLineErrors(TyperGroup):
    """Turns an unexpected exception into one line on stderr (exit 1); ``--debug`` shows the traceback.

    Expected errors are handled where they arise (one line per problem); this
    is the net under them, so a user never sees a traceback by default. The
    line names the exception's type and where it was raised, not its
    message, which may quote the data (customer ids, cell values).
    """

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.ClickException, click.exceptions.Abort,
                KeyboardInterrupt):
            raise
        except Exception as e:
            # Usage errors of the option parser (click's or typer's own) keep their exit code 2 and text.
            if ctx.params.get("debug") or type(e).__module__.split(".")[0] in ("click", "typer"):
                raise
            name = ctx.invoked_subcommand or "cadence"
            typer.secho(f"{name}: unexpected {type(e).__name__} at {error_location(e)}; run with --debug for "
                        "the message and traceback", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    name="cadence",
    help="Lifecycle-marketing workbench: features, survival models, offline policy comparison, export, replay.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_OneLineErrors,
)

DEMO_DIR = Path("data/raw/demo-shop")


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of an unexpected error.")] = False,
) -> None:
    """Lifecycle-marketing workbench: features, survival models, offline policy comparison, export, replay."""


def _fail(message: str, code: int = 1) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def _gated(command: str, data_dir: Path, *, needs: Collection[str] = (), as_of: str | None = None) -> Iterator[Gate]:
    """Run the contract gate on ``data_dir`` before any work; one line per problem, exit 1.

    Warnings (valid but unusual data) go to stderr and the command goes on.
    The command reads ``gate.data_dir``: the conformed tables.
    """
    from cadence.data.gate import open_gate, parse_timestamp
    from cadence.data.validate import ContractError

    try:
        cutoff = None if as_of is None else parse_timestamp(as_of, "--as-of")
    except ValueError as e:
        _fail(f"{command}: {e}", 2)
    try:
        with open_gate(data_dir, needs=needs, as_of=cutoff) as gate:
            for w in gate.warnings:
                typer.secho(f"{command}: warning: {w}", fg=typer.colors.YELLOW, err=True)
            yield gate
    except ContractError as e:
        _fail("\n".join(f"{command}: {p}" for p in e.problems))


#: What a registered model name may be: it goes into MLflow's registry filter
#: (``name = '...'``), so a quote would rewrite the query.
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _check_model_name(command: str, name: str) -> None:
    if not MODEL_NAME.match(name):
        _fail(f"{command}: --model-name must be 1-100 letters, digits, '.', '_' or '-', "
              f"starting with a letter or digit", 2)


def _check_tracking(command: str, uri: str) -> None:
    """Refuse an unreachable MLflow server before any work (MLflow itself retries for minutes after it)."""
    import urllib.error
    import urllib.request

    if not uri.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5).close()  # noqa: S310 - http(s) only
    except urllib.error.HTTPError:
        return  # it answered: reachable (older servers have no /health)
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        _fail(f"{command}: cannot reach the MLflow tracking server at {uri} ({reason}); "
              f"start it or pass another --tracking-uri", 2)


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the shop into (replaced atomically; a "
                                                    "non-empty folder only if cadence wrote it, or --overwrite).")],
    customers: Annotated[int, typer.Option(help="Number of customers.", min=1)] = 20_000,
    days: Annotated[int, typer.Option(help="Length of the history in days.", min=1)] = 365,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same bytes.")] = 0,
    start: Annotated[str, typer.Option(help="First day of the history (UTC).")] = "2025-01-01",
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT even if it is a non-empty folder that "
                                                                "cadence did not write.")] = False,
) -> None:
    """Generate a synthetic shop with known ground truth (truth in OUT/_truth/)."""
    from cadence.data.io import check_output_dir
    from cadence.synthetic import ShopConfig
    from cadence.workflows.generate import write_shop

    try:
        cfg = ShopConfig(customers=customers, days=days, seed=seed, start=start)
        check_output_dir(out, overwrite=overwrite)  # an OutputError is a ValueError
    except ValueError as e:
        _fail(f"generate: {e}", 2)
    t0 = time.perf_counter()
    write_shop(cfg, out, progress=not quiet)
    typer.echo(f"wrote {out} ({customers:,} customers, {days} days, seed {seed}) in {time.perf_counter() - t0:.1f} s")


@app.command()
def validate(data_dir: Annotated[Path, typer.Argument(help="Folder of <table>.parquet or <table>.csv files.")]) -> None:
    """Check a data folder against the data contract; list every problem at once."""
    from cadence.data.validate import format_problems, inspect_dir

    found = inspect_dir(data_dir)
    for w in found.warnings:
        typer.secho(f"warning: {w}", fg=typer.colors.YELLOW, err=True)
    if found.problems:
        _fail(format_problems(found.problems))
    typer.echo(f"{data_dir}: no problems found" + (f" ({len(found.warnings)} warnings)" if found.warnings else ""))


@app.command()
def features(
    data_dir: Annotated[Path, typer.Argument(help="Data directory of contract tables.")],
    as_of: Annotated[str, typer.Option("--as-of", help="Cutoff (UTC unless an offset is given); nothing at or after it is read.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (replaced atomically; a non-empty folder only "
                                                    "if cadence wrote it, or --overwrite; never the input).")],
    engine: Annotated[str, typer.Option(help="duckdb (default) or spark.")] = "duckdb",
    since: Annotated[str | None, typer.Option(help="Only trigger candidates eligible at or after this.")] = None,
    spark_master: Annotated[str | None, typer.Option(help="Spark master URL (local[*] by default).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT even if it is a non-empty folder that "
                                                                "cadence did not write.")] = False,
    scores: Annotated[bool, typer.Option("--scores", help="Also write customer_scores.parquet: churn risk, P(alive), "
                                                          "expected purchases, CLV and repurchase due, from models "
                                                          "fitted on the orders before --as-of.")] = False,
) -> None:
    """Write customer_features and trigger_candidates (and, with --scores, customer_scores) as of a cutoff."""
    import pandas as pd

    from cadence.data.gate import parse_timestamp
    from cadence.data.io import OutputError, check_output_dir
    from cadence.data.validate import ContractError
    from cadence.features.engine import ENGINES
    from cadence.models.scores import ScoreInputError
    from cadence.workflows.features import build_features

    if engine not in ENGINES:
        _fail(f"features: unknown engine {engine!r}: choose one of {', '.join(ENGINES)}", 2)
    try:
        cutoff = pd.Timestamp(as_of)
        parse_timestamp(as_of, "--as-of")
        if since is not None:
            parse_timestamp(since, "--since")
    except ValueError as e:
        msg = str(e) if str(e).startswith("--") else f"--as-of {as_of!r} is not a timestamp"
        _fail(f"features: {msg}", 2)
    try:
        check_output_dir(out, inputs=[data_dir], overwrite=overwrite)
    except OutputError as e:
        _fail(f"features: {e}", 2)
    with _gated("features", data_dir, needs=("customers",), as_of=as_of) as gate:
        try:
            run = build_features(gate.data_dir, cutoff, out, engine=engine, since=since,  # type: ignore[arg-type]
                                 spark_master=spark_master, progress=not quiet, scores=scores)
        except ContractError as e:
            _fail(f"features: {e}")
        except (FileNotFoundError, ScoreInputError) as e:
            _fail(f"features: {e}")
    for model, why in run.score_failures.items():
        typer.secho(f"features: warning: scores: the {model} model was not fitted ({why}); its columns are empty",
                    fg=typer.colors.YELLOW, err=True)
    parts = ", ".join(f"{k}: {v:,} rows" for k, v in run.rows.items())
    typer.echo(f"wrote {out} ({parts}) as of {run.as_of} on {run.engine} in {sum(run.seconds.values()):.1f} s")


FIT_KINDS = ("churn", "repurchase", "btyd")


def _metrics_table(metrics: dict[str, object]) -> str:
    """Numeric metrics as an aligned two-column table (4 significant digits)."""
    rows = [(k, v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"  {k:<{width}}  {float(v):.4g}" for k, v in rows)  # type: ignore[arg-type]


@app.command()
def fit(
    kind: Annotated[str, typer.Argument(help="Model kind: churn, repurchase or btyd.")],
    data_dir: Annotated[Path, typer.Argument(help="Data directory of contract tables (orders; order_items for "
                                                  "repurchase).")],
    as_of: Annotated[str, typer.Option("--as-of", help="End of the calibration period (UTC unless an offset is "
                                                       "given); the model reads nothing at or after it.")],
    until: Annotated[str | None, typer.Option("--until", help="End of the holdout (exclusive); default: the day "
                                                              "after the last order.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as one JSON object (and nothing "
                                                         "else on stdout).")] = False,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, "
                                                          "else ./mlflow.db).")] = None,
) -> None:
    """Fit a model on the orders before --as-of, evaluate it on the later holdout, log it to MLflow.

    ``btyd``: BG/NBD and Gamma-Gamma (weeks); ``churn``: time to the next
    purchase (survival) next to BG/NBD; ``repurchase``: per customer and
    product repurchase intervals. Example:
    ``cadence fit btyd data/external/cdnow/sample --as-of 1997-10-01 --json``.
    """
    import json
    import math

    import pandas as pd

    from cadence.data.validate import ContractError
    from cadence.workflows.tracking import tracking_uri as resolve_uri

    if kind not in FIT_KINDS:
        _fail(f"fit: unknown kind {kind!r}: choose one of {', '.join(FIT_KINDS)}", 2)
    from cadence.data.gate import parse_timestamp

    for flag, value in (("--as-of", as_of), ("--until", until)):
        try:
            if value is not None:
                pd.Timestamp(value)
                parse_timestamp(value, flag)
        except ValueError:
            _fail(f"fit: {flag} {value!r} is not a timestamp", 2)
    if not data_dir.is_dir():
        _fail(f"fit: data directory {str(data_dir)!r} does not exist or is not a folder")
    uri = resolve_uri(tracking_uri)
    _check_tracking("fit", uri)
    needs = ("orders", "order_items") if kind == "repurchase" else ("orders",)
    # Libraries may print progress; with --json stdout carries the JSON object only.
    quiet = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    with _gated("fit", data_dir, needs=needs, as_of=as_of) as gate:
        from cadence.workflows.fitting import fit_model  # heavy (lifelines, mlflow): after the gate

        try:
            with quiet:
                result = fit_model(kind, gate.data_dir, as_of, holdout_until=until,  # type: ignore[arg-type]
                                   tracking_uri=uri)
        except (ValueError, FileNotFoundError, ContractError) as e:
            _fail(f"fit: {e}")
    if as_json:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in result.items()}
        typer.echo(json.dumps(clean, default=float))
        return
    holdout = f" with a holdout until {until}" if until else ""
    typer.echo(f"fit {kind} on {data_dir} as of {as_of}{holdout}:")
    typer.echo(_metrics_table(result))
    typer.echo(f"MLflow run {result['run_id']} at {uri}; data sha256 {result['data_sha256'][:12]}")


def parse_value(text: str) -> object:
    """A report parameter from the command line: JSON when it parses (numbers, true, null), else text."""
    import json

    if text in ("None", "none"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def report(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Report notebook shipped in cadence/reporting/notebooks/ (e.g. summary).")],
    out_dir: Annotated[Path, typer.Option(help="Where the HTML goes.")] = Path("reports"),
) -> None:
    """Execute a report notebook with papermill and write reports/<name>-<timestamp>.html (code hidden).

    Parameters are given as ``-p KEY VALUE`` (repeatable), e.g.
    ``cadence report summary -p data_dir data/raw/demo-shop -p horizon_days 60``.
    """
    from cadence.reporting import ReportError, render_report, report_notebook

    args, params = list(ctx.args), {}
    while args:
        flag = args.pop(0)
        if flag not in ("-p", "--parameter") or len(args) < 2:
            _fail(f"report: expected -p KEY VALUE, got {flag!r}", 2)
        key, value = args.pop(0), args.pop(0)
        params[key] = parse_value(value)
    try:
        report_notebook(name)  # an unknown report is named before its data is checked
    except ReportError as e:
        _fail(f"report: {e}")
    data = params.get("data_dir")
    gate = _gated("report", Path(str(data))) if data is not None else contextlib.nullcontext()
    with gate as g:
        if g is not None:
            params["data_dir"] = str(g.data_dir)
        try:
            path = render_report(name, params, out_dir=out_dir)
        except ReportError as e:
            _fail(f"report: {e}")
    typer.echo(str(path))


@app.command()
def evaluate(
    data_dir: Annotated[Path, typer.Argument(help="Data directory with messages and customers.")],
    policy: Annotated[list[str], typer.Option("--policy", help="Policy name (repeatable): rules, learned, or a tuned one.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print every estimate as JSON records.")] = False,
    estimator: Annotated[str, typer.Option(help="Estimator shown in the table (all are in --json).")] = "DR",
    seed: Annotated[int, typer.Option(help="Seed of the customer split and bootstrap.")] = 0,
    refits: Annotated[int, typer.Option(help="Refits of the reward model behind the direct method's interval "
                                              "(0: none; its interval then ignores the model's error).")] = 20,
    recommenders: Annotated[bool, typer.Option(
        "--recommenders", help="Also compare recommenders per stage on a time split (recently viewed, popularity "
                               "and the model: hit rate, recall, NDCG@10 with 95% intervals; off-policy value of "
                               "their item rules when the log randomised the items).")] = False,
) -> None:
    """Estimate each policy's open, click, conversion and net revenue per trigger, with lift over logging."""
    import json

    from cadence.data.validate import ContractError
    from cadence.evaluation.offline import summary_table

    with _gated("evaluate", data_dir, needs=("customers", "messages")) as gate:
        from cadence.workflows.policies import evaluate_named  # heavy: after the gate

        try:
            df = evaluate_named(gate.data_dir, list(policy), seed=seed, n_refit=refits or None)
            recs = _compare_recommenders(gate.data_dir, seed) if recommenders else None
        except (ValueError, FileNotFoundError, ContractError) as e:
            _fail(f"evaluate: {e}")
    if as_json:
        typer.echo(json.dumps({"rows_evaluated": df.attrs["rows_evaluated"], "rows_fitted": df.attrs["rows_fitted"],
                               "estimates": df.to_dict("records"),
                               **({} if recs is None else {"recommenders": _recommenders_json(recs)})},
                              default=float))
        return
    try:
        table = summary_table(df, estimator)
    except ValueError as e:
        _fail(f"evaluate: {e}", 2)
    typer.echo(f"{estimator} estimates per trigger on {df.attrs['rows_evaluated']:,} logged decisions"
               + (f" (learned policies fitted on {df.attrs['rows_fitted']:,} rows of other customers)"
                  if df.attrs["rows_fitted"] else "") + "; 95% intervals:")
    typer.echo(table.to_string(index=False))
    bad = df[~df["supported"]].drop_duplicates("policy")
    for _, row in bad.iterrows():
        typer.secho(f"{row['policy']}: {row['reason']}", fg=typer.colors.YELLOW)
    if recs is not None:
        _echo_recommenders(recs)


def _compare_recommenders(data_dir: Path, seed: int) -> Any:
    """``evaluate --recommenders``: the comparison of :func:`cadence.workflows.recommendations.compare_recommenders_named`."""
    from cadence.workflows.recommendations import compare_recommenders_named

    return compare_recommenders_named(data_dir, seed=seed)


def _recommenders_json(recs: Any) -> dict[str, Any]:
    return {"as_of": recs.as_of.isoformat(), "until": recs.until.isoformat(), "k": recs.k,
            "horizon_days": recs.horizon_days, "ranking": recs.ranking.to_dict("records"),
            "offline": None if recs.offline is None else recs.offline.to_dict("records"),
            "offline_note": recs.offline_note}


def _echo_recommenders(recs: Any) -> None:
    from cadence.reporting.recommendations import offline_table, ranking_table

    typer.echo("")
    typer.echo(f"Recommenders fitted before {recs.as_of:%Y-%m-%d}, judged per stage on the triggers to "
               f"{recs.until:%Y-%m-%d} against the next {recs.horizon_days:g} days' purchases (95% intervals, "
               "clustered by customer):")
    typer.echo(ranking_table(recs).to_string(index=False))
    table = offline_table(recs)
    if table is None:
        typer.echo(f"Off-policy value of item rules: {recs.offline_note}")
    else:
        typer.echo("Off-policy value per message of showing each recommender's top candidates (pseudo-inverse):")
        typer.echo(table.to_string(index=False))


@app.command()
def tune(
    data_dir: Annotated[Path, typer.Argument(help="Data directory with messages and customers.")],
    family: Annotated[str, typer.Option(help="Policy family: learned or rules.")] = "learned",
    trials: Annotated[int, typer.Option(help="Optuna trials.", min=1)] = 20,
    name: Annotated[str | None, typer.Option(help="Name to save the best policy under (default tuned-FAMILY).")] = None,
    max_weekly: Annotated[float, typer.Option(help="Most messages per customer per week a policy may send.")] = 3.0,
    seed: Annotated[int, typer.Option(help="Seed of the split, sampler and bootstrap.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Search a policy family's parameters for the best doubly-robust net revenue; save the winner."""
    import json

    from cadence.data.validate import ContractError
    from cadence.workflows.tracking import tracking_uri as resolve_uri

    _check_tracking("tune", resolve_uri(None))
    with _gated("tune", data_dir, needs=("customers", "messages")) as gate:
        from cadence.workflows.tune import tune_policy  # heavy: after the gate

        try:
            result = tune_policy(gate.data_dir, family, trials, name=name, max_weekly=max_weekly, seed=seed,
                                 progress=not as_json)
        except (ValueError, FileNotFoundError, ContractError) as e:
            _fail(f"tune: {e}")
    if as_json:
        typer.echo(json.dumps(result, default=str))
        return
    typer.echo(f"best of {result['trials']} trials ({result['feasible_trials']} within {max_weekly:g} "
               f"messages/customer/week): DR net revenue per trigger {result['best_dr_net_revenue']:.3f} "
               f"[{result['lower']:.3f}, {result['upper']:.3f}], {result['weekly_sends']:.2f} messages/customer/week")
    typer.echo(f"parameters: {json.dumps(result['best_params'])}")
    typer.echo(f"saved as policy {result['name']!r} ({result['path']}); MLflow run {result['run_id']}")


@app.command()
def simulate(
    data_dir: Annotated[Path, typer.Argument(help="Data directory with messages, customers and orders.")],
    policy: Annotated[str, typer.Option("--policy", help="Candidate policy: rules, learned, or a tuned one.")],
    baseline: Annotated[str, typer.Option("--baseline", help="Baseline: logging (the logged policy) or a name.")] = "logging",
    max_per_7d: Annotated[int, typer.Option(help="Frequency cap of the orchestrator (messages per 7 days; 0 = none).")] = 3,
    engine: Annotated[str, typer.Option(help="process (all cores) or spark.")] = "process",
    as_json: Annotated[bool, typer.Option("--json", help="Print the table and estimates as JSON.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the split, the replay and the response model.")] = 0,
    fatigue_matched: Annotated[bool, typer.Option(
        "--fatigue-matched", help="Judge with the estimators that also match each row on the policy's own sends of the "
        "last 7 days: no fatigue carryover bias, wider intervals.")] = False,
) -> None:
    """Replay history under a policy (behind the orchestrator) and print its lift over a baseline."""
    import json

    from cadence.data.validate import ContractError
    from cadence.policies.orchestrator import OrchestratorConfig
    from cadence.simulation.replay import format_table

    if engine not in ("process", "spark"):
        _fail(f"simulate: unknown engine {engine!r}: choose process or spark", 2)
    with _gated("simulate", data_dir, needs=("customers", "messages")) as gate:
        from cadence.workflows.policies import simulate_named  # heavy: after the gate

        try:
            res = simulate_named(gate.data_dir, policy, baseline, engine=engine, seed=seed,  # type: ignore[arg-type]
                                 progress=not as_json, config=OrchestratorConfig(max_per_7d=max_per_7d or None),
                                 fatigue_matched=fatigue_matched)
        except (ValueError, FileNotFoundError, ContractError) as e:
            _fail(f"simulate: {e}")
    if as_json:
        typer.echo(json.dumps({"meta": res["meta"], "table": res["table"].to_dict("records"),
                               "estimates": res["estimates"].to_dict("records")}, default=str))
        return
    t = res["table"]
    shown = format_table(t)
    typer.echo(f"Replay of {policy!r} against {baseline!r} on {res['meta']['rows']:,} logged triggers "
               f"({'doubly-robust, fatigue-matched' if fatigue_matched else 'doubly-robust'}; 95% intervals):")
    typer.echo(shown.to_string(index=False))


@app.command()
def export(
    data_dir: Annotated[Path, typer.Argument(help="Data directory with messages and customers.")],
    policy: Annotated[str, typer.Option("--policy", help="Policy to export: rules, learned, or a tuned one.")],
    model_name: Annotated[str, typer.Option("--model-name", help="Registered model name (a new version each time).")],
    epsilon: Annotated[float, typer.Option(help="Exploration probability of the served policy.", min=0.0, max=0.999)] = 0.05,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, "
                                                          "else ./mlflow.db).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split, bootstrap and exploration hash.")] = 0,
    replay: Annotated[bool, typer.Option("--replay", help="Also record the replay lift over the logged policy.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Register even when the log does not support the served "
                                                        "model's estimate (the version is tagged so).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    recommender: Annotated[str, typer.Option(help="Recommender whose per-stage item selection fills each send's "
                                                  "items ('default', a name, or 'none': the trigger's products).")]
    = "default",
    items: Annotated[int, typer.Option("--items", help="Products per message at most.", min=1, max=50)] = 3,
) -> None:
    """Fit, estimate and register a policy as an MLflow pyfunc model with alias 'challenger'.

    The estimates recorded are those of the model as served (exploration
    included); an estimate the overlap diagnostics call unsupported stops the
    export unless --force.
    """
    import json

    from cadence.data.validate import ContractError
    from cadence.workflows.tracking import tracking_uri as resolve_uri

    _check_model_name("export", model_name)
    _check_tracking("export", resolve_uri(tracking_uri))
    with _gated("export", data_dir, needs=("customers", "messages")) as gate:
        from cadence.workflows.export import export_policy  # heavy: after the gate

        try:
            res = export_policy(gate.data_dir, policy, model_name, tracking_uri=tracking_uri, epsilon=epsilon,
                                seed=seed, replay=replay, source=gate.source, force=force,
                                **_items_options(recommender, items))
        except (ValueError, FileNotFoundError, ContractError) as e:
            _fail(f"export: {e}")
    if as_json:
        typer.echo(json.dumps(res, default=str))
        return
    nr = res["estimates"]["net_revenue"]
    typer.echo(f"registered {res['model_name']} version {res['version']} (alias {res['alias']}) at {res['tracking_uri']}")
    typer.echo(f"DR net revenue per trigger as served (epsilon {epsilon:g}) {nr['value']:.3f} "
               f"[{nr['lower']:.3f}, {nr['upper']:.3f}], lift over logging {nr['lift']:+.3f} "
               f"[{nr['lift_lower']:+.3f}, {nr['lift_upper']:+.3f}]")
    if not res["supported"]:
        typer.secho(f"export: warning: registered with --force although {res['support_reason']} (tagged "
                    "cadence.estimate_supported = false)", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"items: {res['items']}")
    typer.echo(f"load it: mlflow.pyfunc.load_model('models:/{res['model_name']}@{res['alias']}'); "
               f"promote it: cadence promote {res['model_name']}")


def _items_options(recommender: str, items: int) -> dict[str, Any]:
    """``export --recommender/--items`` as :func:`~cadence.workflows.export.export_policy`'s arguments."""
    from cadence.workflows.recommendations import DEFAULT_RECOMMENDER, RECOMMENDERS

    name = {"default": DEFAULT_RECOMMENDER, "none": None}.get(recommender, recommender)
    if name is not None and name not in RECOMMENDERS:
        _fail(f"export: --recommender: expected default, none or one of {', '.join(RECOMMENDERS)}, "
              f"got {recommender!r}", 2)
    return {"recommender": name, "n_items": items}


@app.command()
def promote(
    model_name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str | None, typer.Option(help="Version to promote (default: the newest).")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Evaluation data (default: the one recorded "
                                                             "on the version); its fingerprint must match "
                                                             "the one recorded at export.")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, "
                                                          "else ./mlflow.db).")] = None,
    no_gate: Annotated[bool, typer.Option("--no-gate", help="Promote without judging the version (tagged "
                                                            "cadence.gate = skipped).")] = False,
    allow_other_data: Annotated[bool, typer.Option("--allow-other-data", help="Judge on evaluation data whose "
                                                   "fingerprint differs from the one recorded at export (both "
                                                   "are tagged).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Move alias 'champion' to a version if its net revenue beats the champion's (paired DR interval > 0).

    A name without a champion is judged against the logging policy: the
    first version must beat what wrote the log, or pass --no-gate.
    """
    import json

    from cadence.data.validate import ContractError
    from cadence.workflows.promote import promote as promote_version
    from cadence.workflows.promote import recorded_data_dir
    from cadence.workflows.tracking import tracking_uri as resolve_uri

    _check_model_name("promote", model_name)
    _check_tracking("promote", resolve_uri(tracking_uri))
    # The data the gate reads passes the contract gate first, named or recorded on the version.
    where = None if no_gate else data if data is not None else recorded_data_dir(model_name, version,
                                                                                  tracking_uri=tracking_uri)
    gate = (_gated("promote", where, needs=("customers", "messages"))
            if where is not None and (data is not None or where.exists()) else contextlib.nullcontext())
    with gate as g:
        try:
            res = promote_version(model_name, version, data_dir=None if g is None else g.data_dir,
                                  source=None if g is None else g.source, tracking_uri=tracking_uri,
                                  no_gate=no_gate, allow_other_data=allow_other_data)
        except (ValueError, FileNotFoundError, ContractError) as e:
            _fail(f"promote: {e}")
    if as_json:
        typer.echo(json.dumps(res, default=str))
    elif res["promoted"]:
        typer.echo(res["message"])
    if not res["promoted"]:
        _fail(f"promote: {res['message']}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where the demo shop is written.")] = DEMO_DIR,
    customers: Annotated[int, typer.Option(help="Customers in the demo shop.", min=1)] = 20_000,
    days: Annotated[int, typer.Option(help="Days of history.", min=1)] = 365,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the shop and feature folders even if "
                                                                "they are non-empty folders cadence did not write.")] = False,
) -> None:
    """Run every stage that exists, end to end, on a freshly generated shop."""
    from cadence.data.io import OutputError, check_output_dir
    from cadence.demo import DEMO_FEATURES_DIR, run_demo

    try:
        check_output_dir(out, overwrite=overwrite)
        check_output_dir(DEMO_FEATURES_DIR, inputs=[out], overwrite=overwrite)
    except OutputError as e:
        _fail(f"demo: {e}", 2)
    summary = run_demo(out, customers=customers, days=days, seed=seed, echo=typer.echo)
    if summary.problems:
        _fail("demo: the generated shop failed validation:\n" + "\n".join(summary.problems))


def main() -> None:
    """Entry point of the ``cadence`` script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
