"""The REST API proper, independent of HTTP plumbing so /composite can call it internally.

``Api.dispatch`` takes a method, a path below ``/services/data/vNN.N`` and a decoded
body, and answers (status, JSON body, headers) or raises SalesforceError.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import SalesforceError, bad_request, not_found
from .ids import IdFactory, to_18
from .schema import ObjectDef
from .soql_eval import QueryEngine
from .store import Record, Store, multiple_records
from .values import parse_datetime, to_wire

SUPPORTED_VERSIONS = tuple(f"{v}.0" for v in range(50, 63))
_RELEASES = {
    50: "Winter '21",
    51: "Spring '21",
    52: "Summer '21",
    53: "Winter '22",
    54: "Spring '22",
    55: "Summer '22",
    56: "Winter '23",
    57: "Spring '23",
    58: "Summer '23",
    59: "Winter '24",
    60: "Spring '24",
    61: "Summer '24",
    62: "Winter '25",
}
MAX_COLLECTION = 200
MAX_COMPOSITE = 25
_MAX_CURSORS = 200
_ROLLED_BACK = (
    "Record rolled back because not all records were valid and the request was "
    "using AllOrNone header"
)
_HALTED = "The transaction was rolled back since another operation in the same transaction failed."


@dataclass
class ApiResponse:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Cursor:
    records: list[Any]
    endpoint: str
    batch_size: int


class _Abort(Exception):
    """Raised inside a transaction to roll back an allOrNone request."""


def versions() -> list[dict[str, str]]:
    return [
        {"label": _RELEASES[int(v[:-2])], "url": f"/services/data/v{v}", "version": v}
        for v in SUPPORTED_VERSIONS
    ]


class Api:
    """Every /services/data/vNN.N resource; state lives in the Store and this cursor table."""

    def __init__(self, store: Store, batch_size: int = 2000) -> None:
        self.store = store
        self.engine = QueryEngine(store)
        self.batch_size = batch_size
        self.cursors: OrderedDict[str, Cursor] = OrderedDict()
        self._locators = IdFactory()
        self.daily_limit = 15000
        self.used = 0
        self._composite_all_or_none = False

    # ----- entry point -----

    def dispatch(
        self,
        method: str,
        version: str,
        path: str,
        query: Mapping[str, str],
        body: Any,
        headers: Mapping[str, str],
    ) -> ApiResponse:
        segments = [unquote(s) for s in path.strip("/").split("/") if s]
        method = method.upper()
        if not segments:
            return self._only(method, "GET", lambda: ApiResponse(200, self._resources(version)))
        head, rest = segments[0], segments[1:]
        if head == "sobjects":
            return self._sobjects(method, version, rest, query, body)
        if head in ("query", "queryAll"):
            return self._query(method, version, head, rest, query, headers)
        if head == "limits" and not rest:
            return self._only(method, "GET", lambda: ApiResponse(200, self.limits()))
        if head == "composite":
            if not rest:
                return self._only(method, "POST", lambda: self._composite(version, body))
            if rest[0] == "sobjects":
                return self._collections(method, version, rest[1:], query, body)
        raise not_found()

    @staticmethod
    def _only(method: str, allowed: str, action: Any) -> ApiResponse:
        if method != allowed:
            raise SalesforceError(
                405,
                "METHOD_NOT_ALLOWED",
                f"HTTP Method '{method}' not allowed. Allowed are {allowed}",
            )
        result: ApiResponse = action()
        return result

    def _resources(self, version: str) -> dict[str, str]:
        base = f"/services/data/v{version}"
        return {
            name: f"{base}/{name}"
            for name in ("sobjects", "query", "queryAll", "limits", "composite")
        }

    def limits(self) -> dict[str, Any]:
        return {
            "DailyApiRequests": {
                "Max": self.daily_limit,
                "Remaining": max(self.daily_limit - self.used, 0),
            },
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
            "DataStorageMB": {"Max": 1024, "Remaining": 1024},
            "SingleEmailMassEmail": {"Max": 15, "Remaining": 15},
        }

    # ----- sObject resources -----

    def _object(self, name: str) -> ObjectDef:
        obj = self.store.schema.get(name)
        if obj is None:
            raise not_found()
        return obj

    def _sobjects(
        self, method: str, version: str, rest: list[str], query: Mapping[str, str], body: Any
    ) -> ApiResponse:
        schema = self.store.schema
        if not rest:
            return self._only(
                method,
                "GET",
                lambda: ApiResponse(
                    200,
                    {
                        "encoding": "UTF-8",
                        "maxBatchSize": MAX_COLLECTION,
                        "sobjects": [o.summary(version) for o in schema.objects.values()],
                    },
                ),
            )
        obj = self._object(rest[0])
        if len(rest) == 1:
            if method == "POST":
                record_id = self.store.create(obj.name, body)
                return ApiResponse(
                    201,
                    {"id": record_id, "success": True, "errors": []},
                    {"Location": _url(version, obj.name, record_id)},
                )
            return self._only(
                method,
                "GET",
                lambda: ApiResponse(
                    200, {"objectDescribe": obj.summary(version), "recentItems": []}
                ),
            )
        if len(rest) == 2 and rest[1] == "describe":
            return self._only(method, "GET", lambda: ApiResponse(200, obj.describe(version)))
        if len(rest) == 2 and rest[1] in ("updated", "deleted") and method == "GET":
            return ApiResponse(200, self._changes(obj, rest[1], query))
        if len(rest) == 2:
            return self._record(method, version, obj, rest[1], query, body)
        if len(rest) == 3:
            return self._by_external_id(method, version, obj, rest[1], rest[2], query, body)
        raise not_found()

    def _record(
        self,
        method: str,
        version: str,
        obj: ObjectDef,
        record_id: str,
        query: Mapping[str, str],
        body: Any,
    ) -> ApiResponse:
        if method == "GET":
            record = self.store.get(obj.name, record_id)
            return ApiResponse(200, self.shape(obj, record, version, query.get("fields")))
        if method == "PATCH":
            self.store.update(obj.name, record_id, body)
            return ApiResponse(204)
        if method == "DELETE":
            self.store.delete(obj.name, record_id)
            return ApiResponse(204)
        raise SalesforceError(
            405,
            "METHOD_NOT_ALLOWED",
            f"HTTP Method '{method}' not allowed. Allowed are GET,PATCH,DELETE",
        )

    def _by_external_id(
        self,
        method: str,
        version: str,
        obj: ObjectDef,
        field_name: str,
        value: str,
        query: Mapping[str, str],
        body: Any,
    ) -> ApiResponse:
        field_def = obj.field(field_name)
        if field_def is None or not (field_def.external_id or field_def.type == "id"):
            raise SalesforceError(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {field_name}",
            )
        try:
            if method == "PATCH":
                record_id, created = self.store.upsert(
                    obj.name,
                    field_def.name,
                    value,
                    body,
                    update_only=query.get("updateOnly", "false").lower() == "true",
                )
                if created:
                    return ApiResponse(
                        201,
                        {"id": record_id, "success": True, "errors": [], "created": True},
                        {"Location": _url(version, obj.name, record_id)},
                    )
                return ApiResponse(204)
            matches = self.store.find_by_external_id(obj, field_def, value)
            if len(matches) > 1:
                raise multiple_records(obj, matches)
            if not matches:
                raise not_found()
            if method == "GET":
                return ApiResponse(200, self.shape(obj, matches[0], version, query.get("fields")))
            if method == "DELETE":
                self.store.delete(obj.name, matches[0]["Id"])
                return ApiResponse(204)
        except SalesforceError as exc:
            if exc.status == 300 and isinstance(exc.payload, list):
                exc.payload = [u.replace("{version}", version) for u in exc.payload]
            raise
        raise SalesforceError(
            405,
            "METHOD_NOT_ALLOWED",
            f"HTTP Method '{method}' not allowed. Allowed are GET,PATCH,DELETE",
        )

    def shape(
        self, obj: ObjectDef, record: Record, version: str, fields: str | None = None
    ) -> dict[str, Any]:
        """A record as GET /sobjects/{Type}/{Id} returns it, optionally limited to ``fields``."""
        names = list(obj.fields)
        if fields:
            names = []
            for raw in fields.split(","):
                f = obj.field(raw.strip())
                if f is None:
                    raise bad_request(
                        "INVALID_FIELD",
                        f"No such column '{raw.strip()}' on sobject of type {obj.name}",
                    )
                names.append(f.name)
        shaped: dict[str, Any] = {
            "attributes": {"type": obj.name, "url": _url(version, obj.name, record["Id"])}
        }
        for name in names:
            shaped[name] = to_wire(record[name])
        return shaped

    def _changes(self, obj: ObjectDef, kind: str, query: Mapping[str, str]) -> dict[str, Any]:
        start = parse_datetime(query.get("start", ""))
        end = parse_datetime(query.get("end", ""))
        if start is None or end is None or end < start:
            raise bad_request(
                "INVALID_REPLICATION_DATE",
                "start and end must be ISO 8601 datetimes with start <= end",
            )
        deleted = kind == "deleted"
        rows = [
            r
            for r in self.store.records(obj.name, include_deleted=True)
            if r["IsDeleted"] == deleted and start <= r["SystemModstamp"] < end
        ]
        covered = to_wire(min(end, self.store.clock.now()))
        if deleted:
            return {
                "deletedRecords": [
                    {"id": r["Id"], "deletedDate": to_wire(r["SystemModstamp"])} for r in rows
                ],
                "earliestDateAvailable": to_wire(start),
                "latestDateCovered": covered,
            }
        return {"ids": [r["Id"] for r in rows], "latestDateCovered": covered}

    # ----- queries -----

    def _query(
        self,
        method: str,
        version: str,
        endpoint: str,
        rest: list[str],
        query: Mapping[str, str],
        headers: Mapping[str, str],
    ) -> ApiResponse:
        if method != "GET":
            raise SalesforceError(
                405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are GET"
            )
        if rest:
            locator, _, offset_text = rest[0].rpartition("-")
            cursor = self.cursors.get(locator)
            if cursor is None or not (offset_text.isascii() and offset_text.isdigit()):
                raise bad_request("INVALID_QUERY_LOCATOR", "invalid query locator")
            return ApiResponse(200, self._page(version, locator, cursor, int(offset_text)))
        text = query.get("q")
        if not text:
            raise bad_request("MALFORMED_QUERY", "A query string must be provided.")
        total, records = self.engine.run(
            text, include_deleted=endpoint == "queryAll", version=version
        )
        batch = self._batch_size(headers)
        if len(records) <= batch:
            return ApiResponse(200, {"totalSize": total, "done": True, "records": records})
        locator = self._locators.new("01g")
        cursor = Cursor(records, endpoint, batch)
        self.cursors[locator] = cursor
        while len(self.cursors) > _MAX_CURSORS:
            self.cursors.popitem(last=False)
        return ApiResponse(200, self._page(version, locator, cursor, 0))

    def _batch_size(self, headers: Mapping[str, str]) -> int:
        options = headers.get("Sforce-Query-Options", "")
        for option in options.split(","):
            name, _, value = option.strip().partition("=")
            if (
                name.strip().lower() == "batchsize"
                and value.strip().isascii()
                and value.strip().isdigit()
            ):
                return min(max(int(value), 200), 2000)
        return self.batch_size

    def _page(self, version: str, locator: str, cursor: Cursor, offset: int) -> dict[str, Any]:
        end = offset + cursor.batch_size
        page: dict[str, Any] = {
            "totalSize": len(cursor.records),
            "done": end >= len(cursor.records),
        }
        if not page["done"]:
            page["nextRecordsUrl"] = f"/services/data/v{version}/{cursor.endpoint}/{locator}-{end}"
        page["records"] = cursor.records[offset:end]
        return page

    # ----- sObject Collections -----

    def _collections(
        self, method: str, version: str, rest: list[str], query: Mapping[str, str], body: Any
    ) -> ApiResponse:
        if method == "DELETE" and not rest:
            ids = [i for i in query.get("ids", "").split(",") if i]
            all_or_none = query.get("allOrNone", "false").lower() == "true"
            self._check_size(ids)
            return ApiResponse(200, self._each(ids, all_or_none, self._delete_one))
        if method == "GET" and len(rest) == 1:
            obj = self._object(rest[0])
            ids = [i for i in query.get("ids", "").split(",") if i]
            self._check_size(ids)
            found = []
            for record_id in ids:
                record = self.store.find(record_id)
                ok = record is not None and self.store.type_of[record["Id"]] == obj.name
                found.append(
                    self.shape(obj, record, version, query.get("fields"))
                    if ok and record is not None
                    else None
                )
            return ApiResponse(200, found)
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise bad_request(
                "JSON_PARSER_ERROR", "The request body must be an object with a 'records' list"
            )
        records: list[Any] = body["records"]
        all_or_none = bool(body.get("allOrNone", False))
        self._check_size(records)
        if method == "POST" and not rest:
            return ApiResponse(200, self._each(records, all_or_none, self._create_one))
        if method == "PATCH" and not rest:
            return ApiResponse(200, self._each(records, all_or_none, self._update_one))
        if method == "PATCH" and len(rest) == 2:
            obj = self._object(rest[0])
            field_def = obj.field(rest[1])
            if field_def is None or not (field_def.external_id or field_def.type == "id"):
                raise bad_request(
                    "INVALID_FIELD",
                    f"Field name provided, {rest[1]} is not an External ID or "
                    f"indexed field for {obj.name}",
                )

            def upsert_one(item: Any) -> dict[str, Any]:
                if not isinstance(item, dict):
                    raise bad_request("JSON_PARSER_ERROR", "each record must be an object")
                values = {k: v for k, v in item.items() if k != "attributes"}
                key = next((k for k in values if k.lower() == field_def.name.lower()), None)
                if key is None or values[key] in (None, ""):
                    raise bad_request(
                        "MISSING_ARGUMENT", f"{field_def.name} not specified", [field_def.name]
                    )
                record_id, created = self.store.upsert(
                    obj.name, field_def.name, str(values[key]), values
                )
                return {"id": record_id, "success": True, "errors": [], "created": created}

            return ApiResponse(200, self._each(records, all_or_none, upsert_one))
        raise not_found()

    @staticmethod
    def _check_size(items: list[Any]) -> None:
        if len(items) > MAX_COLLECTION:
            raise bad_request(
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )

    def _item_type(self, item: Any) -> ObjectDef:
        if not isinstance(item, dict):
            raise bad_request("JSON_PARSER_ERROR", "each record must be an object")
        attributes = item.get("attributes")
        type_name = attributes.get("type") if isinstance(attributes, dict) else None
        if not isinstance(type_name, str):
            raise bad_request("INVALID_TYPE", "Must specify a type in the attributes field")
        obj = self.store.schema.get(type_name)
        if obj is None:
            raise bad_request("INVALID_TYPE", f"sObject type '{type_name}' is not supported.")
        return obj

    def _create_one(self, item: Any) -> dict[str, Any]:
        obj = self._item_type(item)
        if any(k.lower() == "id" for k in item):
            raise bad_request("INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
        return {"id": self.store.create(obj.name, item), "success": True, "errors": []}

    def _update_one(self, item: Any) -> dict[str, Any]:
        obj = self._item_type(item)
        record_id = next((v for k, v in item.items() if k.lower() == "id"), None)
        if not isinstance(record_id, str) or to_18(record_id) is None:
            raise bad_request("MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
        try:
            self.store.update(obj.name, record_id, item)
        except SalesforceError as exc:
            if exc.status != 404:
                raise
            if self.store.find(record_id, include_deleted=True) is not None:
                raise bad_request("ENTITY_IS_DELETED", "entity is deleted") from exc
            raise bad_request("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id") from exc
        return {"id": to_18(record_id), "success": True, "errors": []}

    def _delete_one(self, item: Any) -> dict[str, Any]:
        record = self.store.find(str(item), include_deleted=True)
        if record is None:
            raise bad_request("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
        self.store.delete(self.store.type_of[record["Id"]], record["Id"])
        return {"id": record["Id"], "success": True, "errors": []}

    def _each(self, items: list[Any], all_or_none: bool, action: Any) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        failed = False
        all_or_none = all_or_none or self._composite_all_or_none
        try:
            with self.store.transaction():
                for item in items:
                    try:
                        results.append(action(item))
                    except SalesforceError as exc:
                        failed = True
                        results.append({"success": False, "errors": [exc.save_error()]})
                        if not all_or_none:
                            continue
                if failed and all_or_none:
                    raise _Abort
        except _Abort:
            rolled_back = {
                "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                "message": _ROLLED_BACK,
                "fields": [],
            }
            results = [
                r
                if not r["success"]
                else {"id": r.get("id"), "success": False, "errors": [rolled_back]}
                for r in results
            ]
        return results

    # ----- composite -----

    def _composite(self, version: str, body: Any) -> ApiResponse:
        if not isinstance(body, dict) or not isinstance(body.get("compositeRequest"), list):
            raise bad_request(
                "JSON_PARSER_ERROR",
                "The request body must be an object with a 'compositeRequest' list",
            )
        requests: list[Any] = body["compositeRequest"]
        if len(requests) > MAX_COMPOSITE:
            raise bad_request(
                "INVALID_BATCH_REQUEST",
                f"Composite request can have at most {MAX_COMPOSITE} subrequests",
            )
        seen: set[str] = set()
        for sub in requests:
            ref = sub.get("referenceId") if isinstance(sub, dict) else None
            if (
                not isinstance(ref, str)
                or not ref
                or not (ref[0].isalpha() and ref.replace("_", "").isalnum())
                or ref in seen
            ):
                raise bad_request(
                    "JSON_PARSER_ERROR", "Each subrequest needs a unique alphanumeric referenceId"
                )
            seen.add(ref)
        all_or_none = bool(body.get("allOrNone", False))
        results: dict[str, Any] = {}
        responses: list[dict[str, Any]] = []
        self._composite_all_or_none = all_or_none
        try:
            with self.store.transaction():
                for sub in requests:
                    entry = self._subrequest(version, sub, results)
                    responses.append(entry)
                    if entry["httpStatusCode"] < 400:
                        results[sub["referenceId"]] = entry["body"]
                    if all_or_none and _failed(entry):
                        raise _Abort
        except _Abort:
            halted = [{"errorCode": "PROCESSING_HALTED", "message": _HALTED}]
            failed_ref = responses[-1]["referenceId"]
            responses = [
                r
                if r["referenceId"] == failed_ref
                else {
                    "body": halted,
                    "httpHeaders": {},
                    "httpStatusCode": 400,
                    "referenceId": r["referenceId"],
                }
                for r in responses
            ]
            responses += [
                {
                    "body": halted,
                    "httpHeaders": {},
                    "httpStatusCode": 400,
                    "referenceId": sub["referenceId"],
                }
                for sub in requests[len(responses) :]
            ]
        finally:
            self._composite_all_or_none = False
        return ApiResponse(200, {"compositeResponse": responses})

    def _subrequest(
        self, version: str, sub: dict[str, Any], results: dict[str, Any]
    ) -> dict[str, Any]:
        ref = sub["referenceId"]
        try:
            url = _substitute(sub.get("url"), results)
            payload = _substitute(sub.get("body"), results)
            if not isinstance(url, str):
                raise bad_request("JSON_PARSER_ERROR", "Each subrequest needs a url")
            parts = urlsplit(url)
            prefix = "/services/data/v"
            if not parts.path.startswith(prefix):
                raise not_found()
            sub_version, _, sub_path = parts.path[len(prefix) :].partition("/")
            if sub_version not in SUPPORTED_VERSIONS:
                raise not_found()
            if sub_path.strip("/") == "composite":
                raise bad_request("INVALID_BATCH_REQUEST", "composite cannot be nested")
            headers = sub.get("httpHeaders") or {}
            response = self.dispatch(
                str(sub.get("method", "GET")),
                sub_version,
                sub_path,
                dict(parse_qsl(parts.query)),
                payload,
                headers,
            )
        except SalesforceError as exc:
            return {
                "body": exc.body(),
                "httpHeaders": {},
                "httpStatusCode": exc.status,
                "referenceId": ref,
            }
        return {
            "body": response.body,
            "httpHeaders": response.headers,
            "httpStatusCode": response.status,
            "referenceId": ref,
        }


def _failed(entry: dict[str, Any]) -> bool:
    """A subrequest failed: an error status, or a collection result with a failed record."""
    body = entry["body"]
    if entry["httpStatusCode"] >= 400:
        return True
    return isinstance(body, list) and any(
        isinstance(r, dict) and r.get("success") is False for r in body
    )


def _url(version: str, type_name: str, record_id: str) -> str:
    return f"/services/data/v{version}/sobjects/{type_name}/{record_id}"


def _lookup(expression: str, results: dict[str, Any]) -> Any:
    """Evaluate ``ref.field``, ``ref.records[0].Id`` against earlier subrequest bodies."""
    name, _, rest = expression.partition(".")
    bracket = name.find("[")
    if bracket >= 0:
        name, rest = name[:bracket], name[bracket:] + ("." + rest if rest else "")
    if name not in results:
        raise bad_request(
            "PROCESSING_HALTED",
            f"Invalid reference specified. No value for {expression} found in "
            f"{name}. Provided referenceId ({name}) must be a previous "
            "successful subrequest.",
        )
    value = results[name]
    for step in re.findall(r"[^.\[\]]+|\[\d+\]", rest):
        try:
            value = value[int(step[1:-1])] if step.startswith("[") else value[step]
        except (KeyError, IndexError, TypeError):
            raise bad_request(
                "PROCESSING_HALTED",
                f"Invalid reference specified. No value for {expression} found in {name}.",
            ) from None
    return value


def _substitute(value: Any, results: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, results) for v in value]
    if not isinstance(value, str) or "@{" not in value:
        return value
    if value.startswith("@{") and value.endswith("}") and value.count("@{") == 1:
        return _lookup(value[2:-1], results)
    out, i = [], 0
    while (start := value.find("@{", i)) >= 0:
        end = value.find("}", start)
        if end < 0:
            break
        out.append(value[i:start])
        out.append(str(to_wire(_lookup(value[start + 2 : end], results))))
        i = end + 1
    out.append(value[i:])
    return "".join(out)


__all__ = ["Api", "ApiResponse", "versions"]
