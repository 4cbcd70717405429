"""`selfalign --help` reads as text, and every option of every command says what it is."""

from __future__ import annotations

import argparse

import pytest

from selfalign.cli import build_parser, main


def _walk(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _walk(child)


def test_every_option_of_every_command_has_a_help_line() -> None:
    parsers = list(_walk(build_parser()))
    assert len(parsers) > 25
    for parser in parsers:
        for action in parser._actions:
            assert action.help, (parser.prog, action.option_strings or action.dest)


def test_the_top_level_help_is_plain_text_and_documents_params(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "``" not in text and "--params" in text and "explain" in text
