"""`tuneforge help TOPIC`: help on a verb, or on a config key from its field description."""

from __future__ import annotations

import difflib

import click

from tuneforge.config.fields import wiring_of
from tuneforge.config.root import field_index, field_info, type_label


def describe_key(key: str) -> str:
    """Type, default, section and description of one config key."""
    info = field_info(key)
    kind = type_label(info.annotation)
    text = f"{key}  ({field_index()[key]} section)\n  type: {kind}\n  default: {info.default!r}\n"
    text += f"  {info.description}"
    wiring = wiring_of(info)
    text += f"\n  class: {wiring.label() if wiring else 'unclassified'}"
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if extra.get("why"):
        text += f"\n  LLaMA-Factory default: {extra['lf_default']!r}. {extra['why']}"
    return text


def help_for(ctx: click.Context, group: click.Group, topic: str | None) -> str:
    """The help for a verb, a config key, or the top-level help when no topic is given."""
    if topic is None:
        return group.get_help(click.Context(group, info_name="tuneforge"))
    command = group.get_command(ctx, topic)
    if command is not None:
        return command.get_help(click.Context(command, info_name=f"tuneforge {topic}"))
    if topic in field_index():
        return describe_key(topic)
    from tuneforge.config.renames import RENAMED

    if topic in RENAMED:
        new = RENAMED[topic][0]
        return f"`{topic}` is the transformers 4 name of `{new}`; it is read as `{new}`.\n\n{describe_key(new)}"
    close = difflib.get_close_matches(topic, list(field_index()) + group.list_commands(ctx), n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return f"No verb or config key named `{topic}`.{hint}"
