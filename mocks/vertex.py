"""MockVertex: Vertex AI's Gemini paths plus an OAuth token endpoint, as a raw ASGI app, for tests.

- `POST /token`: Google's OAuth 2.0 JWT-bearer grant, as google-auth's service-account credentials use
  it (the service-account JSON's `token_uri` points here). The assertion's RS256 signature is checked
  with the public half of the service account's key; the answer is `{access_token, expires_in,
  token_type}`. Every other path requires one of the tokens issued here.
- `/{v1|v1beta1}/projects/{project}/locations/{region}/publishers/google/models/{model}:{method}` for
  `generateContent`, `streamGenerateContent`, `countTokens` and `predict` (text embeddings).
- `…/publishers/anthropic/models/{model}:rawPredict` and `:streamRawPredict`: Claude
  (mocks/vertex_anthropic.py).
- `GET /v1beta1/publishers/google/models`: the publisher model list.

Standalone: python -m mocks.vertex --port 9303 --service-account FILE [--project P]
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
import secrets
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl

import orjson
import uvicorn
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mocks import gemini_answer as answers
from mocks.asgi import RecordedRequest, Reply
from mocks.gemini import JSON, MockGemini
from mocks.gemini_errors import GoogleError, invalid, unauthenticated
from mocks.gemini_validate import parse
from mocks.openai_models import count_tokens
from mocks.vertex_anthropic import raw_predict

TOKEN_PATH = "/token"
_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_MODEL_PATH = re.compile(
    r"^/(v1|v1beta1)/projects/([^/]+)/locations/([^/]+)/publishers/([^/]+)/models/([^:/]+):([A-Za-z]+)$"
)
_LIST_PATH = re.compile(r"^/v1beta1/publishers/google/models$")
_CLOCK_SKEW_S = 300


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _oauth_error(error: str, description: str) -> Reply:
    return Reply(400, [JSON], orjson.dumps({"error": error, "error_description": description}))


class MockVertex(MockGemini):
    """Vertex AI for one project and service account. Besides MockGemini's knobs: `token_lifetime_s`
    (the `expires_in` of new tokens) and the observation `token_requests` (tokens minted)."""

    namespace = "google.cloud.aiplatform.v1"
    token_requests: int
    token_lifetime_s: int

    def __init__(
        self, service_account: dict[str, Any], project: str, *, record_requests: bool = True
    ) -> None:
        key = serialization.load_pem_private_key(service_account["private_key"].encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("the service account's key must be RSA")
        self.public_key = key.public_key()
        self.client_email: str = service_account["client_email"]
        self.key_id: str = service_account["private_key_id"]
        self.project = project
        self.tokens: dict[str, float] = {}  # access token → expiry (epoch seconds); kept across reset()
        super().__init__(None, record_requests=record_requests)

    def reset(self) -> None:
        super().reset()
        self.token_requests = 0
        self.token_lifetime_s = 3599

    def _authorize(self, request: RecordedRequest) -> None:
        if request.path == TOKEN_PATH:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or self.tokens.get(token.strip(), 0) < time.time():
            raise unauthenticated()

    def _route(self, request: RecordedRequest) -> Reply:
        if request.path == TOKEN_PATH and request.method == "POST":
            return self._mint(request)
        if _LIST_PATH.match(request.path) and request.method == "GET":
            models = [{"name": f"publishers/google/models/{name}", "versionId": "001", "launchStage": "GA"}
                      for name in answers.MODELS]  # fmt: skip
            return Reply(200, [JSON], orjson.dumps({"publisherModels": models}))
        match = _MODEL_PATH.match(request.path)
        if match is None or request.method != "POST":
            raise GoogleError(404, f"The requested URL {request.path} was not found on this server.")
        _, project, region, publisher, model, method = match.groups()
        resource = f"projects/{project}/locations/{region}/publishers/{publisher}/models/{model}"
        if project != self.project:
            raise GoogleError(
                403,
                f"Permission 'aiplatform.endpoints.predict' denied on resource "
                f"'//aiplatform.googleapis.com/{resource}' (or it may not exist).",
            )
        if publisher == "anthropic" and method in ("rawPredict", "streamRawPredict"):
            stream = method == "streamRawPredict"
            return raw_predict(model, request.body, stream=stream, cache_read=self.cached_tokens)
        info = answers.MODELS.get(model)
        if publisher != "google" or info is None:
            raise GoogleError(
                404,
                f"Publisher Model `{resource}` was not found or your project does not have access to it. "
                "Please ensure you are using a valid model version.",
            )
        body = parse(request.body)
        if method in ("generateContent", "streamGenerateContent") and not info.dimensions:
            return self.generate(request, body, info, stream=method == "streamGenerateContent")
        if method == "countTokens" and not info.dimensions:
            return Reply(200, [JSON], orjson.dumps({"totalTokens": answers.prompt_tokens(body)}))
        if method == "predict" and info.dimensions:
            return self._predict(body, info)
        raise GoogleError(400, f"{method} is not supported by the model {resource}.")

    def _predict(self, body: dict[str, Any], info: answers.ModelInfo) -> Reply:
        texts = check_predict(body)
        parameters = body.get("parameters") or {}
        dimensions = int(parameters.get("outputDimensionality") or info.dimensions)
        predictions = [
            {
                "embeddings": {
                    "statistics": {"truncated": False, "token_count": count_tokens(text)},
                    "values": answers.vector(text, dimensions),
                }
            }
            for text in texts
        ]
        characters = sum(len(text) for text in texts)
        metadata = {"billableCharacterCount": characters}
        return Reply(200, [JSON], orjson.dumps({"predictions": predictions, "metadata": metadata}))

    # --- the OAuth token endpoint ------------------------------------------------------------------------

    def _mint(self, request: RecordedRequest) -> Reply:
        self.token_requests += 1
        form = dict(parse_qsl(request.body.decode("latin-1")))
        if form.get("grant_type") != _GRANT:
            return _oauth_error("unsupported_grant_type", "Invalid grant_type: " + form.get("grant_type", ""))
        problem = self._check_assertion(form.get("assertion", ""))
        if problem is not None:
            return problem
        token = "ya29.mock-" + secrets.token_urlsafe(32)
        self.tokens[token] = time.time() + self.token_lifetime_s
        body = {"access_token": token, "expires_in": self.token_lifetime_s, "token_type": "Bearer"}
        return Reply(200, [JSON], orjson.dumps(body))

    def _check_assertion(self, assertion: str) -> Reply | None:
        """None when the JWT is signed by the service account's key and its claims are Google's."""
        try:
            header_b64, claims_b64, signature_b64 = assertion.split(".")
            header, claims = json.loads(_unb64(header_b64)), json.loads(_unb64(claims_b64))
            signature = _unb64(signature_b64)
        except (ValueError, binascii.Error):
            return _oauth_error("invalid_request", "Invalid JWT: not a signed JWT.")
        if header.get("alg") != "RS256":
            return _oauth_error("invalid_grant", "Invalid JWT Signature.")
        try:
            signed = f"{header_b64}.{claims_b64}".encode()
            self.public_key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return _oauth_error("invalid_grant", "Invalid JWT Signature.")
        if claims.get("iss") != self.client_email or header.get("kid") != self.key_id:
            return _oauth_error("invalid_grant", "Invalid grant: account not found")
        now, issued, expires = time.time(), claims.get("iat", 0), claims.get("exp", 0)
        if not (issued - _CLOCK_SKEW_S <= now < expires and expires - issued <= 3600):
            return _oauth_error(
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
                "Check your iat and exp values in the JWT claim.",
            )
        if not str(claims.get("aud", "")).endswith(TOKEN_PATH):
            return _oauth_error("invalid_grant", "Invalid JWT: Failed audience check.")
        if "cloud-platform" not in str(claims.get("scope", "")):
            return _oauth_error("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        return None


def check_predict(body: dict[str, Any]) -> list[str]:
    """The texts of a Vertex `predict` body for a text embedding model."""
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise invalid("Invalid JSON payload received. 'instances' must be a non-empty list.")
    if len(instances) > 250:
        raise GoogleError(400, f"{len(instances)} instances are more than the 250 allowed per request.")
    texts = []
    for instance in instances:
        content = instance.get("content") if isinstance(instance, dict) else None
        if not isinstance(content, str):
            raise invalid("Invalid instance: 'content' must be a string.")
        texts.append(content)
    return texts


def service_account_info(token_uri: str, project_id: str = "mock-project") -> dict[str, Any]:
    """A service-account JSON (as a dict) with a fresh 2048-bit RSA key, for tests and the standalone mock."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    email = f"tollgate-test@{project_id}.iam.gserviceaccount.com"
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem.decode(),
        "client_email": email,
        "client_id": str(secrets.randbelow(10**20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mocks.vertex", description="Serve a mock of Vertex AI.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9303)
    parser.add_argument("--service-account", required=True, help="the service-account JSON file to accept")
    parser.add_argument("--project", default=None, help="default: the JSON's project_id")
    args = parser.parse_args(argv)
    with open(args.service_account) as file:
        info = json.load(file)
    app = MockVertex(info, args.project or info["project_id"], record_requests=False)
    uvicorn.run(app, host=args.host, port=args.port, http="httptools", access_log=False, lifespan="off",
                log_level="warning")  # fmt: skip


if __name__ == "__main__":
    main()
