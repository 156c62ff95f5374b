"""Customers through the official SDK: CRUD, metadata, search, and Stripe's error shapes."""

from __future__ import annotations

import pytest
import stripe

from .conftest import Sandbox, make_customer


def test_customer_crud_and_metadata(client: stripe.StripeClient) -> None:
    created = client.v1.customers.create(
        params={
            "name": "Acme",
            "email": "ap@acme.example",
            "metadata": {"crm_id": "001A", "tier": "gold"},
        }
    )
    assert created.id.startswith("cus_")
    assert created.metadata.to_dict() == {"crm_id": "001A", "tier": "gold"}
    updated = client.v1.customers.update(
        created.id, params={"metadata": {"tier": "", "region": "EU"}, "phone": "+4930"}
    )
    assert updated.metadata.to_dict() == {"crm_id": "001A", "region": "EU"}
    assert updated.phone == "+4930"
    fetched = client.v1.customers.retrieve(created.id)
    assert (
        fetched.metadata.to_dict() == updated.metadata.to_dict()
        and fetched.email == "ap@acme.example"
    )
    deleted = client.v1.customers.delete(created.id)
    assert deleted.deleted is True
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.customers.update(created.id, params={"name": "x"})
    assert info.value.http_status == 404
    assert info.value.code == "resource_missing"


def test_default_payment_method_from_magic_id(client: stripe.StripeClient) -> None:
    customer = make_customer(client)
    default = customer.invoice_settings.default_payment_method
    assert default.startswith("pm_") and default != "pm_card_visa"
    methods = client.v1.customers.payment_methods.list(customer.id)
    assert [m.id for m in methods.data] == [default]
    assert methods.data[0].card.last4 == "4242"


def test_search_by_metadata_and_email(client: stripe.StripeClient) -> None:
    a = client.v1.customers.create(params={"email": "a@x.example", "metadata": {"crm_id": "A1"}})
    b = client.v1.customers.create(params={"email": "b@x.example", "metadata": {"crm_id": "B2"}})
    client.v1.customers.create(params={"email": "c@y.example"})
    found = client.v1.customers.search(params={"query": "metadata['crm_id']:'B2'"})
    assert [c.id for c in found.data] == [b.id]
    found = client.v1.customers.search(params={"query": 'email:"a@x.example"'})
    assert [c.id for c in found.data] == [a.id]
    found = client.v1.customers.search(params={"query": "email~'x.example'"})
    assert {c.id for c in found.data} == {a.id, b.id}
    found = client.v1.customers.search(
        params={"query": "metadata['crm_id']:'A1' OR metadata['crm_id']:'B2'"}
    )
    assert {c.id for c in found.data} == {a.id, b.id}
    found = client.v1.customers.search(
        params={"query": "metadata['crm_id']:'A1' AND email:'b@x.example'"}
    )
    assert found.data == []
    page = client.v1.customers.search(params={"query": "email~'example'", "limit": 2})
    assert len(page.data) == 2 and page.has_more and page.next_page
    rest = client.v1.customers.search(
        params={"query": "email~'example'", "limit": 2, "page": page.next_page}
    )
    assert len(rest.data) == 1 and not rest.has_more


def test_errors_have_stripe_shape(sandbox: Sandbox) -> None:
    status, _, body = sandbox.raw("POST", "/v1/subscriptions", "items[0][quantity]=1")
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == "customer"
    assert body["error"]["code"] == "parameter_missing"
    status, _, body = sandbox.raw("GET", "/v1/customers/cus_nope")
    assert status == 404
    assert body["error"] == {
        "type": "invalid_request_error",
        "message": "No such customer: 'cus_nope'",
        "code": "resource_missing",
        "doc_url": "https://stripe.com/docs/error-codes/resource_missing",
        "param": "id",
    }
    status, _, body = sandbox.raw("POST", "/v1/customers", "nickname=x")
    assert status == 400 and body["error"]["param"] == "nickname"
    assert body["error"]["message"] == "Received unknown parameter: nickname"
    status, _, body = sandbox.raw("GET", "/v1/no_such_thing")
    assert status == 404 and "Unrecognized request URL" in body["error"]["message"]
    status, _, body = sandbox.raw("POST", "/v1/customers", "email=not-an-email")
    assert status == 400 and body["error"]["param"] == "email"


def test_pagination_newest_first_with_cursors(client: stripe.StripeClient) -> None:
    ids = [client.v1.customers.create(params={"name": f"c{i}"}).id for i in range(25)]
    newest_first = list(reversed(ids))
    page = client.v1.customers.list(params={"limit": 10})
    assert [c.id for c in page.data] == newest_first[:10] and page.has_more
    page2 = client.v1.customers.list(params={"limit": 10, "starting_after": page.data[-1].id})
    assert [c.id for c in page2.data] == newest_first[10:20] and page2.has_more
    page3 = client.v1.customers.list(params={"limit": 10, "starting_after": page2.data[-1].id})
    assert [c.id for c in page3.data] == newest_first[20:] and not page3.has_more
    back = client.v1.customers.list(params={"limit": 3, "ending_before": page2.data[0].id})
    assert [c.id for c in back.data] == newest_first[7:10] and back.has_more
    assert [
        c.id for c in client.v1.customers.list(params={"limit": 7}).auto_paging_iter()
    ] == newest_first
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.customers.list(params={"limit": 101})
    assert info.value.param == "limit"
