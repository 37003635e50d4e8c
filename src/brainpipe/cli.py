"""The ``brainpipe`` command: run the study, validate and inspect intermediate files, rebuild the report.

brainpipe run [SNAKEMAKE ARGS...]   run the workflow (defaults: the repo's Snakefile and default profile);
                                    --configfile F runs exactly the study F
brainpipe validate FILE...          check files against their contracts (one line per problem)
brainpipe info FILE                 dims, variables, attributes and provenance of a file
brainpipe report [--results DIR]    rebuild RESULTS/report/index.html from every branch's results found there
                                    (brainpipe.layout; the same inputs the workflow's report rule gets)
brainpipe check-config [FILE]       validate a study config (one line per problem)
brainpipe init DIR... [--out FILE]  find the datasets in folders and write a commented study file (brainpipe.scan);
                                    exit code 0 only when the study validates and nothing it needs is missing
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import brainpipe
from brainpipe.errors import BrainpipeError, InputError


def _configfiles(extra: list[str]) -> list[str]:
    """The study files named in snakemake arguments (``--configfile A B``, ``--configfiles=A``)."""
    out: list[str] = []
    taking = False
    for a in extra:
        name, eq, value = a.partition("=")
        if name in ("--configfile", "--configfiles"):
            taking = not eq
            out += [value] if eq else []
        elif taking and not a.startswith("-"):
            out.append(a)
        else:
            taking = False
    return out


def _cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    cmd = [sys.executable, "-m", "snakemake"]
    if not any(a in ("-s", "--snakefile") for a in extra) and not Path("Snakefile").exists():
        print(
            "brainpipe: error: no Snakefile here; run from the brainpipe checkout or pass --snakefile",
            file=sys.stderr,
        )
        return 2
    # --configfile F runs exactly the study F (the Snakefile reads config/config.yaml only without one)
    for f in _configfiles(extra):
        if not Path(f).is_file():
            print(
                f"brainpipe: error: --configfile {f}: no such study file; give the path of your study YAML "
                "(e.g. a copy of config/config.yaml)",
                file=sys.stderr,
            )
            return 2
    if not any(a.startswith(("--cores", "-c", "--jobs", "-j", "--executor", "-e")) for a in extra):
        cmd += ["--cores", "all"]
    cmd += extra
    print("+ " + " ".join(cmd), file=sys.stderr)
    return subprocess.call(cmd)


def _cmd_validate(args: argparse.Namespace, extra: list[str]) -> int:
    from brainpipe.data import validate_file

    bad = 0
    for f in args.files:
        problems = validate_file(f, args.kind)
        if problems:
            bad += 1
            for p in problems:
                print(p)
        elif not args.quiet:
            print(f"{f}: ok")
    return 1 if bad else 0


def _cmd_info(args: argparse.Namespace, extra: list[str]) -> int:
    from brainpipe.data import open_dataset, summarize
    from brainpipe.data.stale import stale_reasons

    for f in args.files:
        ds = open_dataset(f)
        print(f"{f}\n{summarize(ds)}")
        reasons = stale_reasons(f)
        print(
            "stale: " + "; ".join(reasons) + " (re-run the workflow)"
            if reasons
            else "stale: no (up to date with its inputs)"
        )
    return 0


def _page_title(page: Path) -> str | None:
    """The title of an existing study page (the one the workflow wrote), so a rebuild keeps the study's title."""
    import html
    import re

    try:
        head = page.read_bytes()[:8192].decode("utf-8", errors="replace")
    except OSError:
        return None
    m = re.search(r"<title>(.*?)</title>", head, re.S)
    return html.unescape(m.group(1)).strip() or None if m else None


def _cmd_report(args: argparse.Namespace, extra: list[str]) -> int:
    from brainpipe import layout
    from brainpipe.report import DEFAULT_TITLE, branch_files, write_report

    res = Path(args.results)
    if not res.is_dir():
        raise InputError(f"{res}: no such results folder; run the study first or pass --results DIR")
    # the same inputs the workflow's report rule gets (brainpipe.layout), for what exists under the results folder
    inputs = layout.report_inputs(layout.discover(res), root=res)
    if not any(v for k, v in inputs.items() if k.endswith("metrics")):
        raise InputError(
            f"{res}: no metrics files in the results layout (see brainpipe.layout); run the study first"
        )
    out = Path(args.output or layout.path("report_page", root=res))
    title = args.title or _page_title(Path(layout.path("report_page", root=res))) or DEFAULT_TITLE
    write_report(out, branch_files(inputs), title=title, benchmarks_dir=args.benchmarks)
    print(out)
    return 0


