"""What a prompt is: an id, a version, typed inputs, a typed output, and a renderer."""

from __future__ import annotations

from typing import ClassVar, Generic, TypeVar

from pydantic import BaseModel

from tether.types import Message

In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out", bound=BaseModel)


class Prompt(Generic[In, Out]):
    """Subclasses set `id`, `version`, `inputs`, `output` and implement `render`.

    A prompt is code: changing its text means a new version file, so evals can compare
    versions and a feature can pin one (and roll back by config).
    """

    id: ClassVar[str]
    version: ClassVar[int]
    inputs: type[In]
    output: type[Out]

    @property
    def key(self) -> str:
        return f"{self.id}@{self.version}"

    def render(self, values: In) -> tuple[Message, ...]:
        raise NotImplementedError


def data_block(label: str, items: list[tuple[dict[str, str], str]]) -> str:
    """Retrieved text wrapped in a clearly labelled block. Attribute values and bodies are
    escaped so a document cannot close the block and speak as the instructions."""

    def esc(text: str) -> str:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    parts = [f"<{label}>"]
    for attrs, body in items:
        rendered = " ".join(f'{k}="{esc(v).replace(chr(34), "&quot;")}"' for k, v in attrs.items())
        parts.append(f"<item{' ' + rendered if rendered else ''}>\n{esc(body)}\n</item>")
    parts.append(f"</{label}>")
    return "\n".join(parts)
