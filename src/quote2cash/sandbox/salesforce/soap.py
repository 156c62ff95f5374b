"""The SOAP partner API's ``merge()`` call (``/services/Soap/u/NN.N``): what Salesforce offers,
without Apex, to merge Accounts; the REST API has no merge. Other SOAP calls answer a fault.

Request and answer follow the partner WSDL: a ``SessionHeader`` with the OAuth access token as
``sessionId``; ``merge`` holds up to 200 ``request`` elements, each a ``masterRecord`` (``type``,
``Id`` and fields that supersede) and one or two ``recordToMergeIds``; each gets a ``result``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from xml.etree import ElementTree as ET

from .errors import SalesforceError
from .store import Store

ENVELOPE = "http://schemas.xmlsoap.org/soap/envelope/"
PARTNER = "urn:partner.soap.sforce.com"
SOBJECT = "urn:sobject.partner.soap.sforce.com"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
MAX_REQUESTS = 200
_MAX_BODY = 1024 * 1024


class SoapFault(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element if _local(child.tag) == name]


def _text(element: ET.Element, name: str) -> str | None:
    found = _children(element, name)
    return (found[0].text or "").strip() if found else None


def handle(body: bytes, store: Store, check_session: Callable[[str], object]) -> tuple[int, bytes]:
    """One SOAP call: (HTTP status, envelope). A fault is HTTP 500, as Salesforce answers."""
    try:
        return 200, _envelope(_call(body, store, check_session))
    except SoapFault as fault:
        return 500, _fault(fault.code, fault.message)


def _call(body: bytes, store: Store, check_session: Callable[[str], object]) -> ET.Element:
    if len(body) > _MAX_BODY or b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise SoapFault("sf:INVALID_XML", "request is too large or declares a DTD")
    try:
        root = ET.fromstring(body)  # noqa: S314 - no DTD (refused above), so no entity tricks
    except ET.ParseError as exc:
        raise SoapFault("soapenv:Client", f"could not parse the request: {exc}") from None
    header = next((e for e in root if _local(e.tag) == "Header"), None)
    session = None
    if header is not None:
        for h in header:
            if _local(h.tag) == "SessionHeader":
                session = _text(h, "sessionId")
    try:
        check_session(session or "")
    except SalesforceError:
        raise SoapFault(
            "sf:INVALID_SESSION_ID", "Invalid Session ID found in SessionHeader"
        ) from None
    soap_body = next((e for e in root if _local(e.tag) == "Body"), None)
    call = soap_body[0] if soap_body is not None and len(soap_body) else None
    if call is None or _local(call.tag) != "merge":
        name = _local(call.tag) if call is not None else "(none)"
        raise SoapFault("sf:UNSUPPORTED_API_CALL", f"the emulator answers merge() only, not {name}")
    requests = _children(call, "request")
    if not requests or len(requests) > MAX_REQUESTS:
        raise SoapFault("sf:EXCEEDED_MAX_SIZE_REQUEST", "merge() takes 1 to 200 requests")
    answer = ET.Element(f"{{{PARTNER}}}mergeResponse")
    for request in requests:
        answer.append(_merge_one(request, store))
    return answer


def _merge_one(request: ET.Element, store: Store) -> ET.Element:
    result = ET.Element(f"{{{PARTNER}}}result")
    master = next(iter(_children(request, "masterRecord")), None)
    losers = [(e.text or "").strip() for e in _children(request, "recordToMergeIds")]
    try:
        if master is None:
            raise SalesforceError(400, "INVALID_FIELD", "masterRecord is missing")
        fields: dict[str, Any] = {
            _local(e.tag): e.text
            for e in master
            if _local(e.tag) not in ("type", "Id", "fieldsToNull")
        }
        merged = store.merge(_text(master, "type") or "", _text(master, "Id") or "", losers, fields)
    except SalesforceError as exc:
        body = exc.body()
        first = body[0] if isinstance(body, list) and body else {}
        errors = ET.SubElement(result, f"{{{PARTNER}}}errors")
        ET.SubElement(errors, f"{{{PARTNER}}}message").text = str(first.get("message", exc))
        ET.SubElement(errors, f"{{{PARTNER}}}statusCode").text = str(
            first.get("errorCode", "UNKNOWN_EXCEPTION")
        )
        ET.SubElement(result, f"{{{PARTNER}}}success").text = "false"
        return result
    ET.SubElement(result, f"{{{PARTNER}}}id").text = merged["id"]
    for merged_id in merged["mergedRecordIds"]:
        ET.SubElement(result, f"{{{PARTNER}}}mergedRecordIds").text = merged_id
    ET.SubElement(result, f"{{{PARTNER}}}success").text = "true"
    for related in merged["updatedRelatedIds"]:
        ET.SubElement(result, f"{{{PARTNER}}}updatedRelatedIds").text = related
    return result


def _envelope(payload: ET.Element) -> bytes:
    envelope = ET.Element(f"{{{ENVELOPE}}}Envelope")
    ET.SubElement(envelope, f"{{{ENVELOPE}}}Body").append(payload)
    return bytes(ET.tostring(envelope, encoding="utf-8", xml_declaration=True))


def _fault(code: str, message: str) -> bytes:
    fault = ET.Element(f"{{{ENVELOPE}}}Fault")
    ET.SubElement(fault, "faultcode").text = code
    ET.SubElement(fault, "faultstring").text = f"{code.split(':')[-1]}: {message}"
    return _envelope(fault)
