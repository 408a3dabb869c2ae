"""Trace files people bring: every way one can be wrong is an error naming the file and, where one line
is to blame, that line; never a traceback, never a wrong number read as load."""

import gzip
import re

import numpy as np
import pytest

from ipa_airflow.cli import main
from ipa_airflow.forecasting.sources import LoadSourceError, read_trace


def test_a_gzip_cut_short_says_so(tmp_path):
    data = gzip.compress(b"".join(b"%d\n" % i for i in range(5000)))
    path = tmp_path / "cut.txt.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        LoadSourceError, match=r"trace .*cut\.txt\.gz is cut short: the gzip stream ends early"
    ):
        read_trace(path)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("4\n5\nabc\n6\n", r"line 3: 'abc' is not a number"),
        ("4\n1 2\n", r"line 2: 2 values \('1 2'\); one number per line"),
        ("4\nnan\n", r"line 2: 'nan' is not a request count"),
        ("4\n5\n-3\n", r"line 3: '-3' is not a request count \(counts are finite and at least 0\)"),
        ("inf\n", r"line 1: 'inf' is not a request count"),
        ("1e999\n", r"line 1: '1e999' is not a request count"),  # a number, but infinite once read
        ("", "is empty"),
        ("# a comment\n\n", "is empty"),
    ],
)
def test_a_bad_line_is_named(tmp_path, text, says):
    path = tmp_path / "t.txt"
    path.write_text(text)
    with pytest.raises(LoadSourceError, match=rf"trace {re.escape(str(path))}.*{says}"):
        read_trace(path)


def test_the_same_checks_hold_inside_a_gzip(tmp_path):
    path = tmp_path / "t.txt.gz"
    path.write_bytes(gzip.compress(b"1\n2\nNaN\n"))
    with pytest.raises(LoadSourceError, match=r"t\.txt\.gz, line 3: 'NaN'"):
        read_trace(path)


def test_a_gz_name_on_plain_text_and_a_folder_are_clear(tmp_path):
    plain = tmp_path / "plain.txt.gz"
    plain.write_text("1\n2\n")
    with pytest.raises(LoadSourceError, match=r"cannot read trace .*plain\.txt\.gz: Not a gzipped file"):
        read_trace(plain)
    with pytest.raises(LoadSourceError, match="cannot read trace"):
        read_trace(tmp_path)


def test_comments_and_blank_lines_are_allowed_and_damping_must_be_finite(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("8\n\n16 # peak\n")
    assert read_trace(path, damping=8).tolist() == [1.0, 2.0]
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="damping must be a positive finite number"):
            read_trace(path, damping=bad)
    assert read_trace(path, damping=np.float32(2)).tolist() == [4.0, 8.0]


def test_the_cli_reports_a_cut_trace_as_an_error(tmp_path, capsys):
    data = gzip.compress(b"".join(b"%d\n" % i for i in range(5000)))
    path = tmp_path / "cut.txt.gz"
    path.write_bytes(data[: len(data) // 2])
    assert main(["forecast", "backtest", "--trace", str(path), "--model", "max"]) == 2
    assert "cut short" in capsys.readouterr().err
