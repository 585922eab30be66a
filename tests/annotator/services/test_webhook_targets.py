"""Webhook targets and SSRF: non-public addresses are refused when an endpoint is saved and again when a
delivery is about to be sent (DNS rebinding), unless the operator allows them."""

from __future__ import annotations

import ipaddress
import shutil
import ssl
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from annotator.models import WebhookDelivery, WebhookEndpoint
from annotator.services.webhook_delivery import delivery_attempt, post
from annotator.services.webhook_targets import Target, TargetRefused, address_refusal, target_resolve
from annotator.services.webhooks import webhook_ping
from tests.annotator.webhook_receiver import Receiver, fake_dns

REFUSED = ["10.0.0.1", "127.0.0.1", "::1", "169.254.169.254", "::ffff:127.0.0.1", "172.16.5.4", "192.168.1.1",
           "fc00::1", "fe80::1", "100.64.0.1", "::ffff:10.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::1"]
ALWAYS_REFUSED = ["0.0.0.0", "::", "224.0.0.1", "ff02::1", "240.0.0.1", "255.255.255.255"]
PUBLIC = ["93.184.216.34", "2606:4700:4700::1111", "::ffff:93.184.216.34"]


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, list[str]]], None]:
    """Make host names resolve to the given addresses (IP literals resolve to themselves)."""
    return lambda table: fake_dns(monkeypatch, table)


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused_unless_allowed(address, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    refusal = address_refusal(ipaddress.ip_address(address))
    assert refusal and "WEBHOOK_ALLOW_PRIVATE" in refusal

    settings.WEBHOOK_ALLOW_PRIVATE = True
    assert address_refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("address", ALWAYS_REFUSED)
def test_multicast_unspecified_and_reserved_are_refused_even_when_private_is_allowed(address, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    assert address_refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    assert address_refusal(ipaddress.ip_address(address)) is None


def test_an_allowed_network_lets_only_its_addresses_through(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    settings.WEBHOOK_ALLOWED_NETWORKS = ["10.20.0.0/16", "fd00:1::/64"]

    assert address_refusal(ipaddress.ip_address("10.20.3.4")) is None
    assert address_refusal(ipaddress.ip_address("::ffff:10.20.3.4")) is None
    assert address_refusal(ipaddress.ip_address("fd00:1::5")) is None
    assert address_refusal(ipaddress.ip_address("10.21.0.1")) is not None
    assert address_refusal(ipaddress.ip_address("127.0.0.1")) is not None


@pytest.mark.parametrize("url, says", [
    ("ftp://hooks.example.test/x", "http or https"),
    ("file:///etc/passwd", "http or https"),
    ("gopher://hooks.example.test/", "http or https"),
    ("http://user:pass@hooks.example.test/", "credentials"),
    ("http://token@hooks.example.test/", "credentials"),
    ("http:///path", "host"),
    ("http://hooks.example.test:0/", "port 0"),
    ("http://hooks.example.test/a b", "spaces"),
    ("http://hooks.example.test/#frag", "fragment"),
    ("http://nowhere.invalid/", "does not resolve"),
])
def test_malformed_urls_are_refused_with_the_reason(url, says, dns):
    dns({"hooks.example.test": ["93.184.216.34"]})
    with pytest.raises(TargetRefused, match=says):
        target_resolve(url)


def test_one_private_address_among_public_ones_refuses_the_host(dns, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    dns({"mixed.example.test": ["93.184.216.34", "10.0.0.1"]})

    with pytest.raises(TargetRefused, match="10.0.0.1, a private address"):
        target_resolve("https://mixed.example.test/hook")


def test_the_target_connects_to_the_checked_address_and_keeps_the_host_name(dns):
    dns({"hooks.example.test": ["93.184.216.34"]})

    target = target_resolve("https://hooks.example.test:8443/in?x=1")

    assert (target.address, target.port, target.path) == ("93.184.216.34", 8443, "/in?x=1")
    assert target.host_header == "hooks.example.test:8443"


# --- on save, through the API ----------------------------------------------------------------------------
@pytest.mark.parametrize("address", ["10.0.0.1", "127.0.0.1", "::1", "169.254.169.254", "::ffff:127.0.0.1"])
def test_saving_an_endpoint_that_resolves_to_a_private_address_is_a_400(address, project, as_admin, dns,
                                                                        settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    dns({"internal.example.test": [address]})

    response = as_admin.post(f"/api/v1/projects/{project.id}/webhooks/",
                             {"url": "http://internal.example.test/hook", "events": ["job.failed"]}, format="json")

    assert response.status_code == 400, response.content
    [error] = response.json()["errors"]
    assert error["field"] == "url"
    assert f"resolves to {ipaddress.ip_address(address)}" in error["message"]
    assert not WebhookEndpoint.objects.exists()


def test_changing_the_url_to_a_private_target_is_refused_and_changes_nothing(project, as_admin, dns, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    dns({"hooks.example.test": ["93.184.216.34"], "internal.example.test": ["192.168.0.10"]})
    created = as_admin.post(f"/api/v1/projects/{project.id}/webhooks/",
                            {"url": "https://hooks.example.test/in", "events": ["job.failed"]}, format="json")
    assert created.status_code == 201, created.content

    response = as_admin.patch(f"/api/v1/projects/{project.id}/webhooks/{created.json()['id']}/",
                              {"url": "http://internal.example.test/", "events": ["queue.low"]}, format="json")

    assert response.status_code == 400
    endpoint = WebhookEndpoint.objects.get()
    assert (endpoint.url, endpoint.events) == ("https://hooks.example.test/in", ["job.failed"])


# --- at delivery time ------------------------------------------------------------------------------------
@pytest.mark.parametrize("address", ["10.0.0.1", "127.0.0.1", "::1", "169.254.169.254", "::ffff:127.0.0.1"])
def test_a_host_that_resolves_to_a_private_address_when_sending_is_refused(address, project, admin, dns,
                                                                          settings):
    # Given an endpoint saved while its host resolved to a public address
    settings.WEBHOOK_ALLOW_PRIVATE = False
    with Receiver() as receiver:
        port = receiver.server.server_address[1]
        dns({"rebind.example.test": ["93.184.216.34"]})
        endpoint = WebhookEndpoint.objects.create(project=project, url=f"http://rebind.example.test:{port}/hook",
                                                  secret="s", events=["job.failed"], created_by=admin)
        delivery = webhook_ping(endpoint=endpoint, user=admin)
        # When the name now points at an internal address (DNS rebinding) and the delivery is attempted
        dns({"rebind.example.test": [address]})
        status = delivery_attempt(delivery.pk)

    # Then nothing was sent and the log says why
    assert status == WebhookDelivery.Status.REFUSED
    assert receiver.requests == []
    delivery.refresh_from_db()
    assert delivery.status == "refused" and delivery.attempts == 1
    assert f"resolves to {ipaddress.ip_address(address)}" in delivery.last_error
    assert delivery.next_attempt_at is None


def test_an_allowed_private_target_is_called_on_the_checked_address_with_the_host_name(project, admin, dns,
                                                                                      settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    with Receiver() as receiver:
        port = receiver.server.server_address[1]
        dns({"hooks.internal.test": ["127.0.0.1"]})
        endpoint = WebhookEndpoint.objects.create(project=project, url=f"http://hooks.internal.test:{port}/in",
                                                  secret="s", events=["job.failed"], created_by=admin)
        status = delivery_attempt(webhook_ping(endpoint=endpoint, user=admin).pk)

    assert status == "delivered"
    [request] = receiver.requests
    assert request.headers["Host"] == f"hooks.internal.test:{port}"
    assert request.path == "/in"


# --- https: the connection goes to the checked address, the certificate is checked against the URL's host ------
@pytest.fixture
def https_receiver(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """An https server on 127.0.0.1 with a certificate for hooks.example.test, trusted through SSL_CERT_FILE."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=hooks.example.test", "-addext", "subjectAltName=DNS:hooks.example.test"],
                   check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    receiver = Receiver()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    with receiver:
        yield receiver


def test_an_https_delivery_checks_the_certificate_against_the_url_host(https_receiver, project, admin, dns,
                                                                      settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    port = https_receiver.server.server_address[1]
    dns({"hooks.example.test": ["127.0.0.1"]})
    endpoint = WebhookEndpoint.objects.create(project=project, url=f"https://hooks.example.test:{port}/in",
                                              secret="s", events=["job.failed"], created_by=admin)

    assert delivery_attempt(webhook_ping(endpoint=endpoint, user=admin).pk) == "delivered"
    assert https_receiver.requests[0].headers["Host"] == f"hooks.example.test:{port}"

    # The same server under a name its certificate does not carry: refused by TLS, nothing delivered
    wrong = Target(scheme="https", host="other.example.test", port=port, path="/in", address="127.0.0.1")
    answer = post(wrong, b"{}", {"Content-Type": "application/json"})
    assert answer.code is None and "SSLError" in answer.error and answer.retryable
    assert len(https_receiver.requests) == 1
