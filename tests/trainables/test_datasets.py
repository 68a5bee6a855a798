from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tuneforge.errors import ConfigError
from tuneforge.trainables.datasets import BUNDLED_DATASETS, check_dataset, load_dataset


@pytest.mark.parametrize("name", BUNDLED_DATASETS)
def test_bundled_datasets_load_offline(name: str) -> None:
    X, y = load_dataset(check_dataset(name))
    assert X.ndim == 2 and len(X) == len(y) > 100


def test_csv_relative_path_is_resolved_against_the_space_folder(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a,b,label\n1,2.5,x\n3,4.5,y\n5,6.5,x\n")
    spec = check_dataset({"path": "data.csv", "target": "label"}, base_dir=tmp_path)
    assert spec == {"path": str(tmp_path / "data.csv"), "target": "label"}
    X, y = load_dataset(spec)
    np.testing.assert_array_equal(X, [[1, 2.5], [3, 4.5], [5, 6.5]])
    assert list(y) == ["x", "y", "x"]


BAD = {
    "unknown name": ("mnist", None, "unknown dataset 'mnist'; bundled: digits"),
    "missing file": ({"path": "nope.csv", "target": "y"}, None, "nope.csv does not exist"),
    "missing column": ({"path": "d.csv", "target": "label"}, "a,b\n1,2\n3,4\n",
                       "'label' is not a column of .*d.csv; columns: a, b"),
    "non-numeric feature": ({"path": "d.csv", "target": "y"}, "a,colour,y\n1,red,0\n2,blue,1\n",
                            r"non-numeric feature columns \['colour'\]"),
    "empty file": ({"path": "d.csv", "target": "y"}, "", "not a readable CSV"),
    "wrong keys": ({"file": "d.csv"}, None, "expected a bundled name"),
}


@pytest.mark.parametrize(("spec", "content", "message"), BAD.values(), ids=BAD.keys())
def test_bad_dataset_is_one_clear_error(tmp_path: Path, spec, content, message) -> None:
    if content is not None:
        (tmp_path / "d.csv").write_text(content)
    with pytest.raises(ConfigError, match=message):
        check_dataset(spec, base_dir=tmp_path)
