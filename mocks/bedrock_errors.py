"""AWS-shaped errors for MockBedrock, and the SigV4 check that raises the authentication ones.

An AWS REST-JSON error is `{"message": "..."}` with its class in the `x-amzn-ErrorType` header, which is
where the AWS SDKs read it from. The signature is recomputed with botocore's own signer over the request
as it arrived (raw path, signed headers, body) and compared with the client's.
"""

from __future__ import annotations

import datetime
import hmac
from collections.abc import Mapping, Sequence

import orjson
from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]

_NAMESPACE = {
    "UnrecognizedClientException": "com.amazon.coral.service",
    "InvalidSignatureException": "com.amazon.coral.service",
    "IncompleteSignatureException": "com.amazon.coral.service",
    "MissingAuthenticationTokenException": "com.amazon.coral.service",
}
# The error class a failure of each status has (the knob `fail_status` picks it by status).
CLASS_BY_STATUS = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
    "Access Key and signing method. Consult the service documentation for details."
)
_MAX_SKEW = datetime.timedelta(minutes=5)


class AwsError(Exception):
    """One error response: status, class (x-amzn-ErrorType) and message."""

    def __init__(
        self, status: int, kind: str, message: str, headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.headers = headers

    def error_type(self) -> str:
        namespace = _NAMESPACE.get(self.kind, "com.amazon.bedrock")
        return f"{self.kind}:http://internal.amazon.com/coral/{namespace}/"

    def body(self) -> bytes:
        return orjson.dumps({"message": self.message})


def validation(message: str) -> AwsError:
    return AwsError(400, "ValidationException", message)


def constraint(path: str, value: object, rule: str) -> AwsError:
    """Coral's wording for a member outside its modelled constraints."""
    shown = orjson.dumps(value).decode() if not isinstance(value, str) else value
    where = f"Value '{shown}' at '{path}'"
    return validation(
        f"1 validation error detected: {where} failed to satisfy constraint: Member must {rule}"
    )


def _authorization(value: str) -> dict[str, str]:
    scheme, _, rest = value.partition(" ")
    if scheme != "AWS4-HMAC-SHA256":
        raise AwsError(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    fields = dict(part.strip().partition("=")[::2] for part in rest.split(","))
    missing = [name for name in ("Credential", "SignedHeaders", "Signature") if not fields.get(name)]
    if missing:
        raise AwsError(
            400,
            "IncompleteSignatureException",
            f"Authorization header requires '{missing[0]}' parameter. Authorization={value}",
        )
    return fields


def verify_sigv4(
    credentials: Mapping[str, tuple[str, str | None]],
    region: str,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime.datetime | None = None,
) -> None:
    """Raise the error AWS answers when the request's SigV4 signature is missing or wrong.

    `url` is the request's URL as it arrived (raw path and query); `headers` are lowercased.
    """
    fields = _authorization(headers.get("authorization", ""))
    access_key, _, scope = fields["Credential"].partition("/")
    known = credentials.get(access_key)
    if known is None:
        raise AwsError(
            403, "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    secret, token = known
    if token is not None and headers.get("x-amz-security-token") != token:
        raise AwsError(
            403, "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    date, _, rest = scope.partition("/")
    scoped_region, _, rest = rest.partition("/")
    service = rest.partition("/")[0]
    if service != "bedrock":
        raise AwsError(
            403, "InvalidSignatureException", "Credential should be scoped to correct service: 'bedrock'. "
        )
    if scoped_region != region:
        raise AwsError(
            403,
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region, not '{scoped_region}'. ",
        )
    stamp = headers.get("x-amz-date", "")
    try:
        signed_at = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        raise AwsError(
            403, "IncompleteSignatureException", "Date must be in ISO-8601 'basic format'."
        ) from None
    current = now or datetime.datetime.now(datetime.UTC)
    if abs(current - signed_at) > _MAX_SKEW or not stamp.startswith(date):
        raise AwsError(
            403,
            "InvalidSignatureException",
            f"Signature expired: {stamp} is now earlier than {(current - _MAX_SKEW):%Y%m%dT%H%M%SZ}.",
        )
    names = fields["SignedHeaders"].split(";")
    request = AWSRequest(method=method, url=url, headers={n: headers.get(n, "") for n in names}, data=body)
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(access_key, secret, token), "bedrock", region)
    expected: str = signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )
    if not hmac.compare_digest(expected, fields["Signature"]):
        raise AwsError(403, "InvalidSignatureException", SIGNATURE_MISMATCH)
