"""`--frames` syntax and its errors, `--weights` that is not a model (under every engine), `--landmarks`."""
from __future__ import annotations

from pathlib import Path

import pytest

from blender_relight.cli import main, parse_frames
from blender_relight.engines import AnalyticEngine, make_engine
from blender_relight.errors import ModelFileError, RelightError

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "blender_relight" / "samples" / "astronaut.jpg"


@pytest.mark.parametrize("text,expected", [
    (None, list(range(10))), ("5", [5]), ("0", [0]), ("0-4", [0, 1, 2, 3, 4]), ("3-3", [3]),
    ("0:10:2", [0, 2, 4, 6, 8]), ("2:5", [2, 3, 4]), (":3", [0, 1, 2]), ("7:", [7, 8, 9]), ("::4", [0, 4, 8]),
    ("1,3,5-6", [1, 3, 5, 6]), ("0-2, 1-3", [0, 1, 2, 3]), ("9", [9]),
])
def test_frames_syntax(text, expected):
    assert parse_frames(text, 10) == expected


@pytest.mark.parametrize("text,words", [
    ("", "empty"), ("  ", "empty"), ("10", "outside the clip"), ("5-12", "outside the clip"),
    ("20:30", "past the end"), ("5:5", "selects no frame"), ("0:10:0", "step of 0"), ("4-2", "not a range"),
    ("abc", "must be N"), ("1:2:3:4", "must be N"), ("-3", "outside the clip"),
])
def test_bad_frames_are_errors(text, words):
    with pytest.raises(RelightError, match=words):
        parse_frames(text, 10)


def test_cli_out_of_range_frames_exit_2(tmp_path, capsys):
    assert main(["track", str(SAMPLE), "--cache", str(tmp_path), "--frames", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "outside the clip" in err and "1 frame (0-0)" in err and len(err.splitlines()) == 1
    assert main(["relight", str(SAMPLE), "--out", str(tmp_path / "o"), "--cache", str(tmp_path),
                 "--frames", ""]) == 2
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("frame_*"))


def _broken_folders(tmp_path: Path) -> dict[str, Path]:
    empty = tmp_path / "empty"
    empty.mkdir()
    bad_json = tmp_path / "bad_json"
    bad_json.mkdir()
    (bad_json / "model.json").write_text("{ not json")
    a_file = tmp_path / "model.onnx"
    a_file.write_bytes(b"x")
    return {"empty": empty, "missing": tmp_path / "nope", "file": a_file, "unreadable": bad_json}


@pytest.mark.parametrize("engine", ["auto", "neural", "analytic"])
def test_weights_that_are_not_a_model_are_an_error_under_every_engine(tmp_path, engine, capsys):
    for kind, folder in _broken_folders(tmp_path).items():
        with pytest.raises(ModelFileError):
            make_engine(engine, weights_dir=folder)
        code = main(["analyse", str(SAMPLE), "--cache", str(tmp_path / "c"), "--engine", engine,
                     "--weights", str(folder)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and str(folder) in err and len(err.splitlines()) == 1, (kind, err)


def test_auto_without_a_folder_still_chooses(tmp_path):
    engine = make_engine("auto")
    assert engine.name == "geometry" and engine.supports_novel_view
    assert isinstance(make_engine("analytic"), AnalyticEngine)


def test_face_alignment_backend_is_selectable_and_explained_when_missing(tmp_path, capsys):
    from blender_relight.tracking.landmarks import available_backends

    ok, reason = available_backends()["face_alignment"]
    code = main(["track", str(SAMPLE), "--cache", str(tmp_path), "--landmarks", "face-alignment"])
    err = capsys.readouterr().err.strip()
    if ok:
        assert code in (0, 2)
    else:
        assert code == 2 and "face_alignment" in err and len(err.splitlines()) == 1, err
        assert ("pip install" in err) or ("download" in err)
