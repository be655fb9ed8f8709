"""Entry point of ``rationalize``: the command group, its default subcommand and error handling.

``rationalize "question"`` runs the ``ask`` subcommand, as ``llm "prompt"`` does
in simonw/llm. Every error the project raises on purpose becomes one line on
stderr: exit 2 for user errors (bad input, missing model, bad option), 1 for
failures of a backend; never a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click
from click_default_group import DefaultGroup

from rationalizer import __version__
from rationalizer.errors import InputError, RationalizerError, UserError

from .reporting import install_log_handler


class RationalizeGroup(DefaultGroup):
    """A default-command group that turns errors into one line and an exit status."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            _check_utf8(sys.argv[1:] if args is None else args)
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            sys.stdout.flush()  # here, not at interpreter exit, where a closed pipe would be an error
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
        except (BrokenPipeError, _StdoutClosed) as exc:
            if not _stdout_gone():  # a broken pipe to something else (a socket) is a failure
                _fail(f"broken pipe: {exc.__cause__ or exc}", 1)
            # `rationalize ... | head` closing the pipe is not an error. Point stdout at /dev/null so the
            # flush at exit does not fail again (what the Python docs advise for SIGPIPE).
            _silence_stdout()
            sys.exit(0)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        # click turns an EPIPE inside a command into exit status 1; take it past click to main()
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:
            raise _StdoutClosed() from exc


class _StdoutClosed(Exception):
    """A command hit a broken pipe (carried past click, which would exit 1 on it)."""


def _check_utf8(args: Any) -> None:
    """Refuse arguments that are not UTF-8 text: Python hands invalid bytes over as lone surrogates,
    which would reach the model as garbage or fail far from the command line."""
    for number, arg in enumerate(args or (), start=1):
        if isinstance(arg, str) and not arg.isascii():
            try:
                arg.encode("utf-8")
            except UnicodeEncodeError as exc:
                char = ord(arg[exc.start])
                what = f"byte 0x{char - 0xDC00:02x}" if 0xDC80 <= char <= 0xDCFF else f"U+{char:04X}"
                raise InputError(f"command-line argument {number} is not UTF-8 text ({what} at character "
                                 f"{exc.start + 1})") from None


def _stdout_gone() -> bool:
    """Whether stdout is a pipe whose reader went away (poll says POLLERR for such a pipe)."""
    try:
        import select

        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no real file descriptor (a test runner's buffer)
        return True


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        pass


def _fail(message: str, code: int) -> None:
    try:
        sys.stdout.flush()  # output already written goes first; a closed pipe must not turn into a traceback at exit
    except (BrokenPipeError, ValueError):
        _silence_stdout()
    first = " ".join(str(message).split("\n")[0].split())
    click.echo(f"Error: {first}", err=True)
    sys.exit(code)


@click.group(cls=RationalizeGroup, default="ask", default_if_no_args=False,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rationalize")
@click.option("--quiet", is_flag=True, help="Only warnings and errors on stderr: no progress messages or bars.")
def cli(quiet: bool) -> None:
    """Answer a question and explain why, with a small distilled model.

    \b
      rationalize "Can a penguin fly?"
      rationalize "Where do you keep milk?" --choices "fridge|oven|shelf"
      rationalize info
    """
    install_log_handler(logging.WARNING if quiet else logging.INFO)


def _register() -> None:
    from .ask import ask
    from .bench import bench_command
    from .codes import codes_command
    from .eval import eval_command
    from .export import export_command
    from .info import info
    from .serve import serve_command
    from .teach import teach_command
    from .train import train_group

    cli.add_command(ask)
    cli.add_command(bench_command)
    cli.add_command(codes_command)
    cli.add_command(info)
    cli.add_command(eval_command)
    cli.add_command(export_command)
    cli.add_command(serve_command)
    cli.add_command(teach_command)
    cli.add_command(train_group)


_register()


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
