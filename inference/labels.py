"""Labels and the folder names that stand for them in class-folder uploads.

A label such as ``T-shirt/top`` cannot be a folder name (``/``), and ``:``, a leading dot, control or
non-ASCII characters are refused by some filesystems or by the admin upload. Every version therefore carries
``label_folders``: one safe folder name per label, in label order, written by export. Versions made before
the field existed get it derived here at read time with the same rule, so a shipped version is never
rewritten. **Keep :func:`folder_name` stable**: changing it changes the folder names of old versions.

Uploads match classes through this mapping (a folder may be named after the folder name or after the
label itself when that is a valid name), never by sorted folder order.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

from .errors import InvalidInput

# What the admin upload and training accept as a class-folder name.
FOLDER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.+-]{0,63}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9 _.+-]+")
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


def is_folder_name(name: str) -> bool:
    """Whether ``name`` can be a class folder in an upload (zip, admin API, every common filesystem)."""
    return bool(FOLDER_RE.match(name)) and not name.endswith((".", " ")) and name.lower() not in _RESERVED


def folder_name(label: str, index: int) -> str:
    """A safe folder name for ``label``: the label itself when valid, else ASCII-folded with runs of unsafe
    characters turned into ``_`` (``T-shirt/top`` -> ``T-shirt_top``); ``class_<index>`` when nothing is left."""
    if is_folder_name(label):
        return label
    ascii_label = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode()
    name = _UNSAFE.sub("_", ascii_label).strip(" ._+-")[:64].rstrip(" .")
    return name if is_folder_name(name) else f"class_{index}"


def derive_label_folders(labels: Sequence[str]) -> tuple[str, ...]:
    """One distinct folder name per label (distinct also ignoring case: macOS and Windows fold it)."""
    out: list[str] = []
    taken: set[str] = set()
    for i, label in enumerate(labels):
        base = folder_name(label, i)
        name, n = base, 2
        while name.lower() in taken:
            name, n = f"{base[:60]}_{n}", n + 1
        taken.add(name.lower())
        out.append(name)
    return tuple(out)


def folder_index(
    folders: Iterable[str], labels: Sequence[str], label_folders: Sequence[str]
) -> dict[str, int]:
    """Map each upload folder to a label index, through the folder name or the label itself; a subset of
    the classes is fine (evaluation). Raises :class:`InvalidInput` naming the known folder names when a
    folder matches no label, or when two folders stand for one label."""
    index = {name: i for i, name in enumerate(label_folders)}
    for i, label in enumerate(labels):
        index.setdefault(label, i)
    folders = sorted(set(folders))
    unknown = [f for f in folders if f not in index]
    if unknown:
        raise InvalidInput(
            f"class folders {unknown} match no label of the model; its folder names are {_known(label_folders)} "
            "(or train a new label set from scratch)"
        )
    mapping = {f: index[f] for f in folders}
    seen: dict[int, str] = {}
    for f, i in mapping.items():
        if i in seen:
            raise InvalidInput(f"class folders {seen[i]!r} and {f!r} both stand for label {labels[i]!r}")
        seen[i] = f
    return mapping


def match_folders(folders: Iterable[str], labels: Sequence[str], label_folders: Sequence[str]) -> dict[str, int]:
    """:func:`folder_index`, and every label must have a folder: a subset cannot warm-start (or be compared
    class by class with) a model that must still predict every class."""
    mapping = folder_index(folders, labels, label_folders)
    seen = set(mapping.values())
    missing = [label_folders[i] for i in range(len(labels)) if i not in seen]
    if missing:
        raise InvalidInput(
            f"the data has no folder for {missing}; the model's folder names are {_known(label_folders)} "
            "(send every class, or train a new label set from scratch)"
        )
    return mapping


def _known(label_folders: Sequence[str]) -> str:
    return ", ".join(repr(f) for f in label_folders)
