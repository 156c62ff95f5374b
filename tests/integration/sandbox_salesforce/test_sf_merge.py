"""The emulator's SOAP ``merge()`` as simple-salesforce's session reaches it: the loser is
deleted with ``MasterRecordId`` (seen through ``queryAll``, as Salesforce documents), its related
records re-parented; bad sessions, other calls and bad requests are answered, never a 500."""

from __future__ import annotations

from xml.etree import ElementTree

import requests
from simple_salesforce import Salesforce

PARTNER = "{urn:partner.soap.sforce.com}"


def _envelope(session_id: str, body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:urn="urn:partner.soap.sforce.com" xmlns:urn1="urn:sobject.partner.soap.sforce.com">'
        f"<soapenv:Header><urn:SessionHeader><urn:sessionId>{session_id}</urn:sessionId>"
        f"</urn:SessionHeader></soapenv:Header><soapenv:Body>{body}</soapenv:Body>"
        "</soapenv:Envelope>"
    ).encode()


def _merge_body(master: str, *losers: str, name: str | None = None) -> str:
    extra = f"<urn1:Name>{name}</urn1:Name>" if name else ""
    ids = "".join(f"<urn:recordToMergeIds>{i}</urn:recordToMergeIds>" for i in losers)
    return (
        "<urn:merge><urn:request><urn:masterRecord><urn1:type>Account</urn1:type>"
        f"<urn1:Id>{master}</urn1:Id>{extra}</urn:masterRecord>{ids}</urn:request></urn:merge>"
    )


def _post(sf: Salesforce, payload: bytes) -> requests.Response:
    return sf.session.post(
        f"https://{sf.sf_instance}/services/Soap/u/{sf.sf_version}",
        data=payload,
        headers={"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": '""'},
    )


def _result(response: requests.Response) -> dict[str, list[str]]:
    result = ElementTree.fromstring(response.content).find(f".//{PARTNER}result")
    assert result is not None, response.text
    found: dict[str, list[str]] = {}
    for child in result.iter():
        found.setdefault(child.tag.rsplit("}", 1)[-1], []).append(child.text or "")
    return found


def test_merge_deletes_the_loser_with_its_master_and_moves_its_children(sf: Salesforce) -> None:
    master = sf.Account.create({"Name": "Kestrel Optics GmbH"})["id"]
    loser = sf.Account.create({"Name": "Kestrel Optics"})["id"]
    contact = sf.Contact.create({"LastName": "Vogel", "AccountId": loser})["id"]
    response = _post(sf, _envelope(sf.session_id, _merge_body(master, loser, name="Kestrel AG")))
    assert response.status_code == 200, response.text
    result = _result(response)
    assert result["success"] == ["true"] and result["id"] == [master]
    assert result["mergedRecordIds"] == [loser] and result["updatedRelatedIds"] == [contact]

    assert sf.Contact.get(contact)["AccountId"] == master
    assert sf.Account.get(master)["Name"] == "Kestrel AG"
    assert sf.query(f"SELECT Id FROM Account WHERE Id = '{loser}'")["totalSize"] == 0
    merged = sf.query_all(
        "SELECT Id, MasterRecordId FROM Account WHERE IsDeleted = true AND MasterRecordId != null",
        include_deleted=True,
    )["records"]
    assert [(r["Id"], r["MasterRecordId"]) for r in merged] == [(loser, master)]


def test_merge_refusals_are_answered(sf: Salesforce) -> None:
    master = sf.Account.create({"Name": "Harrier Freight"})["id"]
    response = _post(sf, _envelope("not-a-session", _merge_body(master, master)))
    assert response.status_code == 500 and "INVALID_SESSION_ID" in response.text
    response = _post(sf, _envelope(sf.session_id, "<urn:query><urn:q>x</urn:q></urn:query>"))
    assert response.status_code == 500 and "UNSUPPORTED_API_CALL" in response.text
    response = _post(sf, b"<not xml")
    assert response.status_code == 500 and "could not parse" in response.text
    response = _post(sf, b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>')
    assert response.status_code == 500 and "DTD" in response.text
    response = _post(sf, _envelope(sf.session_id, _merge_body(master, master)))
    assert response.status_code == 200
    assert _result(response)["success"] == ["false"]
    assert "INVALID_OPERATION" in response.text
    gone = sf.Account.create({"Name": "Gone"})["id"]
    sf.Account.delete(gone)
    response = _post(sf, _envelope(sf.session_id, _merge_body(master, gone)))
    assert _result(response)["success"] == ["false"]
    assert sf.Account.get(master)["Name"] == "Harrier Freight"
