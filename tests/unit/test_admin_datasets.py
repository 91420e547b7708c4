from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from admin.datasets import DatasetStore
from admin.settings import AdminSettings
from inference.errors import InvalidInput, NotFound, PayloadTooLarge
from tests.fixtures import class_folder_zip, encode_image, sample_image


@pytest.fixture()
def store(tmp_path: Path) -> DatasetStore:
    return DatasetStore(AdminSettings(data_dir=tmp_path / "data", models_dir=tmp_path / "models"))


def _nothing_written(store: DatasetStore) -> bool:
    return not store.root.exists() or not any(store.root.iterdir())


def _zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buf.getvalue()


def test_zip_of_class_folders(store: DatasetStore) -> None:
    info = store.ingest_zip(class_folder_zip({"cat": 3, "dog": 4}))
    assert info.classes == {"cat": 3, "dog": 4} and info.num_images == 7
    assert store.get(info.id) == info and [d.id for d in store.list()] == [info.id]
    assert len(list((store.images_dir(info.id) / "dog").iterdir())) == 4


def test_wrapping_folder_is_allowed(store: DatasetStore) -> None:
    assert store.ingest_zip(class_folder_zip({"a": 2, "b": 2}, root="photos")).classes == {"a": 2, "b": 2}


@pytest.mark.parametrize(
    ("name", "match"),
    [("../evil/x.png", r"outside the archive"), ("/abs/x.png", "absolute path"), ("a/../../x.png", r"outside")],
)
def test_traversal_rejected(store: DatasetStore, name: str, match: str) -> None:
    png = encode_image(sample_image(), "PNG")
    with pytest.raises(InvalidInput, match=match):
        store.ingest_zip(_zip([("a/1.png", png), ("b/1.png", png), (name, png)]))
    assert _nothing_written(store)


def test_symlink_rejected(store: DatasetStore) -> None:
    png = encode_image(sample_image(), "PNG")
    link = zipfile.ZipInfo("a/link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with pytest.raises(InvalidInput, match="symbolic link"):
        store.ingest_zip(_zip([("a/1.png", png), ("b/1.png", png), (link, b"/etc/passwd")]))
    assert _nothing_written(store)


def test_zip_bomb_rejected(store: DatasetStore) -> None:
    png = encode_image(sample_image(), "PNG")
    with pytest.raises(InvalidInput, match="zip bomb"):
        store.ingest_zip(_zip([("a/1.png", png), ("b/1.png", png), ("b/big.png", b"\0" * (20 * 1024 * 1024))]))
    assert _nothing_written(store)


def test_undecodable_image_named(store: DatasetStore) -> None:
    png = encode_image(sample_image(), "PNG")
    with pytest.raises(InvalidInput, match=r"b/broken.png: .*not a recognised image"):
        store.ingest_zip(_zip([("a/1.png", png), ("b/1.png", png), ("b/broken.png", b"not an image")]))
    assert _nothing_written(store)


def test_needs_two_classes(store: DatasetStore) -> None:
    with pytest.raises(InvalidInput, match="at least 2 classes"):
        store.ingest_zip(class_folder_zip({"only": 3}))


def test_not_a_zip_and_loose_files(store: DatasetStore) -> None:
    with pytest.raises(InvalidInput, match="not a valid zip"):
        store.ingest_zip(b"PK nope")
    png = encode_image(sample_image(), "PNG")
    with pytest.raises(InvalidInput, match="<class>/<image>"):
        store.ingest_zip(_zip([("loose.png", png), ("b/1.png", png)]))


def test_upload_size_limit(tmp_path: Path) -> None:
    small = DatasetStore(AdminSettings(data_dir=tmp_path, max_upload_bytes=100))
    with pytest.raises(PayloadTooLarge):
        small.ingest_zip(class_folder_zip({"a": 2, "b": 2}))


def test_images_with_label_extend_a_base(store: DatasetStore) -> None:
    base = store.ingest_zip(class_folder_zip({"cat": 2, "dog": 2}))
    imgs = [(f"x{i}.png", encode_image(sample_image(seed=i), "PNG")) for i in range(3)]
    info = store.ingest_images(imgs, "bird", base=base.id)
    assert info.classes == {"bird": 3, "cat": 2, "dog": 2} and info.base == base.id
    with pytest.raises(InvalidInput, match="at least 2 classes"):
        store.ingest_images(imgs, "bird")
    with pytest.raises(NotFound):
        store.ingest_images(imgs, "bird", base="nope")
    with pytest.raises(InvalidInput, match="invalid class name"):
        store.ingest_images(imgs, "../x", base=base.id)


def test_the_same_upload_ingested_twice_at_once_gives_one_dataset(store: DatasetStore) -> None:
    """Uploads are ingested in worker threads now: two identical ones in the same second share one id."""
    from concurrent.futures import ThreadPoolExecutor

    data = class_folder_zip({"a": 3, "b": 3})
    with ThreadPoolExecutor(4) as pool:
        infos = list(pool.map(lambda _: store.ingest_zip(data), range(4)))
    assert {i.fingerprint for i in infos} == {infos[0].fingerprint}
    assert all((store.root / i.id / "dataset.json").is_file() for i in infos)
    assert not [p for p in store.root.iterdir() if p.name.startswith(".staging-")]


def test_staging_left_by_a_killed_upload_is_removed_on_start(tmp_path: Path) -> None:
    settings = AdminSettings(data_dir=tmp_path / "data", models_dir=tmp_path / "models")
    stale = settings.datasets_dir / ".staging-12345-abcdef"
    (stale / "images" / "a").mkdir(parents=True)
    (settings.datasets_dir / ".staging-12345-abcdef.lock").touch()  # lock file, no holder: its writer is gone
    DatasetStore(settings)
    assert not stale.exists()
