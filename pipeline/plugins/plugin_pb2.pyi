# ruff: noqa
# fmt: off
# mypy: ignore-errors
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FilterRequest(_message.Message):
    __slots__ = ("filter", "config_json", "body", "metadata", "streamed")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FILTER_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    STREAMED_FIELD_NUMBER: _ClassVar[int]
    filter: str
    config_json: bytes
    body: bytes
    metadata: _containers.ScalarMap[str, str]
    streamed: bool
    def __init__(self, filter: _Optional[str] = ..., config_json: _Optional[bytes] = ..., body: _Optional[bytes] = ..., metadata: _Optional[_Mapping[str, str]] = ..., streamed: _Optional[bool] = ...) -> None: ...

class FilterResponse(_message.Message):
    __slots__ = ("action", "reason", "body")
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PASS: _ClassVar[FilterResponse.Action]
        BLOCK: _ClassVar[FilterResponse.Action]
        REWRITE: _ClassVar[FilterResponse.Action]
    PASS: FilterResponse.Action
    BLOCK: FilterResponse.Action
    REWRITE: FilterResponse.Action
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    action: FilterResponse.Action
    reason: str
    body: bytes
    def __init__(self, action: _Optional[_Union[FilterResponse.Action, str]] = ..., reason: _Optional[str] = ..., body: _Optional[bytes] = ...) -> None: ...
