"""The one public base URL: the setting, else the request's scheme and host (proxy headers only where
the settings trust them); used by the driver API's e-mail links and by the URLs handed to chargers."""

import pytest
from django.test import RequestFactory
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from apps.accounts.api import views as account_views
from apps.ocpp_gateway import admin as gateway_admin
from apps.ocpp_gateway import transfers
from cpo import api
from cpo.public_url import public_base_url


@pytest.fixture(autouse=True)
def _hosts(settings):
    settings.ALLOWED_HOSTS = ["cpo.test", "proxy.example.com"]
    settings.CPO_PUBLIC_BASE_URL = ""


def test_the_setting_wins_without_a_trailing_slash(settings):
    settings.CPO_PUBLIC_BASE_URL = " https://cpo.example.com/ "
    request = RequestFactory().get("/", HTTP_HOST="cpo.test")
    assert public_base_url(request) == "https://cpo.example.com"
    assert public_base_url() == "https://cpo.example.com"


def test_without_the_setting_the_request_decides():
    request = RequestFactory().get("/api/v1/auth/register/", HTTP_HOST="cpo.test")
    assert public_base_url(request) == "http://cpo.test"
    secure = RequestFactory().get("/", HTTP_HOST="cpo.test:8443", secure=True)
    assert public_base_url(secure) == "https://cpo.test:8443"


def test_a_drf_request_works_as_well():
    request = Request(APIRequestFactory().post("/api/v1/auth/register/", HTTP_HOST="cpo.test"))
    assert public_base_url(request) == "http://cpo.test"


def test_without_setting_or_request_it_says_so():
    with pytest.raises(ValueError, match="CPO_PUBLIC_BASE_URL is not set"):
        public_base_url()


def test_proxy_headers_count_only_where_the_settings_trust_them(settings):
    forged = {
        "HTTP_HOST": "cpo.test",
        "HTTP_X_FORWARDED_PROTO": "https",
        "HTTP_X_FORWARDED_HOST": "proxy.example.com",
    }
    assert public_base_url(RequestFactory().get("/", **forged)) == "http://cpo.test"

    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.USE_X_FORWARDED_HOST = True
    assert public_base_url(RequestFactory().get("/", **forged)) == "https://proxy.example.com"


def test_there_is_one_public_base_url():
    """The driver API and the gateway (uploads, firmware links) use this one, and the two copies are gone."""
    assert account_views.public_base_url is public_base_url
    assert gateway_admin.public_base_url is public_base_url
    assert not hasattr(transfers, "public_base_url")
    assert not hasattr(api, "public_base_url")
