from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import postroom
from postroom.errors import CodecError

pytestmark = pytest.mark.unit


def test_defaults_fill_id_time_and_content_type() -> None:
    e = postroom.Event(type="order.created", source="/shop", data={"id": 1})
    assert len(e.id) == 36 and e.id[14] == "4"
    assert e.time is not None and e.time.endswith("Z")
    assert e.datacontenttype == "application/json"
    assert e.json() == {"id": 1}
    assert e.specversion == "1.0"
    assert postroom.Event(type="t", source="/s", data="hi").datacontenttype.startswith("text/plain")
    assert postroom.Event(type="t", source="/s", data=b"\x00").datacontenttype == \
        "application/octet-stream"
    assert postroom.Event(type="t", source="/s", time=None).time is None


def test_ids_are_unique() -> None:
    assert len({postroom.Event(type="t", source="/s").id for _ in range(1000)}) == 1000


def test_datetime_time_must_be_aware() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert postroom.Event(type="t", source="/s", time=when).time == "2026-01-02T03:04:05Z"
    plus_one = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=1)))
    assert postroom.Event(type="t", source="/s", time=plus_one).time == "2026-01-02T03:04:05+01:00"
    with pytest.raises(ValueError, match="timezone-aware"):
        postroom.Event(type="t", source="/s", time=datetime(2026, 1, 1))


@pytest.mark.parametrize(("kwargs", "attribute"), [
    ({"type": ""}, "type"),
    ({"source": ""}, "source"),
    ({"source": "has space"}, "source"),
    ({"id": ""}, "id"),
    ({"specversion": "0.3"}, "specversion"),
    ({"time": "yesterday"}, "time"),
    ({"subject": ""}, "subject"),
    ({"datacontenttype": "json"}, "datacontenttype"),
    ({"dataschema": "not/absolute"}, "dataschema"),
    ({"extensions": {"Bad-Name": "x"}}, "Bad-Name"),
    ({"extensions": {"data": "x"}}, "data"),
])
def test_every_invalid_attribute_is_named(kwargs: dict, attribute: str) -> None:
    args = {"type": "t", "source": "/s", **kwargs}
    with pytest.raises(CodecError) as info:
        postroom.Event(**args)
    assert info.value.attribute == attribute
    assert attribute in str(info.value)
    assert info.value.retriable is False
    assert isinstance(info.value, ValueError)


def test_structured_json_round_trip_and_shape() -> None:
    e = postroom.Event(type="t", source="/s", subject="x", data={"a": [1, 2]},
                       extensions={"tenant": "acme", "retries": 3, "sampled": True})
    doc = json.loads(e.to_json())
    assert doc["data"] == {"a": [1, 2]}
    assert doc["tenant"] == "acme" and doc["retries"] == "3" and doc["sampled"] == "true"
    assert postroom.Event.from_json(e.to_json()) == e


def test_binary_data_uses_base64_in_json() -> None:
    e = postroom.Event(type="t", source="/s", data=bytes(range(256)))
    doc = json.loads(e.to_json())
    assert "data_base64" in doc and "data" not in doc
    assert postroom.Event.from_json(e.to_json()).data == bytes(range(256))


def test_from_json_errors_name_the_attribute() -> None:
    with pytest.raises(CodecError, match="not valid JSON"):
        postroom.Event.from_json("{")
    with pytest.raises(CodecError) as info:
        postroom.Event.from_json('{"specversion":"1.0","id":"1","type":"t"}')
    assert info.value.attribute == "source"


def test_events_are_values() -> None:
    e = postroom.Event(type="t", source="/s", id="1", time=None)
    assert e == postroom.Event(type="t", source="/s", id="1", time=None)
    assert e != postroom.Event(type="t", source="/s", id="2", time=None)
    assert copy.deepcopy(e) == e
    assert "type='t'" in repr(e)
    with pytest.raises(TypeError):
        hash(e)


def test_foreign_sdk_structured_event_is_read() -> None:
    from cloudevents.conversion import to_structured
    from cloudevents.http import CloudEvent

    foreign = CloudEvent({"type": "com.example.sdk", "source": "/sdk", "subject": "s1"},
                         {"hello": "world"})
    _, body = to_structured(foreign)
    e = postroom.Event.from_json(body)
    assert e.type == "com.example.sdk" and e.subject == "s1"
    assert e.json() == {"hello": "world"}
    assert e.id == foreign["id"]


attribute_text = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e),
                         min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(id=attribute_text, source=attribute_text, type_=attribute_text,
       data=st.one_of(st.none(), st.binary(max_size=200)),
       subject=st.one_of(st.none(), st.text(min_size=1, max_size=30)),
       extensions=st.dictionaries(st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True).filter(
           lambda n: n not in {"id", "source", "specversion", "type", "time", "subject",
                               "datacontenttype", "dataschema", "data"}),
           st.text(max_size=20), max_size=4))
def test_json_round_trip_property(id: str, source: str, type_: str, data: bytes | None,
                                  subject: str | None, extensions: dict[str, str]) -> None:
    e = postroom.Event(type=type_, source=source, id=id, data=data, subject=subject,
                       extensions=extensions)
    assert postroom.Event.from_json(e.to_json()) == e
