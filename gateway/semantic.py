"""The response cache's semantic mode: after an exact miss, a near-identical conversation is a hit.

The whole conversation (system prompt included) is embedded, as `role: text` lines, and compared by
cosine with the conversations already answered in the same bucket: the same scope, slug, model and
every other body field (sampling parameters, tools), so only the wording of the messages may differ. A
hit needs cosine ≥ `threshold` and the same negations (`polarity`). Conversations with tool turns, or
longer than `max_messages`, are not embedded (their answers depend on more than their wording).

Embeddings come from `cache.embedding` (an LLM of this gateway, through its own adapter), else from the
local model of the `semantic` extra: WordLlama, whose wheel ships its weights (16 MB), loaded from the
installed package, never downloaded. The index is in this process, in numpy (one matrix per bucket,
bounded, entries expiring with their answers), or, with the Redis backend, in Redis beside the answers
(`RedisVectorIndex`), so every gateway finds what any of them stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import numpy as np
import orjson

from gateway.cache import NOT_KEYED
from providers.base import Call, Operation

if TYPE_CHECKING:
    import aiohttp

    from gateway.context import RequestContext
    from sync.model import CacheSettings, EmbeddingRef
    from sync.snapshot import Snapshot

log = logging.getLogger("tollgate.cache")

MAX_VECTORS = 10_000  # per process, over every bucket: the oldest go first


class Embedder(Protocol):
    name: str

    async def embed(self, text: str) -> np.ndarray[Any, Any]: ...


class LocalEmbedder:
    """WordLlama's bundled model (pip install 'tollgate[semantic]'): 256 dimensions, ~1 ms a text."""

    name = "local"

    def __init__(self) -> None:
        self._model: Any = None
        self._loading = asyncio.Lock()

    @staticmethod
    def available() -> bool:
        try:
            import wordllama  # noqa: F401
        except ImportError:
            return False
        return True

    async def embed(self, text: str) -> np.ndarray[Any, Any]:
        if self._model is None:
            async with self._loading:
                if self._model is None:
                    self._model = await asyncio.to_thread(_load_wordllama)
        vectors = await asyncio.to_thread(self._model.embed, [text], norm=True)
        return np.asarray(vectors[0], dtype=np.float32)


def _load_wordllama() -> Any:
    import wordllama
    from wordllama import WordLlama

    # The wheel keeps the tokenizer under tokenizers/, where the loader looks for its download cache:
    # pointing the cache there finds every file in the package, and downloads are refused.
    return WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)


class LlmEmbedder:
    """`cache.embedding: {llm, model}`: an embeddings call through that LLM's own adapter."""

    name = "llm"

    def __init__(self, ref: EmbeddingRef, http: Any, snapshot: Any) -> None:
        self.ref = ref
        self._http: aiohttp.ClientSession = http
        self._snapshot: Any = snapshot  # a callable giving the current snapshot

    async def embed(self, text: str) -> np.ndarray[Any, Any]:
        snapshot: Snapshot = self._snapshot()
        llm = snapshot.llms.get(self.ref.llm)
        if llm is None:
            raise LookupError(f"cache.embedding: LLM '{self.ref.llm}' is not served here")
        model = self.ref.model or llm.default_model or ""
        body = orjson.dumps({"model": model, "input": text})
        call = Call(op=Operation.EMBEDDINGS, body=body, model=model)
        request = await llm.provider.request(call)
        timeout = llm.provider.timeout
        async with self._http.request(
            request.method, request.url, headers=request.headers, data=request.body, timeout=timeout
        ) as response:
            raw = await response.read()
            if response.status != 200:
                raise LookupError(f"cache.embedding: LLM '{self.ref.llm}' answered HTTP {response.status}")
            reply = llm.provider.response(call, raw, response.headers)
        vector = np.asarray(orjson.loads(reply.body)["data"][0]["embedding"], dtype=np.float32)
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector


