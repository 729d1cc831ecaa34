"""From the PATHs a user typed to the list of images a batch processes.

Each PATH is an image file or a folder. Folders are walked recursively: the
entries of each folder in byte order of their names, a subfolder's images at
the subfolder's place in that order; files are taken when their extension is
an image's or a video's (any case), subfolders are always walked, whatever their name.
Symbolic links are followed, each real folder is walked once, so a link back
to a parent cannot make the walk loop. A folder that cannot be read becomes
an item with an error, and the walk goes on.

What a walk takes is ruled by `Rules`: hidden entries (a name starting with
`.`: `.thumbs/`, macOS's `._x.jpg`) are skipped, as are entries matching an
--exclude pattern, the run's own output folders, and (non-recursive)
subfolders; files whose extension is not among the rules' (--ext) are
skipped and counted (`Tally`). A PATH the user names is always taken, hidden
or not; one that is plainly no file (a URL, a Windows path on POSIX, a shell
pattern that matched nothing) becomes an item with the reason.
"""
from __future__ import annotations

import fnmatch
import os
import re
import stat
from dataclasses import dataclass
from typing import Iterable, Iterator, NamedTuple, Sequence

from .images import IMAGE_EXTENSIONS, not_a_file_reason, os_reason
from .video import VIDEO_EXTENSIONS

DEFAULT_EXTENSIONS = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS  # what a folder search takes without --ext

STDIN = "-"


class Item(NamedTuple):
    """One entry of the batch: an image path (as given, or as found under a
    folder), or a folder that could not be read (error set)."""
    path: str
    error: str | None = None


def parse_list(data: bytes, null: bool = False) -> list[str]:
    """A list of paths, one per line or NUL-separated (`find -print0`), as
    file-system strings (undecodable bytes kept as surrogate escapes). Empty
    entries are dropped; with lines, a trailing carriage return is dropped."""
    if null:
        parts = data.split(b"\0")
    else:
        if b"\0" in data:
            raise ListError("the list on stdin holds NUL bytes: if it is NUL-separated "
                            "(find -print0, xargs -0), give -0")
        parts = [line[:-1] if line.endswith(b"\r") else line for line in data.split(b"\n")]
    return [os.fsdecode(part) for part in parts if part]


class ListError(ValueError):
    """A list on stdin that cannot be meant as it reads (NULs without -0)."""


_EXTENSION = re.compile(r"[^\s/\\.,*?\[\]=\0]+")


def extension_set(values: Sequence[str]) -> frozenset:
    """The extensions a folder search takes, from --ext values: each a comma
    list of extensions (with or without the dot, any case); `.pgm` or
    `pgm,ppm` adds to the default set, `=jpg,png` takes only those (several
    =lists and plain lists combine: `=jpg --ext png` is jpg and png). An
    extension added that is not a video's is read as an image. Raises
    ValueError naming the value."""
    base, added = None, set()
    for value in values:
        text = value[1:] if value.startswith("=") else value
        names = set()
        for entry in text.split(","):
            name = entry.strip().lower()
            name = name[1:] if name.startswith(".") else name
            if not _EXTENSION.fullmatch(name):
                raise ValueError(f"--ext {value!r}: {entry.strip()!r} is not one file extension (give "
                                 f"e.g. .pgm or pgm,ppm to add some, =jpg,png to take only those)")
            names.add("." + name)
        if value.startswith("="):
            base = (base or set()) | names
        else:
            added |= names
    return frozenset((DEFAULT_EXTENSIONS if base is None else base) | added)


@dataclass
class Tally:
    """What a folder walk left out, counted: files whose extension it does
    not take (`unknown`; hidden and --exclude'd entries are not counted)."""
    unknown: int = 0


class Rules(NamedTuple):
    """What a folder walk takes. exclude: shell patterns (fnmatch, case-
    sensitive); one without a `/` is matched against each entry's name, one
    with a `/` against its whole path as found (`photos/raw/*`). skip: folders
    never walked (the run's own output folders). recursive=False takes the
    images directly in a named folder, as OpenFace's -fdir does. extensions:
    the file extensions taken (lower case, with the dot; see extension_set)."""
    recursive: bool = True
    exclude: tuple = ()
    skip: tuple = ()
    extensions: frozenset = DEFAULT_EXTENSIONS

    def excluded(self, path: str, name: str) -> bool:
        if name.startswith("."):
            return True
        return any(fnmatch.fnmatchcase(path if "/" in pattern else name, pattern)
                   for pattern in self.exclude)

    def takes(self, name: str) -> bool:
        """Whether a file of this name is taken (its extension, any case)."""
        return os.path.splitext(name)[1].lower() in self.extensions


def _sort_key(name: str) -> bytes:
    return os.fsencode(name)


