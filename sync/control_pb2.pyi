# ruff: noqa
# fmt: off
# mypy: ignore-errors
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterRequest(_message.Message):
    __slots__ = ("edge_id", "namespace", "version", "checksum")
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    namespace: str
    version: str
    checksum: str
    def __init__(self, edge_id: _Optional[str] = ..., namespace: _Optional[str] = ..., version: _Optional[str] = ..., checksum: _Optional[str] = ...) -> None: ...

class RegisterReply(_message.Message):
    __slots__ = ("published_checksum",)
    PUBLISHED_CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    published_checksum: str
    def __init__(self, published_checksum: _Optional[str] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ("edge_id",)
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    def __init__(self, edge_id: _Optional[str] = ...) -> None: ...

class SnapshotReply(_message.Message):
    __slots__ = ("checksum", "version", "config")
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    checksum: str
    version: int
    config: bytes
    def __init__(self, checksum: _Optional[str] = ..., version: _Optional[int] = ..., config: _Optional[bytes] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("edge_id",)
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    def __init__(self, edge_id: _Optional[str] = ...) -> None: ...

class ControlMessage(_message.Message):
    __slots__ = ("reload", "revoke")
    RELOAD_FIELD_NUMBER: _ClassVar[int]
    REVOKE_FIELD_NUMBER: _ClassVar[int]
    reload: Reload
    revoke: Revoke
    def __init__(self, reload: _Optional[_Union[Reload, _Mapping]] = ..., revoke: _Optional[_Union[Revoke, _Mapping]] = ...) -> None: ...

class Reload(_message.Message):
    __slots__ = ("checksum",)
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    checksum: str
    def __init__(self, checksum: _Optional[str] = ...) -> None: ...

class Revoke(_message.Message):
    __slots__ = ("key_hashes",)
    KEY_HASHES_FIELD_NUMBER: _ClassVar[int]
    key_hashes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key_hashes: _Optional[_Iterable[str]] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("edge_id", "checksum", "counters")
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    checksum: str
    counters: _containers.ScalarMap[str, int]
    def __init__(self, edge_id: _Optional[str] = ..., checksum: _Optional[str] = ..., counters: _Optional[_Mapping[str, int]] = ...) -> None: ...

class HeartbeatReply(_message.Message):
    __slots__ = ("published_checksum",)
    PUBLISHED_CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    published_checksum: str
    def __init__(self, published_checksum: _Optional[str] = ...) -> None: ...

class AnalyticsBatch(_message.Message):
    __slots__ = ("edge_id", "source", "batch_id", "records")
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    source: str
    batch_id: str
    records: bytes
    def __init__(self, edge_id: _Optional[str] = ..., source: _Optional[str] = ..., batch_id: _Optional[str] = ..., records: _Optional[bytes] = ...) -> None: ...

class UploadReply(_message.Message):
    __slots__ = ("inserted", "last_id")
    INSERTED_FIELD_NUMBER: _ClassVar[int]
    LAST_ID_FIELD_NUMBER: _ClassVar[int]
    inserted: int
    last_id: int
    def __init__(self, inserted: _Optional[int] = ..., last_id: _Optional[int] = ...) -> None: ...

class CredentialRequest(_message.Message):
    __slots__ = ("edge_id", "key_hash")
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_HASH_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    key_hash: str
    def __init__(self, edge_id: _Optional[str] = ..., key_hash: _Optional[str] = ...) -> None: ...

class CredentialReply(_message.Message):
    __slots__ = ("found", "app")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    found: bool
    app: bytes
    def __init__(self, found: _Optional[bool] = ..., app: _Optional[bytes] = ...) -> None: ...
