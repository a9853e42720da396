"""The report and fileDetails XML: valid against NCMEC's schema for a real-looking case,
in the schema's element order, and anything invalid refused before sending."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from blindmatch.errors import NcmecInvalidXml
from blindmatch.ncmec import report as rpt
from tests.ncmec.helpers import make_case, make_config


def test_packaged_xsd_is_ncmecs_schema_unchanged() -> None:
    assert hashlib.sha256(rpt.xsd_bytes()).hexdigest() == rpt.XSD_SHA256


def test_report_is_valid_and_in_schema_order() -> None:
    case = make_case()
    xml = rpt.build_report(case, make_config())
    rpt.validate(xml, "report")  # again, explicitly
    root = ET.fromstring(xml)
    assert [c.tag for c in root] == [
        "incidentSummary",
        "internetDetails",
        "reporter",
        "personOrUserReported",
        "additionalInfo",
    ]
    assert root.findtext("incidentSummary/incidentType") == rpt.INCIDENT_TYPE
    assert root.findtext("incidentSummary/incidentDateTime") == "2026-12-03T10:15:00Z"
    assert root.findtext("internetDetails/chatImIncident/chatRoomName") == "!room:example.org"
    assert root.findtext("reporter/reportingPerson/email") == "trust@example.org"
    user = root.find("personOrUserReported")
    assert user is not None
    assert user.findtext("espIdentifier") == "@mallory:example.org"
    assert user.findtext("screenName") == "@mallory:example.org"
    assert "ncmec/demo/e-17 distance=4" in (root.findtext("additionalInfo") or "")


def test_file_details_valid_with_hashes_classification_and_viewed() -> None:
    data = make_case().media[0].data
    xml = rpt.build_file_details(
        123,
        "f-1",
        filename="a.jpg",
        hashes=rpt.file_hashes(data),
        classification="B2",
        viewed_by_esp=True,
    )
    root = ET.fromstring(xml)
    assert root.findtext("industryClassification") == "B2"
    assert root.findtext("fileViewedByEsp") == "true"
    hashes = {h.get("hashType"): h.text for h in root.findall("originalFileHash")}
    assert hashes == {
        "SHA256": hashlib.sha256(data).hexdigest(),
        "MD5": hashlib.md5(data).hexdigest(),
    }


def test_elements_out_of_order_are_refused() -> None:
    xml = rpt.build_report(make_case(), make_config())
    root = ET.fromstring(xml)
    reporter = root.find("reporter")
    assert reporter is not None
    root.remove(reporter)
    root.insert(0, reporter)  # reporter before incidentSummary
    with pytest.raises(NcmecInvalidXml) as e:
        rpt.validate(ET.tostring(root), "report")
    assert e.value.code == "ncmec_invalid_xml"


def test_bad_category_refused_before_anything_is_built() -> None:
    with pytest.raises(NcmecInvalidXml):
        rpt.build_report(replace(make_case(), category="C"), make_config())
    with pytest.raises(NcmecInvalidXml):
        rpt.build_file_details(
            1, "f", filename="a", hashes={}, classification="X", viewed_by_esp=False
        )


@pytest.mark.parametrize(
    "xml",
    [
        b"<report>",
        b"<fileDetails/>",
        b"<report><incidentSummary/></report>",
        b"<?xml version='1.0'?><report><incidentSummary><incidentType>Spam</incidentType>"
        b"<incidentDateTime>2026-01-01T00:00:00Z</incidentDateTime></incidentSummary>"
        b"<reporter><reportingPerson/></reporter></report>",
    ],
)
def test_invalid_documents_refused(xml: bytes) -> None:
    with pytest.raises(NcmecInvalidXml):
        rpt.validate(xml, "report")


def test_control_characters_in_free_text_do_not_break_the_xml() -> None:
    case = replace(make_case(), room="!ro\x00om\x1b:example.org")
    root = ET.fromstring(rpt.build_report(case, make_config()))
    assert root.findtext("internetDetails/chatImIncident/chatRoomName") == "!room:example.org"


def test_the_report_says_how_the_account_was_disabled() -> None:
    from datetime import UTC, datetime

    t = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    case, config = make_case(), make_config()

    def user(xml: bytes) -> ET.Element:
        found = ET.fromstring(xml).find("personOrUserReported")
        assert found is not None
        return found

    suspended = user(rpt.build_report(case, config, t, rpt.AccountStatus("suspend", t, t)))
    el = suspended.find("accountTemporarilyDisabled")
    assert el is not None and el.text == "true"
    assert el.get("userNotified") == "true" and el.get("disabledDate", "").startswith("2026-12-03")
    assert suspended.find("accountPermanentlyDisabled") is None
    gone = user(rpt.build_report(case, config, t, rpt.AccountStatus("deactivate", t, None)))
    el = gone.find("accountPermanentlyDisabled")
    assert el is not None and el.get("userNotified") == "false"
    warned = user(rpt.build_report(case, config, t, rpt.AccountStatus("warn", None, t)))
    assert warned.find("accountTemporarilyDisabled") is None
    assert warned.find("accountPermanentlyDisabled") is None
