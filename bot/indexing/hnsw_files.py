"""The unused slots of embedded Chroma's HNSW segment files, zeroed.

hnswlib allocates its element table for the whole capacity with `malloc` and writes all of it to
`data_level0.bin` (and the element levels to `length.bin`), but fills only the slots it uses. The
rest is whatever the allocator handed back: freed memory of the same process, which can hold the
text of documents Chroma has just deleted. Erasing a person (`supportbot privacy forget`) must not
leave their words there, so after compaction every slot past the element count is set to zero.
Slots past the count are never read; hnswlib clears a slot itself before it uses it.

Only files whose header is the version this was written against (1) and whose sizes agree with
that header are touched; anything else is left as it is and logged.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

log = logging.getLogger(__name__)

# header.bin: int32 version, then size_t offset_level0, max_elements, cur_element_count,
# size_data_per_element (the rest of the header is not needed here).
_HEADER = struct.Struct("<iQQQQ")
_LEVEL_BYTES = 4  # length.bin: one int32 level per slot
_VERSION = 1


def clear_unused_slots(chroma_dir: Path) -> int:
    """Zero the unused slots of every HNSW segment under `chroma_dir`; return how many segments
    had bytes there that were not zero."""
    cleared = 0
    for header in sorted(chroma_dir.glob("*/header.bin")):
        try:
            cleared += _clear_segment(header.parent)
        except OSError as exc:
            log.warning("could not clear the unused slots of %s (%s)", header.parent, exc)
    return cleared


def _clear_segment(segment: Path) -> bool:
    raw = (segment / "header.bin").read_bytes()
    if len(raw) < _HEADER.size:
        log.warning("skipped %s: its HNSW header is %d bytes", segment, len(raw))
        return False
    version, _offset, capacity, count, slot_bytes = _HEADER.unpack_from(raw)
    data, levels = segment / "data_level0.bin", segment / "length.bin"
    if (version != _VERSION or not 0 <= count <= capacity or slot_bytes <= 0
            or not data.is_file() or data.stat().st_size != capacity * slot_bytes
            or not levels.is_file() or levels.stat().st_size != capacity * _LEVEL_BYTES):
        log.warning("skipped %s: its HNSW files are not in the layout this version clears "
                    "(header version %d, %d of %d slots)", segment, version, count, capacity)
        return False
    dirty = _zero_from(data, count * slot_bytes)
    dirty = _zero_from(levels, count * _LEVEL_BYTES) or dirty
    return dirty


def _zero_from(path: Path, start: int) -> bool:
    """Zero `path` from byte `start` to its end, in place (the files stay open in Chroma, and a
    half-done run leaves only some unused bytes zeroed, never a used slot changed)."""
    with path.open("r+b") as handle:
        handle.seek(start)
        tail = handle.read()
        if not any(tail):
            return False
        handle.seek(start)
        handle.write(bytes(len(tail)))
        handle.flush()
    return True
