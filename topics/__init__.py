"""The topic catalog and every record schema that crosses a Kafka topic.

Imports nothing but the standard library and msgspec, so every other stage may depend on it.
"""

from topics.errors import DecodeError, TopicsError

__all__ = ["DecodeError", "TopicsError"]
