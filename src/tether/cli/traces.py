"""`tether traces list | show | export`: the embedded span store, read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from tether.errors import ConfigError
from tether.observability.spanstore import SpanRecord, SpanStore
from tether.settings import load_settings
from tether.testing.call_fixture import CallFixture, recorded_call

app = typer.Typer(help="Inspect stored request traces.", no_args_is_help=True)

#: Attributes shown on a span's line in `show` (the rest with --attributes).
_HEADLINE = (
    "gen_ai.request.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "tether.cost_usd",
    "tether.cache.hit",
    "tether.prompt.id",
    "tether.retrieved.ids",
    "tether.context.ids",
    "tether.cited.ids",
    "tether.declined",
    "error.type",
)


def _store() -> SpanStore:
    path = load_settings().traces_db
    if path.strip().lower() in ("", "off"):
        raise ConfigError("the span store is off (TETHER_TRACES_DB=off)")
    if not Path(path).exists():
        raise ConfigError(f"no span store at {path} yet: answer a question first")
    return SpanStore(Path(path))


@app.command("list")
def list_command(
    limit: Annotated[int, typer.Option(min=1, help="How many traces, newest first.")] = 20,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's traces.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The latest request traces: when, how long, status, tokens and cost."""
    store = _store()
    try:
        traces = store.traces(limit, tenant=tenant)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps([t.model_dump(mode="json") for t in traces], indent=2))
        return
    table = Table(
        "trace",
        "started (UTC)",
        "request",
        "ms",
        "status",
        "spans",
        "tokens in/out",
        "USD",
        "tenant",
    )
    for t in traces:
        table.add_row(
            t.trace_id,
            t.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            t.name,
            f"{t.duration_ms:.1f}",
            t.status,
            str(t.spans),
            f"{t.input_tokens}/{t.output_tokens}",
            f"{t.cost_usd:.6f}",
            t.tenant or "-",
        )
    Console().print(table if traces else "no traces stored yet")


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _label(span: SpanRecord, root_start: int, everything: bool) -> str:
    offset = (span.start_ns - root_start) / 1e6
    status = (
        "" if span.status != "error" else f" [red]error: {escape(span.status_message or '')}[/]"
    )
    keys = sorted(span.attributes) if everything else [k for k in _HEADLINE if k in span.attributes]
    details = ", ".join(f"{k}={escape(_value(span.attributes[k]))}" for k in keys)
    events = "".join(
        f"\n  [yellow]event[/] {escape(e['name'])} {escape(json.dumps(e.get('attributes', {})))}"
        for e in span.events
    )
    return (
        f"[bold]{escape(span.name)}[/] [dim]+{offset:.1f} ms[/] {span.duration_ms:.1f} ms{status}"
        + (f"\n  [dim]{details}[/]" if details else "")
        + events
    )


@app.command("show")
def show_command(
    trace_id: Annotated[
        str, typer.Argument(help="Trace id (or a unique prefix of 6+ characters).")
    ],
    attributes: Annotated[bool, typer.Option("--attributes", help="Show every attribute.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the spans as JSON.")] = False,
) -> None:
    """One trace as a tree of spans with timings, tokens, cost and chunk ids."""
    store = _store()
    try:
        spans = store.spans(trace_id)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps([s.model_dump() for s in spans], indent=2))
        return
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if s.parent_id is None or s.parent_id not in ids]
    children: dict[str, list[SpanRecord]] = {}
    for s in spans:
        if s.parent_id in ids:
            children.setdefault(s.parent_id, []).append(s)
    start = min(s.start_ns for s in spans)
    tree = Tree(f"trace {spans[0].trace_id}")

    def add(node: Tree, span: SpanRecord) -> None:
        branch = node.add(_label(span, start, attributes))
        for child in children.get(span.span_id, []):
            add(branch, child)

    for root in roots:
        add(tree, root)
    tokens_in = sum(int(s.attributes.get("gen_ai.usage.input_tokens", 0)) for s in spans)
    tokens_out = sum(int(s.attributes.get("gen_ai.usage.output_tokens", 0)) for s in spans)
    cost = sum(float(s.attributes.get("tether.cost_usd", 0.0)) for s in spans)
    console = Console()
    console.print(tree)
    console.print(
        f"[dim]{len(spans)} spans; {tokens_in} input / {tokens_out} output tokens; ${cost:.6f}[/]"
    )


@app.command("export")
def export_command(
    trace_id: Annotated[str, typer.Argument(help="Trace id (or a unique prefix).")],
    fixture: Annotated[Path, typer.Option(help="Write the trace's model calls here (JSON).")],
) -> None:
    """Turn a trace's model calls into a replay fixture for a regression test
    (`tether.testing.call_fixture.ReplayChatModel`)."""
    store = _store()
    try:
        spans = store.spans(trace_id)
    finally:
        store.close()
    calls = [
        call
        for s in spans
        if s.attributes.get("gen_ai.operation.name") == "chat"
        and (call := recorded_call(s.span_id, s.attributes)) is not None
    ]
    if not calls:
        raise ConfigError(
            "this trace has no model call with recorded content (extractive answers make "
            "none; content is recorded only with TETHER_TRACE_CONTENT=true)"
        )
    CallFixture(trace_id=spans[0].trace_id, calls=calls).write(fixture)
    typer.echo(f"wrote {len(calls)} model call(s) to {fixture}")
