"""Salesforce's error shape: HTTP status plus a list of {message, errorCode, fields}."""

from __future__ import annotations

from typing import Any


class SalesforceError(Exception):
    """An API error the emulator answers with, exactly as Salesforce words and codes it."""

    def __init__(
        self, status: int, error_code: str, message: str, fields: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.fields = fields
        self.payload: Any = None

    def body(self) -> Any:
        if self.payload is not None:
            return self.payload
        item: dict[str, Any] = {"message": self.message, "errorCode": self.error_code}
        if self.fields is not None:
            item["fields"] = self.fields
        return [item]

    def save_error(self) -> dict[str, Any]:
        """The entry used inside SaveResult ``errors`` lists (sObject Collections)."""
        return {"statusCode": self.error_code, "message": self.message, "fields": self.fields or []}


def not_found() -> SalesforceError:
    return SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")


def bad_request(code: str, message: str, fields: list[str] | None = None) -> SalesforceError:
    return SalesforceError(400, code, message, fields)
