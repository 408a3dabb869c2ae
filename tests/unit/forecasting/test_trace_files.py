"""Trace files people bring: every way one can be wrong is an error naming the file and, where one line
is to blame, that line; never a traceback, never a wrong number read as load."""

import gzip
import re
from pathlib import Path

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


def test_an_export_destination_is_tried_before_the_fetch_and_nothing_is_left_behind(tmp_path):
    from ipa_airflow.forecasting.sources import check_writable

    assert check_writable(tmp_path / "t.txt.gz") == tmp_path / "t.txt.gz"
    assert check_writable(tmp_path / "new" / "deeper" / "t.txt")  # write_trace creates the folders
    assert list(tmp_path.iterdir()) == []  # the probes are gone, and no folder was made yet
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match=r"cannot write the trace .*afile/t\.txt: creating a file in"):
        check_writable(tmp_path / "afile" / "t.txt")
    with pytest.raises(ValueError, match="/dev/null: it exists and is not a regular file"):
        check_writable("/dev/null")  # the rename that makes the write whole would replace the device


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_export_to_a_path_no_one_can_write_fails_before_asking_prometheus(capsys):
    url = "http://127.0.0.1:9"  # closed: an error about it would mean the fetch was tried first
    assert main(["forecast", "export", "--prometheus", url, "--days", "1", "--out", "/proc/x/t.txt"]) == 2
    err = capsys.readouterr().err
    assert "cannot write the trace /proc/x/t.txt" in err and "nothing was fetched" in err
    assert "Prometheus" not in err


def test_a_trace_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    from ipa_airflow.forecasting import sources

    path = tmp_path / "t.txt.gz"
    sources.write_trace(path, np.array([1.0, 2.0]))
    assert read_trace(path).tolist() == [1.0, 2.0]

    def disk_full(fh, rates, fmt):
        fh.write("3\n")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sources.np, "savetxt", disk_full)
    with pytest.raises(OSError, match="No space left"):
        sources.write_trace(path, np.array([3.0, 4.0]))
    assert read_trace(path).tolist() == [1.0, 2.0]  # the old trace, not half of the new one
    assert [p.name for p in tmp_path.iterdir()] == ["t.txt.gz"]  # no temporary file left


def test_days_past_the_end_of_a_trace_say_how_long_it_is_and_what_to_change():
    from ipa_airflow.forecasting.sources import days

    with pytest.raises(ValueError, match=r"has 0\.0 days \(3 s\), but days 0-9 .*--train-days"):
        days(np.zeros(3), 0, 9)


def test_a_trace_is_decoded_once_and_read_again_when_it_changes(tmp_path, monkeypatch):
    """Each forecast task of a replayed trace read two weeks of text again; the decoded counts are kept
    under IPA_HOME, keyed by the file's path, size and modification time, so a changed trace is parsed
    anew and a damaged kept copy is parsed over."""
    import ipa_airflow.forecasting.traces as traces

    monkeypatch.setenv("IPA_HOME", str(tmp_path / "home"))
    path = tmp_path / "t.txt"
    path.write_text("1\n2\n3\n")
    parsed = []
    real = traces._parse
    monkeypatch.setattr(traces, "_parse", lambda p: parsed.append(p) or real(p))
    assert list(read_trace(path, damping=2)) == [0.5, 1.0, 1.5]
    assert list(read_trace(path)) == [1.0, 2.0, 3.0] and len(parsed) == 1  # the kept copy, any damping
    path.write_text("4\n5\n")
    assert list(read_trace(path)) == [4.0, 5.0] and len(parsed) == 2
    for kept in (tmp_path / "home" / "cache" / "traces").glob("*.npy"):
        kept.write_bytes(b"not an array")
    assert list(read_trace(path)) == [4.0, 5.0] and len(parsed) == 3
