"""The `kubectl-promote` entry point: the command group and the one list of commands.

A new command is a module with a click command and one line in COMMANDS.
"""

from __future__ import annotations

import click

from promotion_operator import __version__
from promotion_operator.plugin import approve, history, promote, rollback, status, versions
from promotion_operator.plugin.session import kube_options

COMMANDS: list[click.Command] = [
    versions.command,
    promote.command,
    history.command,
    rollback.command,
    status.command,
    approve.command,
]
DEFAULT_COMMAND = promote.command.name
"""`kubectl promote ENV VERSION` is `kubectl promote to ENV VERSION`."""


class PromoteGroup(click.Group):
    """A group whose first word may be an Environment: then it runs the default command."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """Run DEFAULT_COMMAND when the first argument is not a command's name."""
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = [str(DEFAULT_COMMAND), *args]
        return super().resolve_command(ctx, args)


@click.group(
    cls=PromoteGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="kubectl promote ENV VERSION --reason TEXT is short for kubectl promote to ....",
)
@kube_options
@click.version_option(__version__, prog_name="kubectl-promote")
def cli() -> None:
    """Promote a tested version from one Environment to the next (Promotion Operator)."""


for _command in COMMANDS:
    cli.add_command(_command)


def main() -> None:
    """Console script `kubectl-promote` (kubectl finds it on PATH as `kubectl promote`)."""
    cli(prog_name="kubectl promote")
