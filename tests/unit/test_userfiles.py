"""The one loader for files people write: a repeated key is refused with its line, never last-one-wins."""

import pytest

from ipa_airflow.userfiles import UserFileError, parse_json, parse_yaml, read_yaml


def test_a_repeated_key_is_refused_wherever_it_is():
    text = "stages:\n  - name: a\n    variants: []\n    name: b\n"
    with pytest.raises(
        UserFileError, match=r"line 4, column 5\): duplicate key 'name' \(first given on line 2\)"
    ):
        parse_yaml(text, "s.yaml")


def test_merge_keys_may_be_overridden_and_equal_values_still_count_as_repeats():
    assert parse_yaml("a: &x {k: 1, j: 2}\nb:\n  <<: *x\n  k: 3\n", "s") == {
        "a": {"k": 1, "j": 2},
        "b": {"k": 3, "j": 2},
    }
    with pytest.raises(UserFileError, match="duplicate key 'k'"):
        parse_yaml("k: 1\nk: 1\n", "s")


def test_yaml_1_1_number_quirks_stay_text():
    """YAML 1.1 reads 1:30 as 90 (base 60) and 010 as 8 (octal): left as text, a number field refuses it."""
    assert parse_yaml("a: 1:30\nb: 010\nc: 0b101\nd: 0x1F\ne: -5\n", "s") == {
        "a": "1:30",
        "b": "010",
        "c": "0b101",
        "d": 31,
        "e": -5,
    }


def test_yaml_1_2_exponent_floats_are_numbers():
    assert parse_yaml("a: 1e-3\nb: 5E+2\nc: 1.5e3\nd: '1e3'\ne: 1_000\n", "s") == {
        "a": 0.001,
        "b": 500.0,
        "c": 1500.0,
        "d": "1e3",
        "e": 1000,
    }


def test_unreadable_and_undecodable_files_are_named(tmp_path):
    with pytest.raises(UserFileError, match=r"nope.yaml: cannot read the file"):
        read_yaml(tmp_path / "nope.yaml")
    (tmp_path / "b.yaml").write_bytes(b"\xff\xfe")
    with pytest.raises(UserFileError, match="not UTF-8"):
        read_yaml(tmp_path / "b.yaml")


def test_json_refuses_repeats_and_non_numbers():
    assert parse_json('{"a": [1.5, 2]}', "p.json") == {"a": [1.5, 2]}
    for text, says in [
        ('{"a": 1, "a": 2}', "duplicate key 'a'"),
        ('{"a": NaN}', "NaN"),
        ("[-Infinity]", "Infinity"),
    ]:
        with pytest.raises(UserFileError, match=says):
            parse_json(text, "p.json")


def test_deep_nesting_is_an_error_not_a_crash():
    with pytest.raises(UserFileError, match="nested too deeply|not valid"):
        parse_json("[" * 100_000 + "]" * 100_000, "p.json")


def test_aliases_that_expand_to_billions_of_values_are_refused():
    text, previous = "a: &a [x, x, x, x, x, x, x, x, x]\n", "a"
    for name in "bcdefghij":
        text += f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]\n"
        previous = name
    with pytest.raises(UserFileError, match="aliases"):
        parse_yaml(text, "s.yaml")
    assert parse_yaml("a: &x [1, 2]\nb: *x\n", "s.yaml") == {"a": [1, 2], "b": [1, 2]}
