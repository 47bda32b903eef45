"""The built-in tools: `search_docs` (read), `create_task` (write, approval required) and
`get_task` (read)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tether.errors import ToolError
from tether.models.embedder import Embedder
from tether.retrieval.retrieve import RetrievalConfig, retrieve
from tether.store.protocol import Scope, Store
from tether.tools.registry import AnyTool, ToolContext, tool
from tether.tools.tasks import ExtractedTask, Task, TaskStore


class SearchArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=500)
    k: int = Field(default=4, ge=1, le=10)


class Hit(BaseModel):
    chunk_id: str
    source_id: str
    title: str
    score: float
    text: str


class SearchResult(BaseModel):
    hits: list[Hit]


class TaskRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_id: str = Field(min_length=1, max_length=64)


class TaskResult(BaseModel):
    task: Task | None
    created: bool = False


def search_docs(
    store: Store,
    embedder: Embedder,
    *,
    config: RetrievalConfig = RetrievalConfig(),
    snippet_chars: int = 600,
) -> AnyTool:
    @tool(kind="read", name="search_docs", returns_untrusted=True)
    async def run(args: SearchArgs, ctx: ToolContext) -> SearchResult:
        """Search the knowledge base; returns the best matching passages with their ids."""
        scope = Scope(ctx.tenant, ctx.principals or frozenset({ctx.principal}))
        found = await retrieve(store, embedder, args.query, scope=scope, k=args.k, config=config)
        return SearchResult(
            hits=[
                Hit(
                    chunk_id=s.chunk.id,
                    source_id=s.chunk.source_id,
                    title=s.chunk.title,
                    score=round(s.score, 4),
                    text=s.chunk.text[:snippet_chars],
                )
                for s in found
            ]
        )

    return run


def create_task(tasks: TaskStore, *, requires_approval: bool = True) -> AnyTool:
    @tool(
        kind="write",
        name="create_task",
        requires_approval=requires_approval,
        quota=5,
        returns_untrusted=False,
    )
    async def run(args: ExtractedTask, ctx: ToolContext) -> TaskResult:
        """Create a task (title, owner, due_date YYYY-MM-DD, priority low|med|high)."""
        try:
            task, created = tasks.create(
                ctx.tenant,
                args,
                idempotency_key=ctx.idempotency_key,
                principal=ctx.principal,
                run_id=ctx.run_id,
            )
        except PermissionError as exc:
            raise ToolError(str(exc)) from exc
        return TaskResult(task=task, created=created)

    return run


def get_task(tasks: TaskStore) -> AnyTool:
    @tool(kind="read", name="get_task", returns_untrusted=True)
    async def run(args: TaskRef, ctx: ToolContext) -> TaskResult:
        """Fetch a task by id."""
        return TaskResult(task=tasks.get(ctx.tenant, args.task_id))

    return run