def _folder_key(path: str):
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def walk(folder: str, seen: set, rules: Rules = Rules(), tally: Tally | None = None) -> Iterator[Item]:
    """The images under folder, in sorted order, as `rules` say (see module
    doc). `seen` holds the (device, inode) of folders already walked; files
    of an extension not taken are counted in `tally` when given."""
    try:
        info = os.stat(folder)
        key = (info.st_dev, info.st_ino)
        if key in seen:
            return
        seen.add(key)
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: _sort_key(e.name))
    except OSError as e:
        yield Item(folder, os_reason(e))
        return
    for entry in entries:
        path = os.path.join(folder, entry.name)
        if rules.excluded(path, entry.name):
            continue
        try:
            is_dir = entry.is_dir()  # follows symbolic links
        except OSError:
            is_dir = False
        if is_dir:
            if rules.recursive:
                yield from walk(path, seen, rules, tally)
        elif rules.takes(entry.name):
            yield Item(path)
        elif tally is not None:
            tally.unknown += 1


def expand(paths: Sequence[str], read_stdin=None, null: bool = False, rules: Rules = Rules(),
           empty: list | None = None, tally: Tally | None = None) -> list[Item]:
    """The PATHs in order, folders replaced by their images (as `rules` say),
    `-` by the list read from stdin (read_stdin() -> bytes), whose entries
    are PATHs too. Raises ListError. Named folders that give no image are
    appended to `empty` when a list is given; what the walks left out is
    counted in `tally`. A PATH that is plainly no file (not_a_file_reason: a
    URL, a Windows path, an unexpanded pattern) is an item with that error,
    so that a video's name is never handed to a video decoder as a URL."""
    seen: set = {key for key in map(_folder_key, rules.skip) if key is not None}
    items: list[Item] = []
    for path in paths:
        if path == STDIN and read_stdin is not None:
            listed = parse_list(read_stdin(), null)
            items.extend(expand([p for p in listed if p != STDIN], None, rules=rules, empty=empty,
                                tally=tally))
        elif os.path.isdir(path):
            walked_before = _folder_key(path) in seen
            found = list(walk(path, seen, rules, tally))
            if not found and not walked_before and empty is not None:
                empty.append(path)
            items.extend(found)
        else:
            items.append(Item(path, not_a_file_reason(path)))
    return items


def normalise(path: str) -> str:
    """The one spelling of an input path by which images are told apart: the
    absolute path, normalised (`a.jpg`, `./a.jpg`, `a//a.jpg`, `sub/../a.jpg`
    and `/cwd/a.jpg` are one image). Links are not resolved: two names of one
    file stay two images. Used for repeats in the input list and by --resume."""
    return os.path.normpath(os.path.abspath(path))


def unique(items: Iterable[Item]) -> list[Item]:
    """Items without repeats, first occurrence kept: `a/x.jpg`, `./a/x.jpg`,
    `a//x.jpg` and the absolute path are the same image (see normalise)."""
    kept, seen = [], set()
    for item in items:
        key = normalise(item.path)
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept


def shard(items: Sequence, index: int, count: int) -> list:
    """The index-th (1-based) of count contiguous slices of items, sizes
    differing by at most one: shards 1..count, concatenated in order, give
    items exactly once and in order."""
    if not 1 <= index <= count:
        raise ValueError(f"shard {index}/{count}: I must be between 1 and N")
    n = len(items)
    start, stop = (index - 1) * n // count, index * n // count
    return list(items[start:stop])


def safe_relative(path: str) -> str:
    """A relative path inside an output folder for an input path: absolute
    paths lose their leading slash, `.` parts vanish, `..` parts become `__`.
    So `--annotate DIR` mirrors `photos/a.jpg` at DIR/photos/a.jpg and can
    never write outside DIR."""
    parts = []
    for part in os.path.normpath(path).split(os.sep):
        if part in ("", "."):
            continue
        parts.append("__" if part == ".." else part)
    return os.path.join(*parts) if parts else "_"


def bbox_name(name: str) -> str:
    """An image's box file inside the --bboxdir folder, from the name its
    annotated copy gets inside --annotate's (safe_relative of the path as
    given, or its path relative to --annotate-root): that name with its
    extension replaced by .txt, OpenFace's <stem>.txt, in the image's
    mirrored folder. So `x.jpg` gives `x.txt`, `a/x.jpg` and `b/x.jpg` give
    `a/x.txt` and `b/x.txt`; only two images of one folder whose names
    differ in their extension alone share a box file."""
    return os.path.splitext(name)[0] + ".txt"


def file_identity(path) -> tuple | None:
    """(device, inode) of the file `path` names (links followed), None when
    there is none."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def stream_identity(stream) -> tuple | None:
    """(device, inode) of a stream's file when it is a regular file (stdin
    redirected from a list, say), else None."""
    try:
        info = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISREG(info.st_mode) else None


def overwritten_input(outputs: dict, sources: dict) -> tuple[str, str, str] | None:
    """outputs: output path -> its option (e.g. "-o"); sources: input
    identity (file_identity) -> what it is (e.g. "the model file M"). The
    first (option, path, input) where an existing output is an input, or
    None."""
    for path, option in outputs.items():
        key = file_identity(path)
        if key is not None and key in sources:
            return option, os.fspath(path), sources[key]
    return None