NEGATIONS = frozenset(
    {"not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "cannot", "without", "nowhere"}
)
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def polarity(text: str) -> tuple[str, ...]:
    """The negations of a text, sorted: a hit needs the same ones. Embeddings that average their tokens
    (the local model) put "What is not the capital of France?" at cosine 0.97 from the question without
    "not" (bench/semantic.py); no threshold that admits paraphrases keeps such pairs apart, this does."""
    words = _WORD.findall(text.lower())
    return tuple(sorted(w for w in words if w in NEGATIONS or w.endswith("n't")))


class Bucket:
    __slots__ = ("expires", "keys", "polarities", "vectors")

    def __init__(self, dimensions: int) -> None:
        self.vectors = np.empty((0, dimensions), dtype=np.float32)
        self.keys: list[str] = []
        self.expires: list[float] = []
        self.polarities: list[tuple[str, ...]] = []


class VectorIndex:
    """Normalised vectors per bucket; a search is one matrix-vector product."""

    def __init__(self, max_vectors: int = MAX_VECTORS) -> None:
        self.max_vectors = max_vectors
        self._buckets: dict[str, Bucket] = {}
        self._order: list[tuple[str, str]] = []  # (bucket, key), oldest first

    def search(
        self, bucket: str, vector: np.ndarray[Any, Any], threshold: float, negations: tuple[str, ...] = ()
    ) -> str | None:
        """The key of the nearest live entry at cosine ≥ `threshold` with the same `negations`."""
        found = self._buckets.get(bucket)
        if found is None or not found.keys or found.vectors.shape[1] != vector.shape[0]:
            return None
        scores = found.vectors @ vector
        now = time.monotonic()
        for index in np.argsort(-scores)[:8]:
            if scores[index] < threshold:
                return None
            if found.expires[index] > now and found.polarities[index] == negations:
                return str(found.keys[index])
        return None

    def add(
        self,
        bucket: str,
        vector: np.ndarray[Any, Any],
        key: str,
        ttl_s: float,
        negations: tuple[str, ...] = (),
    ) -> None:
        found = self._buckets.get(bucket)
        if found is None or found.vectors.shape[1] != vector.shape[0]:
            found = self._buckets[bucket] = Bucket(vector.shape[0])
        if key in found.keys:
            return
        found.vectors = np.vstack([found.vectors, vector[np.newaxis, :]])
        found.keys.append(key)
        found.expires.append(time.monotonic() + ttl_s)
        found.polarities.append(negations)
        self._order.append((bucket, key))
        while len(self._order) > self.max_vectors:
            self._drop(*self._order.pop(0))

    def _drop(self, bucket: str, key: str) -> None:
        found = self._buckets.get(bucket)
        if found is None or key not in found.keys:
            return
        index = found.keys.index(key)
        found.vectors = np.delete(found.vectors, index, axis=0)
        del found.keys[index]
        del found.expires[index]
        del found.polarities[index]
        if not found.keys:
            del self._buckets[bucket]

    def __len__(self) -> int:
        return len(self._order)

    async def find(
        self, bucket: str, vector: np.ndarray[Any, Any], threshold: float, negations: tuple[str, ...]
    ) -> str | None:
        return self.search(bucket, vector, threshold, negations)

    async def put(
        self, bucket: str, vector: np.ndarray[Any, Any], key: str, ttl_s: float, negations: tuple[str, ...]
    ) -> None:
        self.add(bucket, vector, key, ttl_s, negations)


class Index(Protocol):
    async def find(
        self, bucket: str, vector: np.ndarray[Any, Any], threshold: float, negations: tuple[str, ...]
    ) -> str | None: ...

    async def put(
        self, bucket: str, vector: np.ndarray[Any, Any], key: str, ttl_s: float, negations: tuple[str, ...]
    ) -> None: ...


class RedisVectorIndex:
    """The vectors in Redis beside the answers (`cache: {backend: redis}`), so every gateway finds what
    any of them stored. One hash per bucket: field = the entry's key, value = msgpack [expiry (Unix ms),
    negations, float32 bytes]. A search reads its bucket (HGETALL) and scores it here with numpy: this
    works on any Redis (RediSearch's vector search is a module that many deployments do not have), and a
    bucket holds only conversations that differ in wording alone, so it stays small (MAX_PER_BUCKET)."""

    MAX_PER_BUCKET = 2000

    def __init__(self, redis: Any) -> None:
        self.redis = redis  # a pipeline/counters/resp.py RedisConnection

    @staticmethod
    def _key(bucket: str) -> bytes:
        return f"{{tollgate:}}semantic:{bucket}".encode()

    async def find(
        self, bucket: str, vector: np.ndarray[Any, Any], threshold: float, negations: tuple[str, ...]
    ) -> str | None:
        reply = await self.redis.call(b"HGETALL", self._key(bucket))
        if not reply:
            return None
        now_ms = time.time() * 1000
        keys, rows = [], []
        for field, value in zip(reply[::2], reply[1::2], strict=True):
            expires_ms, polar, raw = _read_entry(bytes(value))
            vector_of = np.frombuffer(raw, dtype=np.float32)
            if expires_ms > now_ms and tuple(polar) == negations and vector_of.shape == vector.shape:
                keys.append(bytes(field).decode())
                rows.append(vector_of)
        if not rows:
            return None
        scores = np.vstack(rows) @ vector
        best = int(np.argmax(scores))
        return keys[best] if scores[best] >= threshold else None

    async def put(
        self, bucket: str, vector: np.ndarray[Any, Any], key: str, ttl_s: float, negations: tuple[str, ...]
    ) -> None:
        name = self._key(bucket)
        expires_ms = int((time.time() + ttl_s) * 1000)
        entry = _entry_codec.encode([expires_ms, list(negations), vector.astype(np.float32).tobytes()])
        args = (key.encode(), entry, int(ttl_s * 1000), self.MAX_PER_BUCKET)
        await self.redis.call(b"EVAL", _PUT, 1, name, *args)


# KEYS: the bucket. ARGV: field, entry, ttl ms, most entries. A full bucket takes no more (its entries
# serve until it expires); the bucket lives as long as its longest-lived entry.
_PUT = b"""
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
"""
_entry_codec = msgspec.msgpack.Encoder()
_entry_decoder = msgspec.msgpack.Decoder(tuple[int, list[str], bytes])


def _read_entry(value: bytes) -> tuple[int, list[str], bytes]:
    return _entry_decoder.decode(value)


def conversation(ctx: RequestContext, settings: CacheSettings) -> str | None:
    """The text to embed, or None when this call is not for the semantic cache."""
    doc = ctx.body.doc
    messages = doc.get("messages") if isinstance(doc, dict) else None
    if not isinstance(messages, list) or not messages or len(messages) > settings.max_messages:
        return None
    lines = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") == "tool" or message.get("tool_calls"):
            return None
        content = message.get("content")
        if isinstance(content, list):
            parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
            if len(parts) != len(content):
                return None  # images, audio, files: not the wording alone
            content = " ".join(str(p) for p in parts)
        if not isinstance(content, str):
            return None
        lines.append(f"{message.get('role')}: {content}")
    return "\n".join(lines)


def bucket_of(ctx: RequestContext, settings: CacheSettings, slug: str) -> str:
    """Everything a semantic hit must share with the stored call: all but the messages' wording."""
    doc = ctx.body.doc if isinstance(ctx.body.doc, dict) else {}
    scope = "*" if settings.scope == "global" else f"app:{ctx.app.id if ctx.app else ''}"
    rest = {k: v for k, v in doc.items() if k not in NOT_KEYED and k != "messages"}
    model = ctx.call.model if ctx.call is not None else ""
    blob = orjson.dumps([scope, slug, model, rest], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()
