"""Entry point of ``rationalize``: the command group, its default subcommand and error handling.

``rationalize "question"`` runs the ``ask`` subcommand, as ``llm "prompt"`` does
in simonw/llm. Every error the project raises on purpose becomes one line on
stderr: exit 2 for user errors (bad input, missing model, bad option), 1 for
failures of a backend; never a traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import click
from click_default_group import DefaultGroup

from rationalizer import __version__
from rationalizer.errors import RationalizerError, UserError


class RationalizeGroup(DefaultGroup):
    """A default-command group that turns errors into one line and an exit status."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else "")
            sys.exit(0)
        except click.UsageError as exc:
            _fail(exc.format_message(), 2)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except UserError as exc:
            _fail(str(exc), 2)
        except RationalizerError as exc:
            _fail(str(exc), 1)
        except (click.Abort, KeyboardInterrupt):
            _fail("interrupted", 130)
        except BrokenPipeError:
            sys.exit(0)  # `rationalize ... | head` closing the pipe is not an error
        sys.exit(rv if isinstance(rv, int) else 0)


def _fail(message: str, code: int) -> None:
    first = " ".join(str(message).split("\n")[0].split())
    click.echo(f"Error: {first}", err=True)
    sys.exit(code)


@click.group(cls=RationalizeGroup, default="ask", default_if_no_args=False,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rationalize")
def cli() -> None:
    """Answer a question and explain why, with a small distilled model.

    \b
      rationalize "Can a penguin fly?"
      rationalize "Where do you keep milk?" --choices "fridge|oven|shelf"
      rationalize info
    """


def _register() -> None:
    from .ask import ask
    from .bench import bench_command
    from .eval import eval_command
    from .export import export_command
    from .info import info
    from .teach import teach_command
    from .train import train_group

    cli.add_command(ask)
    cli.add_command(bench_command)
    cli.add_command(info)
    cli.add_command(eval_command)
    cli.add_command(export_command)
    cli.add_command(teach_command)
    cli.add_command(train_group)


_register()


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
