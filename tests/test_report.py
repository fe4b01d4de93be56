"""The report's tables built from stage outputs (the page itself is checked in test_e2e)."""

from __future__ import annotations

from pipeline.report import data_check_tables


def test_data_check_tables_count_copies_and_list_test_near_copies():
    report = {
        "near_duplicate_max_distance": 4,
        "seconds": 1.7,
        "train_groups": {"exact": 2, "all": 3, "rows_in_groups": 7, "with_conflicting_labels": 1},
        "train_test_near_duplicates": {
            "count": 25,
            "pairs": [{"train": f"t{i}", "test": f"x{i}", "distance": i % 5} for i in range(25)],
        },
    }
    tables, counts = data_check_tables(report)
    assert counts == {
        "train_copy_groups_exact": 2,
        "train_copy_groups": 3,
        "train_rows_in_groups": 7,
        "groups_with_conflicting_labels": 1,
        "test_near_copies_of_train": 25,
        "near_duplicate_max_distance": 4,
    }
    (checks, pairs) = tables.values()
    assert checks[1][0] == ["training copy groups, exact / with near copies", "2 / 3"]
    assert checks[1][3] == ["test images that nearly copy a training image", 25]
    assert pairs[0] == ["test image", "training image", "pHash distance"]
    assert len(pairs[1]) == 20 and pairs[1][0] == ["x0", "t0", 0]
    assert "20 of 25" in list(tables)[1]


def test_data_check_tables_without_test_near_copies_has_one_table():
    report = {
        "near_duplicate_max_distance": -1,
        "train_groups": {"exact": 0, "all": 0, "rows_in_groups": 0, "with_conflicting_labels": 0},
        "train_test_near_duplicates": {"count": 0, "pairs": []},
    }
    tables, counts = data_check_tables(report)
    assert len(tables) == 1 and counts["test_near_copies_of_train"] == 0
