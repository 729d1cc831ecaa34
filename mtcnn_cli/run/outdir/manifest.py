"""An output folder's manifest and input list: written once, by whichever
process comes first, and checked by every later one."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import re
import tempfile
from dataclasses import dataclass, field

from ...base.defaults import VERSION
from ...base.errors import FileProblem
from ...base.text import display
from ...io import inputs
from ...io.records import json_string
from ..batch import Settings
from ..plan import is_video


MANIFEST = "_manifest.json"


INPUTS = "_inputs.jsonl"


LAYOUT = 1  # the layout of the folder described here


DEFAULT_SHARD_SIZE = 1000


_OURS = re.compile(r"(_manifest\.json|_inputs\.jsonl|part-\d{5,}\.jsonl|part-\d{5,}\.stats\.json|\..*)")


_PART = re.compile(r"part-(\d{5,})\.jsonl")


class ManifestProblem(FileProblem):
    """The folder, its manifest or its parts cannot be used: exit 2."""


def part_name(index: int) -> str:
    return f"part-{index:05d}.jsonl"


def stats_name(index: int) -> str:
    return f"part-{index:05d}.stats.json"


def shard_count(items: int, size: int) -> int:
    return -(-items // size)


def inputs_bytes(items) -> bytes:
    """The input list as stored: one JSON object per line, {"path": ...} or,
    for a folder that could not be read, {"path": ..., "error": ...}.
    Non-UTF-8 names are kept (as the records write them)."""
    lines = []
    for item in items:
        text = f'{{"path": {json_string(item.path)}'
        if item.error is not None:
            text += f', "error": {json_string(item.error)}'
        lines.append(text + "}\n")
    return "".join(lines).encode("utf-8")


def parse_inputs(data: bytes) -> list:
    items = []
    for line in data.decode("utf-8").splitlines():
        entry = json.loads(line)
        items.append(inputs.Item(entry["path"], entry.get("error")))
    return items


def cpu_kind() -> dict:
    """This machine's CPU as the stats record it: the model name from
    /proc/cpuinfo (else platform's word), whether it has AVX-512F, and
    OPENBLAS_CORETYPE when set."""
    found = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                found.setdefault(key.strip(), value.strip())
                if "model name" in found and "flags" in found:
                    break
    except OSError:
        pass
    kind = {"model": found.get("model name") or platform.processor() or platform.machine(),
            "avx512f": "avx512f" in found.get("flags", "").split(), "machine": platform.machine()}
    if os.environ.get("OPENBLAS_CORETYPE"):
        kind["openblas_coretype"] = os.environ["OPENBLAS_CORETYPE"]
    return kind


def model_digests(detector) -> dict:
    """{network: SHA-256 hex} of the detector's models ({} for a stand-in)."""
    models = getattr(detector, "models", None)
    return dict(getattr(models, "sha256", None) or {})


def manifest_data(settings: Settings, every: int, items, digests: dict, shard_size: int) -> dict:
    """The manifest of a run: the same bytes from every process given the same
    command (nothing about the host or the time goes in)."""
    listed = inputs_bytes(items)
    return {
        "tool": "mtcnn-cli", "version": VERSION, "layout": LAYOUT,
        "params": {"min_face": settings.min_face, "t1": settings.t1, "t2": settings.t2, "t3": settings.t3},
        "landmarks": settings.landmarks, "max_pixels": settings.max_pixels, "every": every,
        "models": {"folder": None if settings.models is None else os.path.abspath(settings.models),
                   "sha256": digests},
        "inputs": {"file": INPUTS, "count": len(items), "sha256": hashlib.sha256(listed).hexdigest(),
                   "videos": any(is_video(item) for item in items)},
        "shard_size": shard_size, "shards": shard_count(len(items), shard_size),
    }


def manifest_text(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def differences(there: dict, here: dict) -> list[str]:
    """What makes two manifests describe different runs, one phrase each
    ("min_face 60 there, 40 here"). The models' folder may differ (the same
    files on another node): only their digests count."""
    found = []

    def compare(name, a, b):
        if a != b:
            found.append(f"{name} {a} there, {b} here")

    compare("version", there.get("version"), here.get("version"))
    compare("layout", there.get("layout"), here.get("layout"))
    for key in ("min_face", "t1", "t2", "t3"):
        compare(key, (there.get("params") or {}).get(key), here["params"][key])
    compare("landmarks", there.get("landmarks"), here["landmarks"])
    compare("max_pixels", there.get("max_pixels"), here["max_pixels"])
    compare("every", there.get("every"), here["every"])
    theirs = (there.get("models") or {}).get("sha256") or {}
    for name in sorted(set(theirs) | set(here["models"]["sha256"])):
        a, b = theirs.get(name), here["models"]["sha256"].get(name)
        if a != b:
            found.append(f"{name} model sha256 {str(a)[:12]}... there, {str(b)[:12]}... here")
    listed = there.get("inputs") or {}
    if (listed.get("count"), listed.get("sha256")) != (here["inputs"]["count"], here["inputs"]["sha256"]):
        found.append(f"input list of {listed.get('count')} entries (sha256 {str(listed.get('sha256'))[:12]}...) "
                     f"there, {here['inputs']['count']} (sha256 {here['inputs']['sha256'][:12]}...) here")
    compare("shard size", there.get("shard_size"), here["shard_size"])
    return found


def publish(path: str, data: bytes) -> bool:
    """Create `path` holding `data` unless it exists, atomically: the data
    goes to a temporary file that is hard-linked to `path` (which fails if
    `path` exists), so a reader sees the whole file or none, and of two
    processes only one creates it. Returns whether this call created it.
    On a file system without hard links, a rename (the content is the same
    for every process of one run, so a lost race costs nothing)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(temp, path)
            return True
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            if os.path.exists(path):
                return False
            os.replace(temp, path)
            return True
    finally:
        try:
            os.unlink(temp)
        except OSError:
            pass


@dataclass
class Manifest:
    """A run's output folder and its manifest (`data`, as in _manifest.json)."""
    folder: str
    data: dict
    _items: list | None = field(default=None, repr=False)

    @classmethod
    def read(cls, folder) -> "Manifest":
        """Raises ManifestProblem."""
        folder = os.fspath(folder)
        path = os.path.join(folder, MANIFEST)
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read())
            data["shards"], data["shard_size"], data["inputs"]["sha256"]  # noqa: B018 (checked)
        except FileNotFoundError:
            raise ManifestProblem(f"{display(folder)}: no {MANIFEST}: not an output folder of "
                                  f"mtcnn detect --out-dir (or its run never started)") from None
        except OSError as e:
            raise ManifestProblem(f"cannot read {display(path)}: {e.strerror or e}") from None
        except (ValueError, TypeError, KeyError):
            raise ManifestProblem(f"{display(path)} is not a manifest written by mtcnn detect --out-dir") from None
        return cls(folder, data)

    @property
    def shards(self) -> int:
        return int(self.data["shards"])

    @property
    def shard_size(self) -> int:
        return int(self.data["shard_size"])

    @property
    def params(self) -> dict:
        return dict(self.data["params"])

    @property
    def settings(self) -> Settings:
        p = self.data["params"]
        return Settings(models=self.data["models"].get("folder"), min_face=p["min_face"], t1=p["t1"],
                        t2=p["t2"], t3=p["t3"], max_pixels=self.data["max_pixels"],
                        landmarks=self.data["landmarks"])

    def items(self) -> list:
        """The input list, checked against the manifest's digest (read once)."""
        if self._items is None:
            path = os.path.join(self.folder, INPUTS)
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise ManifestProblem(f"cannot read {display(path)}: {e.strerror or e}") from None
            if hashlib.sha256(data).hexdigest() != self.data["inputs"]["sha256"]:
                raise ManifestProblem(f"{display(path)} is not the input list {MANIFEST} describes "
                                      f"(its SHA-256 differs)")
            self._items = parse_inputs(data)
        return self._items

    def shard_items(self, index: int) -> list:
        if not 0 <= index < self.shards:
            raise ValueError(f"shard {index}: the run has shards 0 to {self.shards - 1}")
        size = self.shard_size
        return self.items()[index * size:(index + 1) * size]

    def part_path(self, index: int) -> str:
        return os.path.join(self.folder, part_name(index))

    def stats_path(self, index: int) -> str:
        return os.path.join(self.folder, stats_name(index))

    def is_done(self, index: int) -> bool:
        """A part is done when it and its statistics exist (both are written
        atomically, the part first)."""
        return os.path.isfile(self.part_path(index)) and os.path.isfile(self.stats_path(index))

    def missing(self) -> list[int]:
        return [index for index in range(self.shards) if not self.is_done(index)]


def _check_folder(folder: str) -> None:
    """The folder is ours or empty: it holds only our own names."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ManifestProblem(f"--out-dir {display(folder)}: exists and is not a folder")
    try:
        os.makedirs(folder, exist_ok=True)
        names = os.listdir(folder)
    except OSError as e:
        raise ManifestProblem(f"--out-dir {display(folder)}: {e.strerror or e}") from None
    foreign = sorted(name for name in names if not _OURS.fullmatch(name))
    if foreign:
        raise ManifestProblem(f"--out-dir {display(folder)} holds files that are not a run's parts "
                              f"({display(foreign[0])}{', ...' if len(foreign) > 1 else ''}): "
                              f"give an empty or new folder")


def open_folder(folder: str, data: dict, items) -> Manifest:
    """The run's folder, created or joined: its manifest and input list
    published by the first process, checked by every other. Raises
    ManifestProblem naming the differences."""
    _check_folder(folder)
    manifest_path, inputs_path = os.path.join(folder, MANIFEST), os.path.join(folder, INPUTS)
    try:
        if not os.path.exists(manifest_path):
            if not publish(inputs_path, inputs_bytes(items)):
                with open(inputs_path, "rb") as f:
                    if hashlib.sha256(f.read()).hexdigest() != data["inputs"]["sha256"]:
                        raise ManifestProblem(
                            f"--out-dir {display(folder)}: its {INPUTS} holds another input list "
                            f"(and no {MANIFEST}: a start was cut short?): give another folder")
            publish(manifest_path, manifest_text(data).encode("utf-8"))
    except OSError as e:
        raise ManifestProblem(f"--out-dir {display(folder)}: cannot write: {e.strerror or e}") from None
    manifest = Manifest.read(folder)
    found = differences(manifest.data, data)
    if found:
        raise ManifestProblem(f"--out-dir {display(folder)} holds a run made with other settings: "
                              f"{'; '.join(found)}: give the same inputs and options, or another folder")
    manifest._items = list(items)
    return manifest


def as_manifest(manifest) -> Manifest:
    return manifest if isinstance(manifest, Manifest) else Manifest.read(manifest)


def read_stats(manifest: Manifest, index: int) -> dict:
    """A done part's statistics ({} when unreadable: they only inform)."""
    try:
        with open(manifest.stats_path(index), "rb") as f:
            stats = json.loads(f.read())
        return stats if isinstance(stats, dict) else {}
    except (OSError, ValueError):
        return {}
