"""Stripe's error envelope: every failure answered has Stripe's JSON shape and HTTP status."""

from __future__ import annotations

from typing import Any

DOC_BASE = "https://stripe.com/docs/error-codes/"


class StripeApiError(Exception):
    """An API error answered as ``{"error": {...}}`` with Stripe's HTTP status.

    ``saved`` says whether the idempotency layer stores this answer: Stripe saves results only once
    endpoint execution has begun, so parameter-validation errors are not saved.
    """

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        saved: bool = True,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.code = code
        self.param = param
        self.saved = saved
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON body Stripe answers for this error."""
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = DOC_BASE + self.code
        if self.param is not None:
            error["param"] = self.param
        error.update(self.extra)
        return {"error": error}


def invalid_param(param: str, message: str, *, code: str = "parameter_invalid") -> StripeApiError:
    """A 400 for a parameter with a wrong value; not saved for idempotency (validation)."""
    return StripeApiError(
        400, "invalid_request_error", message, code=code, param=param, saved=False
    )


def missing_param(param: str) -> StripeApiError:
    """A 400 naming the required parameter that was not sent."""
    return StripeApiError(
        400,
        "invalid_request_error",
        f"Missing required param: {param}.",
        code="parameter_missing",
        param=param,
        saved=False,
    )


def unknown_param(param: str) -> StripeApiError:
    """A 400 for a parameter the endpoint does not accept, as Stripe reports it."""
    return StripeApiError(
        400,
        "invalid_request_error",
        f"Received unknown parameter: {param}",
        code="parameter_unknown",
        param=param,
        saved=False,
    )


def resource_missing(kind: str, object_id: str, param: str = "id") -> StripeApiError:
    """A 404 for an object id that does not exist."""
    return StripeApiError(
        404,
        "invalid_request_error",
        f"No such {kind}: '{object_id}'",
        code="resource_missing",
        param=param,
    )


def invalid_state(
    message: str, *, code: str | None = None, param: str | None = None
) -> StripeApiError:
    """A 400 for an operation the object's current state does not allow."""
    return StripeApiError(400, "invalid_request_error", message, code=code, param=param)
