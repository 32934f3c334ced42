"""The topic helpers of tests and benches, on the session's real broker: what they delete is gone."""

from __future__ import annotations

import pytest

from ops.stack import kafka
from ops.stack.testing import LocalStack, create_topic, delete_topics, delete_topics_with_prefix, topic_name

pytestmark = pytest.mark.integration


def names_on_broker(stack: LocalStack) -> set[str]:
    return set(kafka.admin(stack.settings).list_topics(timeout=10).topics)


def test_delete_topics_waits_until_they_are_gone_and_ignores_missing_ones(stack: LocalStack) -> None:
    # Arrange
    made = [create_topic(stack.settings, topic_name(f"delete-{i}"), 2) for i in range(2)]

    # Act
    delete_topics(stack.settings, [*made, topic_name("never-made")])

    # Assert
    assert not set(made) & names_on_broker(stack)


def test_delete_topics_with_prefix_takes_every_topic_of_the_prefix_and_no_other(stack: LocalStack) -> None:
    # Arrange
    prefix = topic_name("run") + "."
    own = [create_topic(stack.settings, prefix + name) for name in ("ticks.quotes", "app-__assignor-__leader")]
    other = create_topic(stack.settings, topic_name("other"))

    # Act
    deleted = delete_topics_with_prefix(stack.settings, prefix)

    # Assert
    on_broker = names_on_broker(stack)
    assert sorted(deleted) == sorted(own)
    assert not set(own) & on_broker
    assert other in on_broker
    delete_topics(stack.settings, [other])


def test_delete_topics_with_an_empty_prefix_is_refused(stack: LocalStack) -> None:
    with pytest.raises(ValueError, match="empty prefix"):
        delete_topics_with_prefix(stack.settings, "")
