"""Tiles cached on disk, keyed by what they were built from, so that a new layer version or run is served at once.

An entry's path names everything its bytes depend on:

    <paths.output>/tiles/<database>/<recipe>/<sources>/<grade>/<tile matrix set>/<z>/<row>/<col>.mvt

`database` digests the database's URL (concurrent servers of several databases keep apart); `recipe` the
generalisation settings (a restart with other settings starts afresh: other recipes' folders are removed). A source is
a collection and the partition it was built from, with a digest of that partition's load or run time (a database made
again numbers from 1 again): `basemap.12-3f9a0c1e` is integration run 12, `landuse.7-…` layer version 7, and the
conflicts carry the last review decision too, `conflicts.5-….r31`, since their properties hold the review status.
`<sources>` is `c~<source>` for a collection's tiles, `d~<digest>` for the dataset's (several sources; the folder's
file SOURCES lists them); the grade is in the path because masks differ by grade. The ETag is a digest of the same path,
so a client's copy is answered 304 before anything is built. When the catalog's sources change, every entry built from
a source no longer current is deleted. The cache holds at most `server.tiles.cache_mb`: past that the least recently
used entries go.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from geoservice.serve.catalog import CONFLICTS, Collection

LOGGER = logging.getLogger(__name__)
SUFFIX = ".mvt"
#: the file naming the sources of a folder's entries
SOURCES = "SOURCES"


def source_of(collection: Collection, review: int | None, revision: int = 0) -> str:
    """What a collection's tiles are built from: its name, partition and that partition's load or run time (a database
    made again numbers its partitions from 1 again), the conflicts also the last review, a written layer its revision."""
    made = hashlib.sha256(collection.modified.encode()).hexdigest()[:8]
    source = f"{collection.name}.{collection.partition_key}-{made}"
    if collection.editable:
        source = f"{source}.e{revision}"
    return f"{source}.r{review or 0}" if collection.name == CONFLICTS else source


@dataclass(frozen=True)
class TileKey:
    """Everything a tile's bytes depend on, besides the recipe."""

    dataset: bool
    sources: tuple[str, ...]
    grade: str
    grid: str
    zoom: int
    row: int
    col: int

    @property
    def folder(self) -> str:
        """The folder of the entries built from the same sources."""
        if not self.dataset:
            return f"c~{self.sources[0]}"
        return "d~" + hashlib.sha256("+".join(self.sources).encode()).hexdigest()[:16]

    @property
    def path(self) -> str:
        return f"{self.folder}/{self.grade}/{self.grid}/{self.zoom}/{self.row}/{self.col}{SUFFIX}"


class TileCache:
    """The disk cache of one server process (entries indexed in memory, least recently used first)."""

    def __init__(self, root: Path, recipe: str, cap_bytes: int) -> None:
        self.recipe, self.cap = recipe, cap_bytes
        self.folder = root / recipe
        self._entries: OrderedDict[str, int] = OrderedDict()   # path under folder -> size
        self._folders: dict[str, frozenset[str]] = {}            # sources folder -> the sources it was built from
        self._size = 0
        self._sources: frozenset[str] | None = None
        self._lock = threading.Lock()
        if root.is_dir():
            for other in root.iterdir():
                if other.name != recipe:
                    shutil.rmtree(other, ignore_errors=True) if other.is_dir() else other.unlink(missing_ok=True)
        if self.folder.is_dir():
            for folder in self.folder.iterdir():
                listed = folder / SOURCES
                if listed.is_file():
                    self._folders[folder.name] = frozenset(listed.read_text(encoding="utf-8").split())
                else:
                    shutil.rmtree(folder, ignore_errors=True)
            found = [(p.stat().st_mtime, p.relative_to(self.folder).as_posix(), p.stat().st_size)
                     for p in self.folder.rglob(f"*{SUFFIX}")]
            for _, path, size in sorted(found):
                self._entries[path] = size
                self._size += size
        self._evict()

    @property
    def size(self) -> int:
        return self._size

    def etag(self, key: TileKey) -> str:
        """A weak ETag: two builds from the same key hold the same features, their bytes may come in another order."""
        return 'W/"' + hashlib.sha256(f"{self.recipe}/{key.path}".encode()).hexdigest()[:32] + '"'

    def get(self, key: TileKey) -> bytes | None:
        """The cached tile, or None. An entry another process wrote (`geoservice tiles seed`, another server on the
        same folder) is taken into the index: its path names what it was built from, so it is as good as our own."""
        path = key.path
        with self._lock:
            known = path in self._entries
            if known:
                self._entries.move_to_end(path)
        try:
            data = (self.folder / path).read_bytes()
        except OSError:  # not there, removed or unreadable: built again
            if known:
                self._forget(path)
            return None
        if not known:
            with self._lock:
                self._folders.setdefault(key.folder, frozenset(key.sources))
                self._size += len(data) - self._entries.pop(path, 0)
                self._entries[path] = len(data)
            self._evict()
        return data

    def put(self, key: TileKey, data: bytes) -> None:
        """Keep a tile (written whole, then renamed into place), evicting the least recently used past the cap."""
        if not self.cap or len(data) > self.cap or (self._sources is not None and not set(key.sources) <= self._sources):
            return  # no cache, larger than the whole cache, or built from a source replaced meanwhile
        path = key.path
        target = self.folder / path
        with self._lock:
            self._folders.setdefault(key.folder, frozenset(key.sources))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            listed = self.folder / key.folder / SOURCES
            if not listed.exists():
                listed.write_text("\n".join(key.sources), encoding="utf-8")
            partial = target.with_name(f".{target.name}.{threading.get_ident()}")
            partial.write_bytes(data)
            os.replace(partial, target)
        except OSError as exc:  # a full or read-only disk: the tile is served all the same, only not kept
            LOGGER.warning("tile cache: cannot write %s: %s", target, exc.strerror)
            return
        with self._lock:
            self._size += len(data) - self._entries.pop(path, 0)
            self._entries[path] = len(data)
        self._evict()

    def retain(self, sources: frozenset[str]) -> None:
        """Delete the entries built from any source not in `sources` (the catalog's current ones)."""
        if sources == self._sources:
            return
        with self._lock:
            self._sources = sources
            stale = {folder for folder, built_from in self._folders.items() if not built_from <= sources}
            for path in [p for p in self._entries if p.split("/", 1)[0] in stale]:
                self._size -= self._entries.pop(path)
            for folder in stale:
                del self._folders[folder]
        for folder in stale:
            shutil.rmtree(self.folder / folder, ignore_errors=True)

    def _forget(self, path: str) -> None:
        with self._lock:
            self._size -= self._entries.pop(path, 0)

    def _evict(self) -> None:
        while True:
            with self._lock:
                if self._size <= self.cap or not self._entries:
                    return
                path, size = self._entries.popitem(last=False)
                self._size -= size
            (self.folder / path).unlink(missing_ok=True)
