"""Label <-> class-folder names (issue 15): every version has one safe folder name per label, old versions
get theirs derived at read time, and uploads are matched through them, not by sorted folder order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.errors import InvalidInput
from inference.labels import derive_label_folders, folder_index, is_folder_name, match_folders
from inference.metadata import ModelCard
from tests.fixtures import tiny_card

ROOT = Path(__file__).resolve().parents[2]
FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def test_fashion_mnist_folder_names_keep_valid_labels_and_fix_the_slash() -> None:
    folders = derive_label_folders(FASHION)
    assert folders[0] == "T-shirt_top" and folders[1:] == FASHION[1:]
    assert all(is_folder_name(f) for f in folders)


@pytest.mark.parametrize(
    ("label", "folder"),
    [("a:b", "a_b"), (".hidden", "hidden"), ("café", "cafe"), ("猫", "class_0"), ("x/../y", "x_.._y"),
     ("CON", "CON_"), ("trailing.", "trailing"), ("a\nb", "a_b"), ("", "class_0")],
)
def test_unsafe_labels_get_safe_folder_names(label: str, folder: str) -> None:
    (got,) = derive_label_folders([label])
    assert is_folder_name(got), got
    if folder != "CON_":
        assert got == folder
    assert got.lower() not in {"con", "nul"}


def test_folder_names_are_distinct_also_ignoring_case() -> None:
    folders = derive_label_folders(["a/b", "a:b", "A_B", "x"])
    assert len({f.lower() for f in folders}) == 4 and folders[0] == "a_b"


def test_old_metadata_without_the_field_derives_it_at_read_time_without_rewriting() -> None:
    path = ROOT / "models/fashion-mnist/versions/1/metadata.json"
    before = path.read_bytes()
    card = ModelCard.load(path)
    assert card.label_folders == derive_label_folders(card.labels)
    assert "label_folders" in card.to_dict() and path.read_bytes() == before


def test_recorded_folder_names_win_over_the_derivation() -> None:
    data = tiny_card(classes=2).replace(labels=("a/b", "c")).to_dict()
    assert list(data["label_folders"]) == ["a_b", "c"]
    data["label_folders"] = ["first", "second"]
    assert ModelCard.from_dict(json.loads(json.dumps(data))).label_folders == ("first", "second")
    data["label_folders"] = ["only-one"]
    with pytest.raises(Exception, match="label_folders"):
        ModelCard.from_dict(data)


def test_uploads_match_by_folder_name_or_label_not_by_sorted_order() -> None:
    folders = derive_label_folders(FASHION)
    names = ["Ankle boot", "Bag", "Coat", "Dress", "Pullover", "Sandal", "Shirt", "Sneaker", "T-shirt_top", "Trouser"]
    mapping = match_folders(names, FASHION, folders)
    assert mapping["T-shirt_top"] == 0 and mapping["Ankle boot"] == 9 and mapping["Bag"] == 8
    # a label that is a valid name may be its own folder, even when the recorded folder name differs
    assert folder_index(["cat"], ("cat", "dog"), ("felis", "canis")) == {"cat": 0}


def test_subset_and_new_classes_are_refused_with_the_known_folder_names() -> None:
    folders = derive_label_folders(FASHION)
    with pytest.raises(InvalidInput, match=r"no folder for \['T-shirt_top'.*'T-shirt_top', 'Trouser'"):
        match_folders(["Trouser", "Pullover"], FASHION, folders)
    with pytest.raises(InvalidInput, match=r"\['Hat'\] match no label.*'T-shirt_top'"):
        match_folders([*folders, "Hat"], FASHION, folders)
    with pytest.raises(InvalidInput, match="both stand for"):
        folder_index(["cat", "felis"], ("cat", "dog"), ("felis", "canis"))


def test_models_show_prints_the_folder_names(capsys: pytest.CaptureFixture[str]) -> None:
    from imgserve.cli import main

    assert main(["models", "show", "fashion-mnist", "1", "--models-dir", str(ROOT / "models")]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["label_folders"][0] == "T-shirt_top" and shown["labels"][0] == "T-shirt/top"