def _cmd_check_config(args: argparse.Namespace, extra: list[str]) -> int:
    from brainpipe.config import load_config

    load_config(args.config, args.schema)
    print(f"{args.config}: ok")
    return 0


def _cmd_config_docs(args: argparse.Namespace, extra: list[str]) -> int:
    from brainpipe.config._reference import check_reference, reference_path, write_reference

    out = Path(args.output) if args.output else reference_path()
    if args.check:
        problem = check_reference(out)
        if problem:
            print(f"brainpipe: {problem}", file=sys.stderr)
            return 1
        print(f"{out}: up to date")
        return 0
    print(write_reference(out))
    return 0


def _cmd_init(args: argparse.Namespace, extra: list[str]) -> int:
    from brainpipe.scan import check_study, scan, study_yaml

    out = Path(args.out)
    if out.exists() and not args.force:
        print(
            f"brainpipe: error: {out} exists; pass --force to overwrite it or choose another --out",
            file=sys.stderr,
        )
        return 2
    name = args.name or (out.name[: -len(".yaml")] if out.name.endswith(".yaml") else out.stem) or "my-study"
    found = scan(args.dirs)
    text = study_yaml(found, name=name, sources=args.dirs)
    from brainpipe.data.atomic import atomic_output

    with atomic_output(out, check=False) as tmp:  # --force was checked above; a study is the user's own file
        Path(tmp).write_text(text)
    width = max([len(f.name) for f in found] + [4])
    print(f"{'name':<{width}}  {'modality':<8}  {'format':<13}  what the files say")
    for f in found:
        what = f.summary if f.modality else "could be " + " or ".join(f"{m} {fmt}" for m, fmt in f.choices)
        print(f"{f.name:<{width}}  {f.modality or '?':<8}  {f.format or '?':<13}  {what}")
    print(f"{len(found)} dataset(s) found, {len(found.skipped)} path(s) skipped; study written to {out}")
    problems = [
        f"{out}: key '{q.full_key or f'{f.modality}.datasets.{f.name}.{q.key}'}': could not determine: {q.hint}"
        for f in found
        if f.modality
        for q in f.missing
    ]
    if not problems:
        problems = check_study(text, source=str(out))
    for line in problems:
        print(line)
    if problems:
        return 1
    print(f"{out}: ok (brainpipe check-config {out}; snakemake --configfile {out} -n)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="brainpipe", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--version", action="version", version=f"brainpipe {brainpipe.__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the workflow with snakemake; other arguments go to snakemake")
    r.set_defaults(func=_cmd_run)
    v = sub.add_parser("validate", help="check files against their data contracts")
    v.add_argument("files", nargs="+")
    v.add_argument("--kind", default=None, help="expected contract (default: the one named in each file)")
    v.add_argument("-q", "--quiet", action="store_true", help="print problems only")
    v.set_defaults(func=_cmd_validate)
    i = sub.add_parser("info", help="describe a file: dims, variables, attributes, provenance")
    i.add_argument("files", nargs="+")
    i.set_defaults(func=_cmd_info)
    rep = sub.add_parser("report", help="rebuild the HTML report from existing results (no model is re-run)")
    rep.add_argument("--results", default="results")
    rep.add_argument("--output", default=None, help="default: RESULTS/report/index.html")
    rep.add_argument("--benchmarks", default="benchmarks")
    rep.add_argument(
        "--title", default=None, help="default: the title of RESULTS/report/index.html, if there is one"
    )
    rep.set_defaults(func=_cmd_report)
    c = sub.add_parser("check-config", help="validate a study config file")
    c.add_argument("config", nargs="?", default="config/config.yaml")
    c.add_argument("--schema", default="workflow/schemas/config.schema.yaml")
    c.set_defaults(func=_cmd_check_config)
    ini = sub.add_parser("init", help="find the datasets in folders and write a commented study file")
    ini.add_argument("dirs", nargs="+", metavar="DIR", help="folders (or files) holding recordings")
    ini.add_argument("--out", default="study.yaml", help="the study file to write (default: study.yaml)")
    ini.add_argument("--name", default=None, help="study name (default: from --out)")
    ini.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    ini.set_defaults(func=_cmd_init)
    d = sub.add_parser("config-docs", help="regenerate config/README.md from the schemas' descriptions")
    d.add_argument("--check", action="store_true", help="only check: exit 1 when the committed file differs")
    d.add_argument("--output", default=None, help="default: config/README.md beside the schema")
    d.set_defaults(func=_cmd_config_docs)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if argv[:1] == ["run"]:  # everything after 'run' belongs to snakemake
        return _cmd_run(argparse.Namespace(), argv[1:])
    args = parser.parse_args(argv)
    try:
        return args.func(args, [])
    except BrainpipeError as err:
        print(f"brainpipe: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
