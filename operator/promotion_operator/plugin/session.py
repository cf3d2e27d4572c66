"""What every command shares: kubectl's flags, the API client, consoles, exit codes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.text import Text

from promotion_operator.plugin.kube import Kube, KubeError, KubeFlags
from promotion_operator.plugin.render import clean, console

EXIT_OK = 0
EXIT_FAILED = 1  # the promotion failed or was superseded, or a command could not finish
EXIT_USAGE = 2  # click's own code for bad flags
EXIT_NOT_CONFIRMED = 3  # answered no, or no terminal to ask and no --yes
EXIT_INTERRUPTED = 130  # Ctrl-C while following (the promotion goes on)

F = TypeVar("F", bound=Callable[..., Any])


class PluginError(click.ClickException):
    """A failure to report in one line and exit with `code`."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = code  # type: ignore[misc]  # click reads it per instance

    def show(self, file: Any = None) -> None:
        """Print `error: <message>` to stderr."""
        del file  # always stderr, through rich
        console(stderr=True).print(
            Text.assemble(("error:", "bold red"), " ", clean(self.format_message()))
        )


@dataclass
class Session:
    """Flags resolved once per invocation; the API client is made on first use."""

    flags: KubeFlags
    out: Console = field(default_factory=console)
    err: Console = field(default_factory=lambda: console(stderr=True))
    _kube: Kube | None = None

    @property
    def kube(self) -> Kube:
        """The API client for the chosen kubeconfig, context and namespace."""
        if self._kube is None:
            try:
                self._kube = Kube(self.flags)
            except KubeError as error:
                raise PluginError(str(error)) from None
        return self._kube

    @property
    def namespace(self) -> str:
        """`-n`, else the context's namespace, else `default`."""
        return self.flags.namespace or self.kube.namespace

    def warn(self, message: str) -> None:
        """A note on stderr that does not stop the command."""
        self.err.print(Text.assemble(("warning:", "yellow"), " ", clean(message)))


def _merge(ctx: click.Context, name: str, value: str | tuple[str, ...] | None) -> None:
    """Flags may come before or after the command (`kubectl promote -n x status` and
    `kubectl promote status -n x`); the one nearest the command wins."""
    if value is not None and value != ():
        ctx.ensure_object(dict)[name] = value


def kube_options(command: F) -> F:
    """Add kubectl's `-n/--namespace`, `--context`, `--kubeconfig`, `--as`, `--as-group`
    to a command."""

    def remember(
        name: str,
    ) -> Callable[[click.Context, click.Parameter, str | tuple[str, ...] | None], None]:
        def callback(
            ctx: click.Context, _param: click.Parameter, value: str | tuple[str, ...] | None
        ) -> None:
            _merge(ctx.find_root(), name, value)

        return callback

    command = click.option(
        "--as-group",
        "as_groups",
        multiple=True,
        expose_value=False,
        callback=remember("as_groups"),
        help="Group to impersonate, repeatable; needs --as (as kubectl).",
    )(command)
    for flag, name, text in (
        ("--kubeconfig", "kubeconfig", "Path to the kubeconfig file (as kubectl)."),
        ("--context", "context", "The kubeconfig context to use (as kubectl)."),
        ("--as", "as_user", "User to impersonate for the operation (as kubectl)."),
    ):
        command = click.option(
            flag, name, default=None, expose_value=False, callback=remember(name), help=text
        )(command)
    return click.option(
        "-n",
        "--namespace",
        "namespace",
        default=None,
        expose_value=False,
        callback=remember("namespace"),
        help="The namespace (default: the context's, as kubectl).",
    )(command)


def session_of(ctx: click.Context) -> Session:
    """The Session of this invocation, built from the flags seen on any level."""
    root = ctx.find_root()
    found: Session | None = root.meta.get("promotion-session")
    if found is None:
        given = root.ensure_object(dict)
        found = Session(
            KubeFlags(
                kubeconfig=given.get("kubeconfig"),
                context=given.get("context"),
                namespace=given.get("namespace"),
                as_user=given.get("as_user"),
                as_groups=tuple(given.get("as_groups") or ()),
            )
        )
        root.meta["promotion-session"] = found
    return found


def with_session(command: F) -> F:
    """Pass the Session as the command's first argument."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return command(session_of(click.get_current_context()), *args, **kwargs)

    return wrapper  # type: ignore[return-value]
