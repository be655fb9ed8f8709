"""The CLI's reporting: library log messages as plain stderr lines, and its one progress bar."""

import io
import logging

from click.testing import CliRunner

from rationalizer.cli.main import cli
from rationalizer.cli.reporting import StderrProgress, install_log_handler, new_progress
from rationalizer.progress import SilentProgress, or_silent


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_progress_given_means_a_silent_one():
    assert isinstance(or_silent(None), SilentProgress)
    bar = StderrProgress(io.StringIO())
    assert or_silent(bar) is bar


def test_off_a_terminal_the_bar_is_a_plain_line_per_tenth():
    stream = io.StringIO()
    bar = StderrProgress(stream)
    bar.start(20, "sft")
    for _ in range(20):
        bar.update(1, loss=1.23456, tokens_per_s=987.6)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and lines[-1] == "sft  20/20  loss 1.235, 988 tok/s"


def test_a_log_line_clears_the_bar_and_the_bar_comes_back_under_it(monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    install_log_handler()
    bar = StderrProgress()
    try:
        bar.start(4, "teach via x")
        bar.update(1, per_minute=12.0)
        logging.getLogger("rationalizer.training.sft").info("step 1: dev loss 0.5")
    finally:
        bar.close()
    text = terminal.getvalue()
    message = text.index("\r\033[Kstep 1: dev loss 0.5\n")
    assert "teach via x  [" in text[message:] and "12.0/min" in text[message:]
    assert text.endswith("\n")


def test_the_cli_shows_info_messages_on_stderr_and_quiet_keeps_warnings_only():
    install_log_handler()
    logger = logging.getLogger("rationalizer.dataset")
    runner = CliRunner()

    @cli.command("_say_test", hidden=True)
    def _say_test() -> None:
        logger.info("an info line")
        logger.warning("a warning line")
        assert isinstance(new_progress(), SilentProgress if quiet else StderrProgress)

    try:
        for quiet in (False, True):
            result = runner.invoke(cli, (["--quiet"] if quiet else []) + ["_say_test"])
            assert result.exit_code == 0, result.output
            assert result.stdout == "" and "a warning line" in result.stderr
            assert ("an info line" in result.stderr) is not quiet
    finally:
        cli.commands.pop("_say_test")
        install_log_handler()
