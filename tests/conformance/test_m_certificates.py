"""OCPP 2.0.1 Core, CSMS test cases M (certificate management, Core part): install, list and delete
CA certificates on the station (part 6, section 3.14)."""

from __future__ import annotations

import hashlib

import pytest

from tests.conformance.station import operate

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

ROOT = (
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUOCTTcsmsroot0000000000000wCgYIKoZIzj0EAwIw\n"
    "-----END CERTIFICATE-----\n"
)
ALGORITHMS = {"SHA256": hashlib.sha256, "SHA384": hashlib.sha384, "SHA512": hashlib.sha512}


def _hash_data(algorithm: str, serial: str = "0ab1c2") -> dict:
    digest = ALGORITHMS[algorithm]
    return {
        "hashAlgorithm": algorithm,
        "issuerNameHash": digest(b"CN=OCTT root").hexdigest()[:128],
        "issuerKeyHash": digest(b"OCTT root key").hexdigest()[:128],
        "serialNumber": serial,
    }


async def _install(station, certificate_type: str, status: str) -> None:
    """Reusable State CertificateInstalled (status Accepted) or its failure."""
    payload = {"certificateType": certificate_type, "certificate": ROOT}
    request, _ = await operate(station, "InstallCertificate", payload, {"status": status})
    assert request == payload


async def test_TC_M_01_CSMS(station):
    """Install CA certificate - CSMSRootCertificate."""
    await _install(station, "CSMSRootCertificate", "Accepted")


async def test_TC_M_02_CSMS(station):
    """Install CA certificate - ManufacturerRootCertificate."""
    await _install(station, "ManufacturerRootCertificate", "Accepted")


async def test_TC_M_05_CSMS(station):
    """Install CA certificate - Failed: the station's refusal is reported as its answer."""
    await _install(station, "CSMSRootCertificate", "Failed")


async def _installed_ids(station, payload: dict, answer: dict) -> dict:
    """Reusable State GetInstalledCertificates; returns the answer the operator sees."""
    request, result = await operate(station, "GetInstalledCertificateIds", payload, answer)
    assert request == payload
    return result["response"]


async def test_TC_M_13_CSMS(station):
    """Retrieve certificates from Charging Station - ManufacturerRootCertificate."""
    chain = [{"certificateType": "ManufacturerRootCertificate", "certificateHashData": _hash_data("SHA256")}]
    answer = await _installed_ids(
        station,
        {"certificateType": ["ManufacturerRootCertificate"]},
        {"status": "Accepted", "certificateHashDataChain": chain},
    )
    assert answer["certificateHashDataChain"] == chain


async def test_TC_M_18_CSMS(station):
    """Retrieve certificates from Charging Station - All certificateTypes (certificateType omitted)."""
    chain = [
        {"certificateType": kind, "certificateHashData": _hash_data("SHA256", serial)}
        for kind, serial in (("CSMSRootCertificate", "01"), ("ManufacturerRootCertificate", "02"))
    ]
    answer = await _installed_ids(station, {}, {"status": "Accepted", "certificateHashDataChain": chain})
    assert answer["certificateHashDataChain"] == chain


async def test_TC_M_19_CSMS(station):
    """Retrieve certificates from Charging Station - No matching certificate found."""
    answer = await _installed_ids(
        station, {"certificateType": ["ManufacturerRootCertificate"]}, {"status": "NotFound"}
    )
    assert answer == {"status": "NotFound"}


async def _delete(station, algorithm: str, status: str) -> None:
    """List the CSMS root certificate, then delete it by the hash data the station reported."""
    await _install(station, "CSMSRootCertificate", "Accepted")
    chain = [{"certificateType": "CSMSRootCertificate", "certificateHashData": _hash_data(algorithm)}]
    answer = await _installed_ids(
        station,
        {"certificateType": ["CSMSRootCertificate"]},
        {"status": "Accepted", "certificateHashDataChain": chain},
    )
    hash_data = answer["certificateHashDataChain"][0]["certificateHashData"]
    request, _ = await operate(
        station, "DeleteCertificate", {"certificateHashData": hash_data}, {"status": status}
    )
    assert request == {"certificateHashData": hash_data}


async def test_TC_M_20_CSMS(station):
    """Delete a certificate from a Charging Station - Success, for SHA256, SHA384 and SHA512."""
    for algorithm in ALGORITHMS:
        await _delete(station, algorithm, "Accepted")


async def test_TC_M_21_CSMS(station):
    """Delete a certificate from a Charging Station - Failed."""
    await _delete(station, "SHA256", "Failed")
