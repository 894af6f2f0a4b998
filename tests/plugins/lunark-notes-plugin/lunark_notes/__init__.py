"""A Lunark plugin with two tools: ``save_note`` (asks first) and ``count_notes`` (read-only).

Registered through the ``lunark.tools`` entry point in ``pyproject.toml``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from lunark.tools.base import FunctionTool, ToolContext

__all__ = ["NOTES", "count_notes", "save_note", "tools"]

NOTES: list[str] = []
"""Saved notes, in this process only."""


class SaveNoteArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=500, description="The note to save, as the user said it.")


class NoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


async def _save(args: SaveNoteArgs, ctx: ToolContext) -> dict[str, str]:
    NOTES.append(args.text)
    return {"saved": args.text}


async def _count(args: NoArgs, ctx: ToolContext) -> dict[str, int]:
    return {"count": len(NOTES)}


save_note = FunctionTool(
    name="save_note",
    description="Save a note for the user.",
    args_schema=SaveNoteArgs,
    fn=_save,
    approval="always",
    summarize=lambda args: f"Save the note {args.text!r}",
)

count_notes = FunctionTool(
    name="count_notes",
    description="How many notes the user has saved.",
    args_schema=NoArgs,
    fn=_count,
    approval="never",
)

tools = [save_note, count_notes]
