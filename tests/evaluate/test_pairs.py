"""Pair-list readers: LFW's pairs.txt format and the CSV format."""

from __future__ import annotations

import pytest

from facesys.errors import FacesysError
from facesys.evaluate.pairs import people_in_pairs, read_csv_pairs, read_lfw_pairs
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
