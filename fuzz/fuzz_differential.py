"""Differential fuzz target: fastsrv's parser against h11 and httptools
(llhttp), coverage-guided by the parser's branches.

It applies the rules of ``tests/test_parser_differential.py`` — the same
``disagreements`` check, with its tables of RFC-sanctioned divergences and
leniencies — to the inputs libFuzzer mutates from the seed corpus, instead of
to hypothesis' generated requests.  Inputs longer than ``MAX_LEN`` are
skipped: the check feeds every split of the bytes to the parser.
"""

from __future__ import annotations

import sys

import atheris

import common

common.load_parser()

from test_parser_differential import disagreements  # noqa: E402  (after load_parser)

MAX_LEN = 600


def test_one_input(raw: bytes) -> None:
    data = common.decode(raw).data
    if len(data) > MAX_LEN:
        return
    problems = disagreements(data)
    if problems:
        raise AssertionError(f"{data!r}: " + "; ".join(problems))


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
