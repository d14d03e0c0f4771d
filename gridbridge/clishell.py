"""The shell around the typer app: what every command shares, set once on the click tree.

``tidy(command)`` walks the built click tree and gives every command ``--config/-c`` (so it
works before or after the subcommand), plain metavars (``JOB``, ``INTEGER``, none on flags,
instead of typer's ``{job}`` and ``<bool>``), and ``run(command)`` turns every usage error into
one line, ``error: ...``, with exit status 2. ``log_handler`` writes ``serve``'s log as text or
JSON lines.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import typer
from typer.core import TyperArgument, TyperOption

__all__ = ["fail", "log_handler", "run", "tidy"]


def _base(name: str) -> type[Exception]:
    """A click exception class by name, from typer's public ``BadParameter`` (recent typer
    releases carry their own copy of click, older ones use click itself)."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


_UsageError = _base("UsageError")
_ClickException = _base("ClickException")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` (one line per line of it) on stderr and exit ``code``."""
    for line in str(message).strip().splitlines() or [""]:
        print(f"error: {line}", file=sys.stderr)
    sys.exit(code)


def tidy(root: Any) -> Any:
    """Give every command below ``root`` the root's ``--config`` and plain metavars."""
    config = next(p for p in root.params if p.name == "config")
    for command in _walk(root):
        if command is not root and not hasattr(command, "commands"):
            command.params.append(_config_option(config))
        for param in command.params:
            _plain_metavar(command, param)
        command.get_help_option = _flag_help(command.get_help_option)
        if command.help:
            command.help = _unwrap(command.help)
    return root


def _unwrap(text: str) -> str:
    """A docstring's paragraphs each on one line (rich help keeps the source's line breaks)."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def _flag_help(made: Callable[[typer.Context], Any]) -> Callable[[typer.Context], Any]:
    """``--help`` is made per context; a flag shows no metavar."""

    def get_help_option(ctx: typer.Context) -> Any:
        option = made(ctx)
        if option is not None:
            option.metavar = ""
        return option

    return get_help_option


def _walk(command: Any) -> list[Any]:
    found = [command]
    if hasattr(command, "commands"):
        for sub in command.commands.values():
            found += _walk(sub)
    return found


def _config_option(root_option: Any) -> Any:
    """A copy of the root's ``--config`` that stores its value in ``ctx.obj`` (the root's
    callback has already run by the time a subcommand parses its options)."""
    option = copy.copy(root_option)
    option.expose_value = False
    option.envvar = None
    option.callback = _store_config
    return option


def _store_config(ctx: typer.Context, _param: Any, value: Any) -> Any:
    if value is not None and isinstance(ctx.obj, dict):
        ctx.obj["config_path"] = Path(value)
    return value


_TYPE_NAMES = {"int": "INTEGER", "float": "FLOAT", "str": "TEXT", "Path": "PATH",
               "int range": "INTEGER", "float range": "FLOAT", "datetime": "DATETIME"}


def _plain_metavar(command: Any, param: Any) -> None:
    if param.metavar is not None:
        return
    if isinstance(param, TyperArgument):
        name = (param.name or "arg").upper()
        usage = name if param.required else f"[{name}]"
        more = "..." if param.nargs != 1 else ""
        param.metavar = name + more
        # typer writes a required argument as {name} in the usage line
        patched: Any = param
        patched.get_usage_pieces = _pieces(usage + more)
        patched.display_type_rich = _no_type  # its type is in the help text
    elif isinstance(param, TyperOption):
        if param.is_flag or param.count:
            param.metavar = ""
            return
        label = param.display_type(typer.Context(command)).removeprefix("<").removesuffix(">")
        if label.startswith("list[") and label.endswith("]"):
            label = label[5:-1]
        param.metavar = _TYPE_NAMES.get(label, f"[{label}]" if "|" in label else label.upper())


def _no_type(ctx: typer.Context) -> None:
    return None


def _pieces(text: str) -> Callable[[typer.Context], list[str]]:
    return lambda _ctx: [text]


def run(command: Any, args: list[str] | None = None) -> int:
    """Run ``command`` as ``gridbridge``; usage errors are one line and exit 2."""
    try:
        code = command.main(args=args, prog_name="gridbridge", standalone_mode=False)
    except _UsageError as exc:
        usage: Any = exc
        if type(exc).__name__ == "NoArgsIsHelpError":  # typer's rich help is already printed
            text = usage.format_message()
            if text:
                print(text, file=sys.stderr)
            return 2
        message = usage.format_message()
        if usage.ctx is not None and not isinstance(exc, typer.BadParameter):
            message += f" (see {usage.ctx.command_path} --help)"
        fail(message)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except _ClickException as exc:
        failed: Any = exc
        fail(failed.format_message(), failed.exit_code)
    return code if isinstance(code, int) else 0


_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime"}


class _JsonLines(logging.Formatter):
    """One JSON object a line: time (UTC ISO 8601), level, logger, message, and the fields a
    call passed in ``extra``."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
                "level": record.levelname.lower(), "logger": record.name,
                "message": record.getMessage()}
        line.update({k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def log_handler(fmt: str) -> logging.Handler:
    """A stderr handler writing text lines (UTC times) or JSON lines (``fmt="json"``)."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(_JsonLines())
    else:
        text = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                 "%Y-%m-%dT%H:%M:%SZ")
        text.converter = time.gmtime
        handler.setFormatter(text)
    return handler
