"""``dynharness campaign``: run a matrix of tests (or a CI fault suite) with a live table.

Exit codes: 0 every expectation holds, 1 an expectation broke (each is
printed), 3 a cell could not run or bad input, 130 interrupted by SIGINT,
SIGTERM or SIGHUP (the running cell is healed, finished cells are kept;
``--resume DIR`` continues).

``--jobs K`` / ``--scheduler URL`` run cells side by side on Dask
(``harness.campaign.dask_pool``; Dask is imported only then), ``--shard i/n``
runs a part for a CI matrix and ``campaign merge DIR...`` joins the parts
(``harness.campaign.shards``).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Mapping

from harness.errors import UserError
from harness.signals import stop_on_signals

STATE_STYLE = {"pending": "dim", "running": "bold cyan", "done": "green", "error": "bold red", "timeout": "bold red",
               "interrupted": "yellow"}
VERDICT_STYLE = {"valid": "green", "invalid": "red", "unknown": "yellow"}
#: At most this many local Dask workers (each runs a whole cluster at a time).
MAX_LOCAL_JOBS = 64


def live_table(camp: Any, running: str | None, since: float, started: Mapping[str, float] | None = None,
               width: int = 240) -> Any:
    """The rich table of cells: state (for how long a cell runs: ``running``/``since``, or
    ``started`` per cell when several run), the worker when on Dask, verdict, headline counts
    and expectations, fitted to ``width`` columns: the cell and its verdict always whole, then
    state and expectations, the metrics, the axes (the cell's name repeats them) and the worker
    left out in that order as the terminal narrows (:mod:`harness.cli.table_fit`)."""
    from rich.text import Text

    from harness.cli.table_fit import FitColumn, fitted_table
    from harness.reports.summary import METRICS, expectation_text, label_axes, measured, on_workers, rows

    all_rows = rows(camp)
    axes = label_axes(all_rows)
    done = sum(1 for r in all_rows if r.state in ("done", "error", "timeout"))
    workers = on_workers(all_rows)
    shown = measured(all_rows)   # only the metrics some cell measured (a register campaign has no lost writes column)
    columns = [FitColumn("cell"), *(FitColumn(a, 4) for a in axes), FitColumn("state", 1),
               *((FitColumn("worker", 5),) if workers else ()), FitColumn("verdict"),
               *(FitColumn(METRICS[i][1], 3, justify="right") for i in shown), FitColumn("expect", 1)]
    starts = dict(started or {})
    if running:
        starts[running] = since
    table_rows = []
    for r in all_rows:
        state = r.state + (f" {time.monotonic() - starts[r.cell]:.0f}s" if r.state == "running" and r.cell in starts else "")
        texts = r.cells_text()
        on = (r.worker or "",) if workers else ()
        table_rows.append((r.cell, *(str(r.labels.get(a, "")) for a in axes), Text(state, STATE_STYLE.get(r.state, "")),
                           *on, Text(r.verdict or "-", VERDICT_STYLE.get(r.verdict or "", "")), *(texts[i] for i in shown),
                           Text(expectation_text(r), "red" if r.expect_broken else "")))
    return fitted_table(columns, table_rows, width, title=f"campaign {camp.defn.name}: {done}/{len(all_rows)} cells\n{camp.dir}",
                        title_justify="left")


def cmd_campaign(args: argparse.Namespace) -> int:
    """Run (or resume, or list, or merge) a campaign and return its exit code."""
    from rich.console import Console

    from harness.campaign import CampaignRun, load_campaign, validate_cells
    from harness.runs import histories_root

    files = list(args.file or [])
    if files[:1] == ["merge"]:
        return cmd_merge(files[1:], args)
    if args.out:
        raise UserError("--out is for: dynharness campaign merge DIR... --out DIR")
    if len(files) > 1:
        raise UserError(f"give one campaign FILE, not {len(files)} (to join shard folders: dynharness campaign merge DIR...)")
    histories = histories_root(args.histories)
    resume = None
    if args.resume:
        resume = CampaignRun.load(args.resume)
        defn = resume.defn
        if files or args.builtin:
            raise UserError("--resume takes the campaign from its folder; do not also give a file or --builtin")
    else:
        if bool(files) == bool(args.builtin):
            raise UserError("give exactly one of: a campaign FILE, --builtin NAME, --resume DIR")
        defn = load_campaign(files[0] if files else None, builtin=args.builtin)
    only = args.cell or None
    if only:
        unknown = sorted(set(only) - {c.id for c in defn.cells})
        if unknown:
            raise UserError(f"no cell {unknown[0]!r} in campaign {defn.name} (cells: {', '.join(c.id for c in defn.cells)})")
    shard, only = _shard(args, defn, resume, only)
    jobs, scheduler = _parallel(args)
    console = Console()
    if args.dry_run:
        return dry_run(defn, only, console)
    validate_cells(defn, only)
    with stop_on_signals():   # SIGINT, SIGTERM, SIGHUP: the running cells are stopped and healed, finished cells kept
        if jobs is None and scheduler is None:
            return _run_live(defn, args, histories, resume, only, console, shard=shard)
        from harness.campaign.dask_pool import DaskPool

        _say_host_sharing(defn, only, console, jobs, scheduler)
        with DaskPool.open(jobs=jobs, scheduler=scheduler, histories=histories,
                           shared_histories=args.shared_histories) as pool:
            return _run_live(defn, args, histories, resume, only, console, shard=shard, pool=pool)


def _shard(args: argparse.Namespace, defn: Any, resume: Any, only: list[str] | None) -> tuple[Any, Any]:
    """(shard, the cells to run) from --shard, or from a resumed shard folder."""
    from harness.campaign.shards import parse_shard, shard_cells

    if args.shard is not None:
        if only or resume:
            raise UserError("--shard picks the cells itself: do not also give --cell or --resume")
        i, n = parse_shard(args.shard, len(defn.cells))
        return (i, n), shard_cells(defn, i, n)
    if resume is not None and resume.shard and not only:
        return resume.shard, shard_cells(defn, *resume.shard)
    return None, only


def _parallel(args: argparse.Namespace) -> tuple[int | None, str | None]:
    """--jobs and --scheduler, checked: (jobs or None, scheduler URL or None)."""
    from harness.limits import MAX_CELLS, number

    scheduler = args.scheduler
    if scheduler is not None and not re.fullmatch(r"(tcp|tls|ws|wss|ucx)://[^\s/]+:\d{1,5}", scheduler):
        raise UserError(f"--scheduler takes a Dask scheduler address like tcp://HOST:8786, got {scheduler!r}")
    if args.shared_histories and scheduler is None:
        raise UserError("--shared-histories is for --scheduler (local workers always share this host's histories)")
    jobs = args.jobs
    if jobs is not None:
        jobs = number("--jobs", jobs, 1, MAX_CELLS if scheduler else MAX_LOCAL_JOBS, integer=True)
        if jobs == 1 and scheduler is None:
            jobs = None   # --jobs 1 is the serial path: no Dask at all
    return jobs, scheduler


def _say_host_sharing(defn: Any, only: Any, console: Any, jobs: int | None, scheduler: str | None) -> None:
    """On a host that cannot keep local runs apart, say which cells will run alone (local_share)."""
    from harness.campaign import cell_specs
    from harness.backends.local_share import ALONE, host_need

    if scheduler is not None:
        return
    needs = [host_need(s) for s in cell_specs(defn, only).values() if not isinstance(s, UserError)]
    alone = needs.count(ALONE)
    if alone:
        console.print(f"note: this host cannot keep local runs apart (no node cgroups: needs root, cgroup2 and "
                      f"iptables' cgroup match), so the {alone} local cell(s) with partition or loss faults run "
                      f"alone on it, one at a time; the other cells run up to {jobs} at once", soft_wrap=True)


def _run_live(defn: Any, args: argparse.Namespace, histories: Path, resume: Any, only: Any, console: Any,
              shard: Any = None, pool: Any = None) -> int:
    """Run the campaign with the live table (or plain lines) and report its outcome."""
    from rich.console import Console

    from harness.campaign import run_campaign

    state: dict[str, Any] = {"camp": None, "started": {}, "seen": {}}

    def on_update(camp: Any, _running: str | None) -> None:
        state["camp"] = camp
        for cid, r in camp.cells.items():   # what changed since the last update (several cells run with --jobs)
            if state["seen"].get(cid) == (r.state, r.worker):
                continue
            state["seen"][cid] = (r.state, r.worker)
            if r.state == "running":
                state["started"][cid] = time.monotonic()
                if not live_on:
                    console.print(f"[cyan]running[/] {cid}" + (f" on {r.worker}" if r.worker else ""))
            elif cid in state["started"]:
                del state["started"][cid]
                if not live_on:
                    console.print(f"  {cid}: {r.state} {r.verdict or ''} ({r.seconds or 0:.0f} s) {r.error or ''}")

    live_on = console.is_terminal and not args.no_display
    if not console.is_terminal:
        console = Console(width=max(console.width, 240))  # CI logs: keep the summary table on one line per cell
    kwargs = dict(histories=histories, resume=resume, on_update=on_update, only=only, pool=pool, shard=shard)
    if live_on:
        from rich.live import Live

        with Live(console=console, refresh_per_second=1, get_renderable=lambda: (
                live_table(state["camp"], None, 0.0, state["started"], console.width) if state["camp"] else "starting...")):
            camp = run_campaign(defn, **kwargs)
    else:
        camp = run_campaign(defn, **kwargs)
        console.print(live_table(camp, None, time.monotonic(), width=console.width))
    return report_outcome(camp, args, console)


def cmd_merge(dirs: list[str], args: argparse.Namespace) -> int:
    """``campaign merge DIR... [--out DIR]``: one campaign folder from shard folders, its table and exit code."""
    from rich.console import Console

    from harness.campaign.shards import merge_campaigns
    from harness.runs import histories_root

    if args.builtin or args.resume or args.cell or args.shard or args.jobs or args.scheduler or args.dry_run:
        raise UserError("campaign merge takes campaign folders and --out, --histories, --junit, --markdown only")
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 240))
    camp = merge_campaigns(dirs, histories=histories_root(args.histories), out=args.out,
                           say=lambda m: console.print(f"note: {m}", soft_wrap=True))
    console.print(live_table(camp, None, time.monotonic(), width=console.width))
    return report_outcome(camp, args, console)


def dry_run(defn: Any, only: list[str] | None, console: Any) -> int:
    """List the cells with their overrides, each checked exactly as its run would check it:
    an invalid cell is shown with its one-line error (exit 3), an allowed fault without room
    with the faults that will not happen."""
    from rich.markup import escape

    from harness.campaign import cell_specs
    from harness.spec import unscheduled_faults

    specs = cell_specs(defn, only)
    for c in defn.cells:
        if c.id not in specs:
            continue
        ov = " ".join(f"{k}={v}" for k, v in c.overrides.items())
        lines = [f"[bold]{c.id}[/]  {escape(ov)}"] + ([f"    expect: {escape('; '.join(c.expect))}"] if c.expect else [])
        spec = specs[c.id]
        missing = () if isinstance(spec, UserError) else unscheduled_faults(spec)
        if isinstance(spec, UserError):
            lines.append(f"    [bold red]invalid:[/] {escape(str(spec))}")
        elif missing:
            lines.append(f"    [yellow]will not happen (no room, allowed):[/] {', '.join(missing)}")
        for line in lines:
            console.print(line, soft_wrap=True)   # an error stays one line, whatever the width
    invalid = sum(isinstance(s, UserError) for s in specs.values())
    console.print(f"{len(specs)} cells" + (f", [bold red]{invalid} invalid[/]" if invalid else ""))
    return 3 if invalid else 0


def report_outcome(camp: Any, args: argparse.Namespace, console: Any) -> int:
    """Print what broke, copy JUnit / Markdown where asked, and return the exit code."""
    for path, name in ((args.junit, "junit.xml"), (args.markdown, "summary.md")):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(camp.dir / name, path)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as fh:
            fh.write((camp.dir / "summary.md").read_text(encoding="utf-8") + "\n")
    for cid, e in camp.broken():
        console.print(f"[bold red]BROKEN[/] {cid}: {e['expect']} — {e['message']}")
    for cid, r in camp.cells.items():
        if r.state in ("error", "timeout"):
            console.print(f"[bold red]{r.state.upper()}[/] {cid}: {r.error}")
    code = camp.exit_code()
    console.print(f"campaign folder: {camp.dir}  (report: {camp.dir / 'index.html'})")
    if code == 130:
        console.print(f"interrupted; finished cells are kept. Continue with: dynharness campaign --resume {camp.dir}")
    elif code == 0:
        console.print("[green]all expectations hold[/]")
    return code


def register(sub: Any) -> None:
    """Add the ``campaign`` subcommand (``campaign merge DIR...`` included)."""
    p = sub.add_parser("campaign", help="run a matrix of tests / a CI fault suite",
                       description="Run every cell of a campaign (TOML matrix of N/R/W, modes, workloads, faults), "
                                   "store each run, and write histories/campaigns/<name>/<time>/ with campaign.json, "
                                   "summary.md, junit.xml and index.html. See docs/campaigns.md.",
                       epilog="examples:\n  dynharness campaign --builtin riak-2013\n"
                              "  dynharness campaign --builtin ci-smoke --junit test-artifacts/ci-smoke.xml\n"
                              "  dynharness campaign my-matrix.toml --dry-run\n"
                              "  dynharness campaign --resume histories/campaigns/nrw-matrix/20260101T120000\n"
                              "  dynharness campaign --builtin nrw-matrix --jobs 2          # 2 cells at once (local Dask)\n"
                              "  dynharness campaign my-matrix.toml --scheduler tcp://HOST:8786    # your Dask cluster\n"
                              "  dynharness campaign my-matrix.toml --shard 2/4              # CI matrix job 2 of 4\n"
                              "  dynharness campaign merge shards/*/campaigns/my-matrix/*   # one folder, one exit code\n"
                              "exit codes: 0 expectations hold, 1 an expectation broke, 3 a cell failed to run,\n"
                              "  130 interrupted (SIGINT, SIGTERM or SIGHUP)",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", nargs="*", metavar="FILE", help="campaign TOML file; or: merge DIR... (join shard folders)")
    p.add_argument("--builtin", metavar="NAME", help="a built-in campaign: riak-2013, nrw-matrix, ci-smoke")
    p.add_argument("--resume", metavar="DIR", help="continue an interrupted campaign folder (re-runs unfinished cells)")
    p.add_argument("--cell", action="append", metavar="ID", help="run only this cell (repeatable)")
    p.add_argument("--histories", metavar="DIR", help="where runs are stored (default histories/)")
    p.add_argument("--junit", metavar="PATH", help="also copy the JUnit XML here (for CI)")
    p.add_argument("--markdown", metavar="PATH", help="also copy the Markdown summary here")
    p.add_argument("--dry-run", action="store_true", help="list the cells and their overrides, run nothing")
    p.add_argument("--no-display", action="store_true", help="plain progress lines instead of the live table")
    p.add_argument("--no-live", dest="no_display", action="store_true", help=argparse.SUPPRESS)  # its old name
    p.add_argument("--jobs", type=int, metavar="K", help="run K cells at once on a local Dask cluster (default 1: "
                                                       "one after another, no Dask); with --scheduler: at most K")
    p.add_argument("--scheduler", metavar="URL", help="send cells to this Dask scheduler (tcp://HOST:8786); "
                                                      "its workers run dynharness on their hosts (docs/campaigns.md)")
    p.add_argument("--shared-histories", action="store_true",
                   help="with --scheduler: every worker writes to this same histories folder (a shared path), "
                        "so runs are not shipped back as tarballs")
    p.add_argument("--shard", metavar="I/N", help="run only shard I of N (every N-th cell), for CI matrices; "
                                                  "join the folders with: campaign merge")
    p.add_argument("--out", metavar="DIR", help="campaign merge: the merged campaign folder "
                                                "(default histories/campaigns/<name>/<time>)")
    p.set_defaults(func=cmd_campaign)
