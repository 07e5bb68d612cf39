"""The ``cadence`` command line: wires stages together, holds no logic of its own.

Examples
--------
``cadence generate --customers 2000 --days 90 --seed 1 --out data/raw/small``
``cadence validate data/raw/small``
``cadence demo``
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="cadence",
    help="Lifecycle-marketing workbench: features, survival models, offline policy comparison, export, replay.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEMO_DIR = Path("data/raw/demo-shop")


def _fail(message: str, code: int = 1) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the shop into (replaced atomically).")],
    customers: Annotated[int, typer.Option(help="Number of customers.", min=1)] = 20_000,
    days: Annotated[int, typer.Option(help="Length of the history in days.", min=1)] = 365,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same bytes.")] = 0,
    start: Annotated[str, typer.Option(help="First day of the history (UTC).")] = "2025-01-01",
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Generate a synthetic shop with known ground truth (truth in OUT/_truth/)."""
    from cadence.data.synthetic import ShopConfig, generate_shop

    try:
        cfg = ShopConfig(customers=customers, days=days, seed=seed, start=start)
    except ValueError as e:
        _fail(f"generate: {e}", 2)
    t0 = time.perf_counter()
    generate_shop(cfg, out, progress=not quiet)
    typer.echo(f"wrote {out} ({customers:,} customers, {days} days, seed {seed}) in {time.perf_counter() - t0:.1f} s")


@app.command()
def validate(data_dir: Annotated[Path, typer.Argument(help="Folder of <table>.parquet or <table>.csv files.")]) -> None:
    """Check a data folder against the data contract; list every problem at once."""
    from cadence.data.validate import format_problems, validate_dir

    problems = validate_dir(data_dir)
    if problems:
        _fail(format_problems(problems))
    typer.echo(f"{data_dir}: no problems found")


@app.command()
def features(
    data_dir: Annotated[Path, typer.Argument(help="Data directory of contract tables.")],
    as_of: Annotated[str, typer.Option("--as-of", help="Cutoff (UTC unless an offset is given); nothing at or after it is read.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (replaced atomically).")],
    engine: Annotated[str, typer.Option(help="duckdb (default) or spark.")] = "duckdb",
    since: Annotated[str | None, typer.Option(help="Only trigger candidates eligible at or after this.")] = None,
    spark_master: Annotated[str | None, typer.Option(help="Spark master URL (local[*] by default).")] = None,
) -> None:
    """Write customer_features and trigger_candidates as of a cutoff."""
    import pandas as pd

    from cadence.data.validate import ContractError
    from cadence.features.engine import ENGINES
    from cadence.features.pipeline import build_features

    if engine not in ENGINES:
        _fail(f"features: unknown engine {engine!r}: choose one of {', '.join(ENGINES)}", 2)
    try:
        cutoff = pd.Timestamp(as_of)
    except ValueError:
        _fail(f"features: --as-of {as_of!r} is not a timestamp", 2)
    try:
        run = build_features(data_dir, cutoff, out, engine=engine, since=since,  # type: ignore[arg-type]
                             spark_master=spark_master)
    except ContractError as e:
        _fail(f"features: {e}")
    except FileNotFoundError as e:
        _fail(f"features: {e}")
    parts = ", ".join(f"{k}: {v:,} rows" for k, v in run.rows.items())
    typer.echo(f"wrote {out} ({parts}) as of {run.as_of} on {run.engine} in {sum(run.seconds.values()):.1f} s")


def _parse_value(text: str) -> object:
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
    name: Annotated[str, typer.Argument(help="Report notebook in notebooks/reports/ (e.g. summary).")],
    out_dir: Annotated[Path, typer.Option(help="Where the HTML goes.")] = Path("reports"),
) -> None:
    """Execute a report notebook with papermill and write reports/<name>-<timestamp>.html (code hidden).

    Parameters are given as ``-p KEY VALUE`` (repeatable), e.g.
    ``cadence report summary -p data_dir data/raw/demo-shop -p horizon_days 60``.
    """
    from cadence.reporting import ReportError, render_report

    args, params = list(ctx.args), {}
    while args:
        flag = args.pop(0)
        if flag not in ("-p", "--parameter") or len(args) < 2:
            _fail(f"report: expected -p KEY VALUE, got {flag!r}", 2)
        key, value = args.pop(0), args.pop(0)
        params[key] = _parse_value(value)
    try:
        path = render_report(name, params, out_dir=out_dir)
    except ReportError as e:
        _fail(f"report: {e}")
    typer.echo(str(path))


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where the demo shop is written.")] = DEMO_DIR,
    customers: Annotated[int, typer.Option(help="Customers in the demo shop.", min=1)] = 20_000,
    days: Annotated[int, typer.Option(help="Days of history.", min=1)] = 365,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Run every stage that exists, end to end, on a freshly generated shop."""
    from cadence.demo import run_demo

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
