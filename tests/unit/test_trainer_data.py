"""Price CSVs as people export them, and the errors that name file, line and column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainer.data import load_csv, synthetic_series
from trainer.errors import DataError


def write(tmp_path: Path, text: str, name: str = "prices.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def times_of(series) -> list[str]:
    return [str(t) for t in series.times.astype("datetime64[s]")]


def test_yahoo_layout_with_adj_close_scales_prices(tmp_path):
    path = write(
        tmp_path,
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2024-01-02,10,11,9,10,5,100\n"
        "2024-01-03,10,12,10,11,5.5,200\n",
    )
    s = load_csv(path)
    assert times_of(s) == ["2024-01-02T00:00:00", "2024-01-03T00:00:00"]
    np.testing.assert_allclose(s.close, [5.0, 5.5])
    np.testing.assert_allclose(s.open, [5.0, 5.0])
    np.testing.assert_allclose(s.high, [5.5, 6.0])
    assert s.source == str(path)


def test_day_first_milliseconds_any_case_and_order(tmp_path):
    path = write(
        tmp_path,
        "Gmt time,volume,CLOSE,low,HIGH,open\n"
        "01.02.2024 00:00:00.000,5,1.1,1.0,1.2,1.05\n"
        "01.02.2024 00:01:00.500,5,1.15,1.1,1.2,1.1\n",
    )
    s = load_csv(path)
    assert [str(t) for t in s.times] == ["2024-02-01T00:00:00.000", "2024-02-01T00:01:00.500"]
    np.testing.assert_allclose(s.close, [1.1, 1.15])
    np.testing.assert_allclose(s.open, [1.05, 1.1])


def test_iso_datetimes_with_offsets_become_utc(tmp_path):
    path = write(
        tmp_path,
        "time,open,high,low,close\n"
        "2024-03-01T10:00:00+02:00,1,1,1,1\n"
        "2024-03-01T09:00:00Z,1,1,1,1\n",
    )
    assert times_of(load_csv(path)) == ["2024-03-01T08:00:00", "2024-03-01T09:00:00"]


def test_separate_date_and_time_columns_semicolons_and_newest_first(tmp_path):
    path = write(
        tmp_path,
        "Date;Time;Open;High;Low;Close\n"
        "2024.01.03;10:00;3;3;3;3\n"
        "2024.01.02;10:00;2;2;2;2\n"
        "2024.01.01;10:00;1;1;1;1\n",
    )
    s = load_csv(path)
    np.testing.assert_array_equal(s.close, [1.0, 2.0, 3.0])
    assert times_of(s)[0] == "2024-01-01T10:00:00"


def test_blank_lines_are_skipped(tmp_path):
    path = write(tmp_path, "Date,Open,High,Low,Close\n2024-01-01,1,1,1,1\n\n2024-01-02,2,2,2,2\n")
    assert len(load_csv(path)) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Date,Open,High,Low\n2024-01-01,1,1,1\n", "line 1: missing column 'Close'"),
        ("Open,High,Low,Close\n1,1,1,1\n", "line 1: missing column 'Date'"),
        ("", "line 1: empty file"),
        ("Date,Open,High,Low,Close\n", "no data rows"),
        (
            "Date,Open,High,Low,Close\n2024-01-01,1,1,1,1\n2024-01-02,1,x,1,1\n",
            "line 3, column 'High': 'x' is not a positive number",
        ),
        ("Date,Open,High,Low,Close\n2024-01-01,1,1,1,0\n", "line 2, column 'Close': '0' is not"),
        ("Date,Open,High,Low,Close\n2024-01-01,1,1,1,-3\n", "line 2, column 'Close': '-3'"),
        ("Date,Open,High,Low,Close\n2024-01-01,1,1,1,nan\n", "line 2, column 'Close': 'nan'"),
        (
            "Date,Open,High,Low,Close,Volume\n2024-01-01,1,1,1,1,-1\n",
            "line 2, column 'Volume': '-1' is not a non-negative number",
        ),
        ("Date,Open,High,Low,Close\n2024-01-01,1,1,1\n", "line 2, column 'Close': missing value"),
        (
            "Date,Open,High,Low,Close\n2024-01-01,1,1,1,1\nyesterday,1,1,1,1\n",
            "line 3, column 'Date': 'yesterday' is not a time in the file's format (ISO 8601)",
        ),
        (
            "Date,Open,High,Low,Close\n01.01.2024,1,1,1,1\n2024-01-02,1,1,1,1\n",
            "line 3, column 'Date': '2024-01-02' is not a time in the file's format (%d.%m.%Y)",
        ),
        (
            "Date,Open,High,Low,Close\n2024-01-01,1,1,1,1\n2024-01-02,1,1,1,1\n2024-01-02,1,1,1,1\n",
            "line 4, column 'Date': time does not follow the previous row",
        ),
        (
            "Date,Open,High,Low,Close\n2024-01-01,1,1,1,1\n2024-01-01T10:00Z,1,1,1,1\n",
            "line 3, column 'Date': mixes times with and without a time zone",
        ),
        ("Date,Open,close,High,Low,Close\n", "line 1: column 'Close' appears twice"),
    ],
)
def test_bad_data_names_file_line_and_column(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(DataError) as info:
        load_csv(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_a_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        load_csv(tmp_path / "nope.csv")


def test_synthetic_series_is_seeded_and_well_formed():
    a, b, c = synthetic_series(500, 1), synthetic_series(500, 1), synthetic_series(500, 2)
    np.testing.assert_array_equal(a.close, b.close)
    assert not np.array_equal(a.close, c.close)
    assert len(a) == 500
    assert (a.low > 0).all()
    assert (a.low <= np.minimum(a.open, a.close)).all()
    assert (a.high >= np.maximum(a.open, a.close)).all()
    assert (np.diff(a.times).astype(np.int64) > 0).all()
