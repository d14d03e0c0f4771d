"""The shell around the typer app: what every command shares, set once on the built tree.

Invariant: every usage error is one line on stderr, ``error: ...``, with exit status 2, and
no help screen shows typer's type artefacts (``{job}``, ``<bool>``, ``<int range>``). All of
it goes through typer's public API: :class:`Group`, :class:`Command` and :class:`Argument`
subclass ``typer.core``'s classes and override their methods (``parse_args``,
``get_help_option``, ``get_usage_pieces``, ``display_type_rich``); errors are read from
``typer.TyperException``; nothing is patched. Tested with typer 0.29 (pinned in
pyproject.toml)::

    typer.main.get_command(app) ─> tidy(root) ─> run(root, args)
        every leaf becomes a Command:            usage errors ─> "error: ... (see CMD --help)"
          + the root's --config (after the       a bad value  ─> "error: Invalid value ..."
            subcommand too), plain metavars,     other errors ─> "error: ...", their own code
            arguments without a type column      no arguments ─> the help, exit 2
"""

from __future__ import annotations

import copy
import inspect
import sys
from pathlib import Path
from typing import Any, NoReturn, Protocol, runtime_checkable

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

__all__ = ["Command", "Group", "fail", "run", "tidy"]

ClickContext = Any
"""The context typer hands its commands: ``typer.Context``'s base class, which typer does not
export (commands see it as ``typer.Context``)."""


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` (one line per line of it) on stderr and exit ``code``."""
    for line in str(message).strip().splitlines() or [""]:
        print(f"error: {line}", file=sys.stderr)
    sys.exit(code)


@runtime_checkable
class _InContext(Protocol):
    """A usage error as click documents it: ``ctx`` is the context it was raised in (None
    when the parser could not tell, as for "Option '-c' requires an argument")."""

    ctx: Any


def _message(exc: typer.TyperException) -> str:
    """The error's one line; a usage error raised in a command's context (other than a bad
    value) says which ``--help`` to read."""
    # typer checks choices through pydantic, whose ValueError text starts "Value error, "
    message = exc.format_message().replace(": Value error, ", ": ", 1)
    if (exc.exit_code == 2 and not isinstance(exc, typer.BadParameter)
            and isinstance(exc, _InContext) and exc.ctx is not None):
        message += f" (see {exc.ctx.command_path} --help)"
    return message


class Argument(TyperArgument):
    """A positional argument shown as its metavar alone: ``JOB`` or ``[JOB]`` in the usage
    line, no type column in the help (its help text says what it is)."""

    def display_type_rich(self, ctx: ClickContext) -> str | None:
        return None

    def get_usage_pieces(self, ctx: ClickContext) -> list[str]:
        name = (self.metavar or self.name.upper()).removesuffix("...")
        more = "..." if self.nargs != 1 else ""
        return [(name if self.required else f"[{name}]") + more]

    @classmethod
    def of(cls, arg: TyperArgument) -> Argument:
        """``arg`` with the same settings (this CLI's arguments set no shell completion)."""
        envvar = arg.envvar if arg.envvar is None or isinstance(arg.envvar, str) else list(
            arg.envvar)
        return cls(param_decls=[arg.name], type_descriptor=arg.type_descriptor,
                   required=arg.required, default=arg.default, callback=arg.callback,
                   nargs=arg.nargs, metavar=arg.metavar or arg.name.upper() + (
                       "..." if arg.nargs != 1 else ""),
                   expose_value=arg.expose_value, is_eager=arg.is_eager, envvar=envvar,
                   show_default=arg.show_default, show_choices=arg.show_choices,
                   show_envvar=arg.show_envvar, help=arg.help, hidden=arg.hidden,
                   min=arg.min, max=arg.max, rich_help_panel=arg.rich_help_panel)


class Command(TyperCommand):
    """A leaf command with this CLI's manners (see the module docstring)."""

    def __init__(self, name: str | None, **attrs: Any) -> None:
        attrs["help"] = _unwrap(attrs.get("help"))
        super().__init__(name, **attrs)
        self.params = [Argument.of(p) if isinstance(p, TyperArgument) else p
                       for p in self.params]
        _plain_metavars(self)

    @classmethod
    def adopt(cls, cmd: TyperCommand, config: TyperOption) -> Command:
        """``cmd`` as a :class:`Command`, taking the root's ``--config`` as well."""
        return cls(cmd.name, context_settings=dict(cmd.context_settings),
                   callback=cmd.callback, params=[*cmd.params, _config_option(config)],
                   help=cmd.help, epilog=cmd.epilog, short_help=cmd.short_help,
                   options_metavar=cmd.options_metavar, add_help_option=cmd.add_help_option,
                   no_args_is_help=cmd.no_args_is_help, hidden=cmd.hidden,
                   deprecated=bool(cmd.deprecated), rich_markup_mode=cmd.rich_markup_mode,
                   rich_help_panel=cmd.rich_help_panel)

    def get_help_option(self, ctx: ClickContext) -> TyperOption | None:
        return _flag(super().get_help_option(ctx))


class Group(TyperGroup):
    """A group with this CLI's manners: given no subcommand it prints its help and exits 2."""

    def __init__(self, **attrs: Any) -> None:
        attrs["help"] = _unwrap(attrs.get("help"))
        super().__init__(**attrs)
        _plain_metavars(self)

    def parse_args(self, ctx: ClickContext, args: list[str]) -> list[str]:
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            text = ctx.get_help()  # rich help is printed as it is made, and "" is returned
            if text:
                typer.echo(text, err=True)
            ctx.exit(2)
        return super().parse_args(ctx, args)

    def get_help_option(self, ctx: ClickContext) -> TyperOption | None:
        return _flag(super().get_help_option(ctx))


def tidy(root: Group) -> Group:
    """Make every leaf command below ``root`` a :class:`Command` that also takes the root's
    ``--config`` (so it works before or after the subcommand)."""
    config = next(p for p in root.params if p.name == "config")
    if not isinstance(config, TyperOption):
        raise TypeError("the root's --config is not an option")
    _adopt_leaves(root, config)
    _plain_metavars(root)  # typer adds --install-completion after making the group
    return root


def _adopt_leaves(group: TyperGroup, config: TyperOption) -> None:
    for name, sub in list(group.commands.items()):
        if isinstance(sub, TyperGroup):
            _adopt_leaves(sub, config)
        elif isinstance(sub, TyperCommand) and not isinstance(sub, Command):
            group.commands[name] = Command.adopt(sub, config)


def _unwrap(text: str | None) -> str | None:
    """A docstring's paragraphs each on one line (rich help keeps the source's line breaks)."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def _flag(option: TyperOption | None) -> TyperOption | None:
    """``--help`` shows no metavar, as no flag does."""
    if option is not None:
        option.metavar = ""
    return option


def _config_option(root_option: TyperOption) -> TyperOption:
    """A copy of the root's ``--config`` that stores its value in ``ctx.obj`` (the root's
    callback has already run by the time a subcommand parses its options)."""
    option = copy.copy(root_option)
    option.expose_value = False
    option.envvar = None
    option.callback = _store_config
    return option


def _store_config(ctx: ClickContext, _param: Any, value: Any) -> Any:
    if value is not None and isinstance(ctx.obj, dict):
        ctx.obj["config_path"] = Path(value)
    return value


_TYPE_NAMES = {"int": "INTEGER", "float": "FLOAT", "str": "TEXT", "Path": "PATH",
               "int range": "INTEGER", "float range": "FLOAT", "datetime": "DATETIME"}


def _plain_metavars(command: TyperCommand | TyperGroup) -> None:
    """Options show ``INTEGER``, ``TEXT``, ``[a|b]`` instead of ``<int range>``, ``<str>``,
    ``<a|b>``; flags show none."""
    for param in command.params:
        if not isinstance(param, TyperOption) or param.metavar is not None:
            continue
        if param.is_flag or param.count:
            param.metavar = ""
            continue
        label = param.display_type(typer.Context(command)).removeprefix("<").removesuffix(">")
        if label.startswith("list[") and label.endswith("]"):
            label = label[5:-1]
        param.metavar = _TYPE_NAMES.get(label, f"[{label}]" if "|" in label else label.upper())


def run(command: Group, args: list[str] | None = None) -> int:
    """Run ``command`` as ``gridbridge``; an error is one line, a usage error exits 2."""
    try:
        code = command.main(args=args, prog_name="gridbridge", standalone_mode=False)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except typer.TyperException as exc:
        fail(_message(exc), exc.exit_code)
    return code if isinstance(code, int) else 0
