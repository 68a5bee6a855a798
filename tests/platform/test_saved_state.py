"""What ``tuneforge resume`` checks of Ray Tune's saved state before restoring it: a damaged
newest snapshot is set aside for an earlier whole one; a damaged tuner or no whole snapshot sets
all of Tune's state aside, for the search to be rebuilt from MLflow. Files as Tune writes them,
cut as a killed writer leaves them; the resume itself is tests/platform/test_resume.py's."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from tuneforge.platform.resume import SavedState, check_saved_state

EARLIER, NEWER = "2026-12-07_10-00-00", "2026-12-07_11-00-00"


def _folder(tmp_path: Path, *, cut: tuple[str, ...] = (), tuner_cut: bool = False) -> Path:
    """A results folder of two driver sessions: each session's experiment snapshot and search
    algorithm state, and the tuner; the files named in ``cut`` cut in half."""
    folder = tmp_path / "space-random-20261207-100000"
    folder.mkdir()
    tuner = pickle.dumps({"param_space": {"x": [0.1, 0.2]}, "name": folder.name})
    (folder / "tuner.pkl").write_bytes(tuner[: len(tuner) // 2] if tuner_cut else tuner)
    for session in (EARLIER, NEWER):
        for stem in ("experiment_state", "basic-variant-state"):
            text = json.dumps({"trial_data": [["{}", "{}"]] * 20, "session": session})
            name = f"{stem}-{session}.json"
            (folder / name).write_text(text[: len(text) // 2] if name in cut else text)
    return folder


def test_whole_state_is_restored_as_it_is(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    before = sorted(p.name for p in folder.iterdir())
    assert check_saved_state(str(folder), folder.name) == SavedState(restorable=True)
    assert sorted(p.name for p in folder.iterdir()) == before


def test_a_damaged_newest_snapshot_is_set_aside_for_the_earlier_whole_one(tmp_path: Path) -> None:
    folder = _folder(tmp_path, cut=(f"experiment_state-{NEWER}.json",))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    state = check_saved_state(str(folder), folder.name)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before, "checking changes nothing"
    assert state.restorable
    state.set_aside()
    line = state.note
    assert line.startswith(f"damaged saved state set aside: experiment_state-{NEWER}.json (JSONDecodeError: ")
    assert line.endswith(f"; resuming from experiment_state-{EARLIER}.json")
    assert sorted(p.name for p in folder.glob("*.json*")) == [
        f"basic-variant-state-{EARLIER}.json", f"basic-variant-state-{NEWER}.json.damaged",
        f"experiment_state-{EARLIER}.json", f"experiment_state-{NEWER}.json.damaged"]


@pytest.mark.parametrize(("cut", "tuner_cut", "message"), [
    ((f"experiment_state-{NEWER}.json", f"experiment_state-{EARLIER}.json"), False,
     f"{{folder}}/experiment_state-{NEWER}.json is damaged (JSONDecodeError: "),
    ((), True, "{folder}/tuner.pkl is damaged (ValueError: "),
    ((), None, "{folder}/tuner.pkl is missing"),
], ids=["every-snapshot", "tuner", "no-tuner"])
def test_damage_without_a_whole_state_sets_all_of_it_aside_for_a_rebuild(
        tmp_path: Path, cut: tuple[str, ...], tuner_cut: bool | None, message: str) -> None:
    folder = _folder(tmp_path, cut=cut, tuner_cut=bool(tuner_cut))
    if tuner_cut is None:  # a driver killed before Tune wrote it (or a rebuild, before its own)
        (folder / "tuner.pkl").unlink()
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    state = check_saved_state(str(folder), folder.name)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before, "checking changes nothing"
    assert not state.restorable and "\n" not in state.note
    state.set_aside()
    assert state.note.startswith(f"saved state of search {folder.name}: {message.format(folder=folder)}")
    assert state.note.endswith("set aside, the search is rebuilt from MLflow and search.json")
    after = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert after == {f"{name}.damaged": content for name, content in before.items()}, "kept, renamed"


def test_a_remote_storage_is_not_checked(tmp_path: Path) -> None:
    assert check_saved_state("s3://bucket/space-random-20261207-100000", "space-random").restorable
