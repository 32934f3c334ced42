"""Type stub of the compiled frame reader (processors/book/_framejson.pyx)."""

from topics.records import MboFrame

def parse_mbo_frame(data: bytes) -> MboFrame | None: ...
