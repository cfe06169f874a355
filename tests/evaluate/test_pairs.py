"""Pair-list readers: LFW's pairs.txt format and the CSV format."""

from __future__ import annotations

from pathlib import Path

import pytest

from facesys.errors import FacesysError
from facesys.evaluate.pairs import people_in_pairs, read_csv_pairs, read_lfw_pairs, read_pairs
from tests.conftest import data_path


def test_small_lfw_file(tmp_path):
    (tmp_path / "pairs.txt").write_text("2\t1\nAnn\t1\t2\nAnn\t1\tBob\t3\nCy\t2\t4\nBob\t1\tCy\t1\n")
    pairs = read_lfw_pairs(tmp_path / "pairs.txt", "/data")
    assert [p.same for p in pairs] == [True, False, True, False]
    assert [p.fold for p in pairs] == [0, 0, 1, 1]
    assert str(pairs[1].b) == "/data/Bob/Bob_0003.jpg"
    assert people_in_pairs(pairs) == {"Ann", "Bob", "Cy"}


def test_wrong_counts_are_refused(tmp_path):
    (tmp_path / "pairs.txt").write_text("1\t2\nAnn\t1\t2\n")
    with pytest.raises(FacesysError, match="pairs.txt: expected 4 pair lines, found 1"):
        read_lfw_pairs(tmp_path / "pairs.txt")


def test_official_lfw_pairs():
    pairs = read_lfw_pairs(data_path("lfw", "pairs.txt"))
    assert len(pairs) == 6000 and sum(p.same for p in pairs) == 3000
    assert {p.fold for p in pairs} == set(range(10))
    assert all(p.a.is_file() and p.b.is_file() for p in pairs[::97])


def test_csv_with_and_without_folds(tmp_path):
    (tmp_path / "p.csv").write_text("file_a,file_b,same,fold\na.jpg,b.jpg,1,3\nc.jpg,d.jpg,false,4\n")
    pairs = read_csv_pairs(tmp_path / "p.csv")
    assert [(p.same, p.fold) for p in pairs] == [(True, 3), (False, 4)]
    assert pairs[0].a == tmp_path / "a.jpg"
    (tmp_path / "q.csv").write_text("a.jpg,b.jpg,yes\nc.jpg,d.jpg,no\ne.jpg,f.jpg,true\n")
    assert [p.fold for p in read_csv_pairs(tmp_path / "q.csv", folds=2)] == [0, 1, 0]
    (tmp_path / "bad.csv").write_text("a.jpg,b.jpg,1\na.jpg,b.jpg,maybe\n")
    with pytest.raises(FacesysError, match="bad.csv: line 2"):
        read_csv_pairs(tmp_path / "bad.csv")


def test_csv_header_names_the_columns_in_any_order(tmp_path):
    rows = [("a.jpg", "b.jpg", "1", "3"), ("c.jpg", "d.jpg", "no", "4"), ("e.jpg", "f.jpg", "true", "0")]
    (tmp_path / "positional.csv").write_text("".join(f"{a},{b},{same},{fold}\n" for a, b, same, fold in rows))
    (tmp_path / "named.csv").write_text(
        "\ufeff Fold ,note,SAME,file_b,file_a\n" + "".join(f"{fold},x,{same},{b},{a}\n" for a, b, same, fold in rows)
    )
    positional = read_csv_pairs(tmp_path / "positional.csv")
    assert [(p.a.name, p.b.name, p.same, p.fold) for p in positional] == [
        ("a.jpg", "b.jpg", True, 3),
        ("c.jpg", "d.jpg", False, 4),
        ("e.jpg", "f.jpg", True, 0),
    ]
    assert read_csv_pairs(tmp_path / "named.csv") == positional
    (tmp_path / "no_fold.csv").write_text("same,file_b,file_a\n1,b.jpg,a.jpg\n0,d.jpg,c.jpg\n1,f.jpg,e.jpg\n")
    no_fold = read_csv_pairs(tmp_path / "no_fold.csv", folds=2)
    assert [(p.a.name, p.fold) for p in no_fold] == [("a.jpg", 0), ("c.jpg", 1), ("e.jpg", 0)]


def test_csv_header_without_a_required_column_is_one_clear_error(tmp_path):
    (tmp_path / "p.csv").write_text("fold,file_a,file_b\n0,a.jpg,b.jpg\n")
    with pytest.raises(FacesysError, match=r"p\.csv: the header lacks the column\(s\) same"):
        read_csv_pairs(tmp_path / "p.csv")
    (tmp_path / "q.csv").write_text("first,file_b,same\na.jpg,b.jpg,1\n")
    with pytest.raises(FacesysError, match=r"q\.csv: the header lacks the column\(s\) file_a\b"):
        read_csv_pairs(tmp_path / "q.csv")
    (tmp_path / "short.csv").write_text("same,file_a,file_b\n1,a.jpg\n")
    with pytest.raises(FacesysError, match=r"short\.csv: line 2"):
        read_csv_pairs(tmp_path / "short.csv")
    # A header of other names is still skipped, and the columns read by position, as before.
    (tmp_path / "other.csv").write_text("image 1,image 2,label\na.jpg,b.jpg,1\n")
    assert [(p.a.name, p.b.name, p.same) for p in read_csv_pairs(tmp_path / "other.csv")] == [("a.jpg", "b.jpg", True)]


def test_read_pairs_picks_the_reader_by_extension(tmp_path):
    (tmp_path / "p.csv").write_text("file_a,file_b,same\nAnn/1.jpg,Bob/1.jpg,0\n")
    (tmp_path / "pairs.txt").write_text("1\nAnn\t1\t2\nAnn\t1\tBob\t3\n")
    assert [p.b for p in read_pairs(tmp_path / "p.csv", "/data")] == [Path("/data/Bob/1.jpg")]
    assert [p.same for p in read_pairs(str(tmp_path / "pairs.txt"))] == [True, False]
    with pytest.raises(FacesysError, match="nope.csv: pairs file not found"):
        read_pairs(tmp_path / "nope.csv")
