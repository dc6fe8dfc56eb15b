from __future__ import annotations

import pytest
from pydantic import ValidationError

from protocol.hashes import HashFamily, InvalidHash, family_from_length, hamming, normalize
from protocol.lab import LabNetwork


def test_family_from_length() -> None:
    assert family_from_length("D41D8CD98F00B204E9800998ECF8427E") is HashFamily.MD5
    assert family_from_length("a" * 40) is HashFamily.SHA1
    for ambiguous in ("a" * 64, "a" * 16):
        with pytest.raises(InvalidHash):
            family_from_length(ambiguous)
    with pytest.raises(InvalidHash):
        family_from_length("xyz")


def test_normalize_and_hamming() -> None:
    assert normalize(HashFamily.PHASH, " FF00FF00FF00FF00 ") == "ff00ff00ff00ff00"
    with pytest.raises(InvalidHash):
        normalize(HashFamily.PDQ, "ab")
    assert hamming("f0", "0f") == 8


def test_lab_network_stays_on_loopback() -> None:
    lab = LabNetwork(hosts={"Shop.Hoster-A.test.": "127.0.1.1"}, allow_ranges=["127.0.1.0/24"])
    assert lab.resolve("shop.hoster-a.test") == "127.0.1.1"
    assert lab.allows("127.0.1.9") and not lab.allows("127.0.0.1")
    with pytest.raises(ValidationError):
        LabNetwork(allow_ranges=["10.0.0.0/8"])
    with pytest.raises(ValidationError):
        LabNetwork(hosts={"x.test": "192.0.2.1"})
