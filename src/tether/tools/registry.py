"""Tools a model may call: typed async functions with a pydantic args model, a kind, an
approval rule and a quota, and the allowlists that say who may use which.

The registry is the only way a tool call reaches code: a name the model invents is an
`UnknownTool`, arguments are validated before any work, and the JSON schema the provider
sees is generated from the same args model that validates the call.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeAlias, TypeVar, get_type_hints

from pydantic import BaseModel, ValidationError

from tether.errors import ConfigError, InvalidToolArgs, ToolNotAllowed, UnknownTool
from tether.models.chat import ToolSpec
from tether.security.redaction import redact

ToolKind: TypeAlias = Literal["read", "write"]

A = TypeVar("A", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)

#: A result longer than this is cut before the model sees it; the audit row keeps the size.
MAX_RESULT_CHARS = 4000


@dataclass(frozen=True)
class ToolContext:
    """Who is calling and the key that makes a repeated call a no-op.

    `idempotency_key` is the same every time one model tool call is executed (after a
    retry, a duplicated approval or a crash and resume): a write tool must make its side
    effect conditional on it, which is what turns at-least-once into exactly-once."""

    tenant: str
    principal: str
    run_id: str
    call_id: str
    idempotency_key: str
    principals: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Tool(Generic[A, R]):
    name: str
    description: str
    args_model: type[A]
    result_model: type[R]
    fn: Callable[[A, ToolContext], Awaitable[R]]
    kind: ToolKind = "read"
    requires_approval: bool = False
    #: Calls allowed per run (None: only the run's step bound limits it).
    quota: int | None = None
    #: Whether the text it returns comes from outside the system (documents, the web,
    #: stored user input). Such text taints the run: see `agent.loop`.
    returns_untrusted: bool = True
    timeout_s: float = 30.0

    @functools.cached_property
    def _spec(self) -> ToolSpec:
        schema = self.args_model.model_json_schema()
        schema.pop("title", None)
        return ToolSpec(name=self.name, description=self.description, parameters=schema)

    def spec(self) -> ToolSpec:
        """The schema the provider sees; built once, as the agent offers it every step."""
        return self._spec

    def parse(self, raw: str) -> A:
        """The model's JSON arguments, validated; nothing runs on a failure."""
        try:
            return self.args_model.model_validate_json(raw or "{}")
        except ValidationError as exc:
            errors = [
                f"{'.'.join(map(str, e['loc'])) or '(args)'}: {e['msg']}" for e in exc.errors()
            ]
            raise InvalidToolArgs(
                f"{self.name}: invalid arguments: {'; '.join(errors)}", errors=errors
            ) from exc

    async def call(self, args: A, context: ToolContext) -> R:
        return await self.fn(args, context)


AnyTool: TypeAlias = Tool[Any, Any]


def safe_args(args: BaseModel) -> dict[str, Any]:
    """Arguments as shown to an approver and written to the audit log: secrets and PII
    in string values redacted."""

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return redact(value)
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        return value

    return {k: clean(v) for k, v in args.model_dump(mode="json").items()}


def compact(result: BaseModel, limit: int = MAX_RESULT_CHARS) -> tuple[str, int]:
    """(the JSON the model sees, its full size): compact separators, cut at `limit`."""
    text = json.dumps(result.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=False)
    if len(text) <= limit:
        return text, len(text)
    return text[:limit] + f"…[truncated {len(text) - limit} chars]", len(text)


def tool(
    *,
    kind: ToolKind,
    requires_approval: bool = False,
    quota: int | None = None,
    name: str | None = None,
    description: str | None = None,
    returns_untrusted: bool = True,
    timeout_s: float = 30.0,
) -> Callable[[Callable[[Any, ToolContext], Awaitable[Any]]], AnyTool]:
    """Make a tool from `async def fn(args: ArgsModel, ctx: ToolContext) -> ResultModel`;
    the args and result models come from the annotations, the description from the
    docstring."""

    def wrap(fn: Callable[[Any, ToolContext], Awaitable[Any]]) -> AnyTool:
        if not inspect.iscoroutinefunction(fn):
            raise ConfigError(f"tool {fn.__name__} must be an async function")
        # The defining scope's locals resolve models declared next to a tool in a function
        # (string annotations under `from __future__ import annotations`).
        hints = get_type_hints(fn, localns=sys._getframe(1).f_locals)
        params = list(inspect.signature(fn).parameters)
        args_model = hints.get(params[0]) if params else None
        result_model = hints.get("return")
        for what, model in (("arguments", args_model), ("result", result_model)):
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise ConfigError(f"tool {fn.__name__}: {what} must be a pydantic model")
        return Tool(
            name=name or fn.__name__,
            description=description or inspect.cleandoc(fn.__doc__ or ""),
            args_model=args_model,  # type: ignore[arg-type]
            result_model=result_model,  # type: ignore[arg-type]
            fn=fn,
            kind=kind,
            requires_approval=requires_approval,
            quota=quota,
            returns_untrusted=returns_untrusted,
            timeout_s=timeout_s,
        )

    return wrap


@dataclass(frozen=True)
class Allowlist:
    """Which tools a route may offer, narrowed per tenant. Anything not listed is denied:
    a route with no entry offers no tools."""

    routes: Mapping[str, frozenset[str]] = field(default_factory=dict)
    tenants: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def allows(self, tool_name: str, *, route: str, tenant: str) -> bool:
        if tool_name not in self.routes.get(route, frozenset()):
            return False
        narrowed = self.tenants.get(tenant)
        return narrowed is None or tool_name in narrowed


class ToolRegistry:
    def __init__(self, tools: Iterable[AnyTool] = (), *, allowlist: Allowlist | None = None):
        self._tools: dict[str, AnyTool] = {}
        for t in tools:
            self.register(t)
        #: Without an allowlist every registered tool is allowed on every route.
        self.allowlist = allowlist

    def register(self, t: AnyTool) -> None:
        if t.name in self._tools:
            raise ConfigError(f"tool {t.name!r} is registered twice")
        ToolSpec(name=t.name)  # validates the name the provider will see
        self._tools[t.name] = t

    def names(self) -> list[str]:
        return sorted(self._tools)

    def get(self, name: str) -> AnyTool:
        found = self._tools.get(name)
        if found is None:
            raise UnknownTool(f"no tool named {name[:64]!r} is registered")
        return found

    def allowed(self, name: str, *, route: str, tenant: str) -> AnyTool:
        """The tool, if this route and tenant may call it."""
        found = self.get(name)
        if self.allowlist is not None and not self.allowlist.allows(
            name, route=route, tenant=tenant
        ):
            raise ToolNotAllowed(f"tool {name!r} is not allowed on {route!r} for this tenant")
        return found

    def offered(self, *, route: str, tenant: str) -> list[AnyTool]:
        """The tools whose schemas the model is shown on this route."""
        return [
            t
            for n, t in sorted(self._tools.items())
            if self.allowlist is None or self.allowlist.allows(n, route=route, tenant=tenant)
        ]
