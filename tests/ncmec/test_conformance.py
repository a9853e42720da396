"""The conformance server refuses what NCMEC would refuse, with NCMEC's codes, and the
client turns each answer into the right coded error."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from blindmatch.errors import NcmecAuthFailed, NcmecRejected, NcmecUnavailable
from blindmatch.ncmec import report as rpt
from blindmatch.ncmec.client import NcmecClient
from blindmatch.ncmec.conformance import ConformanceServer
from tests.ncmec.helpers import make_case, make_config


def _client(server: ConformanceServer, user: str = "esp", pw: str = "secret") -> NcmecClient:
    return NcmecClient(server.base_url, user, pw, timeout=10)


def _details(rid: int, fid: str, data: bytes) -> bytes:
    return rpt.build_file_details(rid, fid, filename="a.jpg", hashes=rpt.file_hashes(data),
                                  classification="A2", viewed_by_esp=False)  # fmt: skip


def test_full_flow_is_accepted_and_recorded(ncmec: ConformanceServer) -> None:
    case = make_case()
    c = _client(ncmec)
    rid = c.submit(rpt.build_report(case, make_config())).report_id
    assert rid is not None
    up = c.upload(rid, "a.jpg", case.media[0].data)
    assert up.file_id and up.hash
    c.fileinfo(_details(rid, up.file_id, case.media[0].data))
    done = c.finish(rid)
    assert done.files == [up.file_id]
    assert [(r.endpoint, r.response_code) for r in ncmec.requests] == [
        ("submit", 0),
        ("upload", 0),
        ("fileinfo", 0),
        ("finish", 0),
    ]
    assert ncmec.reports[rid].state == "finished"
    assert ncmec.reports[rid].files[up.file_id].details is not None


def test_wrong_password_is_http_401(ncmec: ConformanceServer) -> None:
    with pytest.raises(NcmecAuthFailed):
        _client(ncmec, pw="wrong").submit(rpt.build_report(make_case(), make_config()))
    assert ncmec.requests[-1].http_status == 401


def test_out_of_order_and_malformed_xml_get_4100_and_4110(ncmec: ConformanceServer) -> None:
    root = ET.fromstring(rpt.build_report(make_case(), make_config()))
    summary = root[0]
    root.remove(summary)
    root.append(summary)
    c = _client(ncmec)
    with pytest.raises(NcmecRejected) as e:
        c.submit(ET.tostring(root), validate=False)
    assert e.value.ncmec_code == 4100
    with pytest.raises(NcmecRejected) as e:
        c.submit(b"<report><incidentSummary>", validate=False)
    assert e.value.ncmec_code == 4110
    assert ncmec.reports == {}


def test_sequence_rules(ncmec: ConformanceServer) -> None:
    case = make_case()
    data = case.media[0].data
    c, other = _client(ncmec), _client(ncmec, "other", "pw2")
    with pytest.raises(NcmecRejected) as e:
        c.upload(424242, "a.jpg", data)  # no such report
    assert e.value.ncmec_code == 5001
    rid = c.submit(rpt.build_report(case, make_config())).report_id
    assert rid is not None
    with pytest.raises(NcmecRejected) as e:
        other.upload(rid, "a.jpg", data)  # another account's report
    assert e.value.ncmec_code == 5001
    with pytest.raises(NcmecRejected) as e:
        c.upload(rid, "a.jpg", b"")  # empty file
    assert e.value.ncmec_code == 4200
    with pytest.raises(NcmecRejected) as e:
        c.fileinfo(_details(rid, "nosuchfile", data))
    assert e.value.ncmec_code == 5002
    c.finish(rid)
    for call in (lambda: c.finish(rid), lambda: c.upload(rid, "a.jpg", data),
                 lambda: c.retract(rid)):  # fmt: skip
        with pytest.raises(NcmecRejected) as e:
            call()
        assert e.value.ncmec_code == 5102
    rid2 = c.submit(rpt.build_report(case, make_config())).report_id
    assert rid2 is not None
    c.retract(rid2)
    with pytest.raises(NcmecRejected) as e:
        c.finish(rid2)
    assert e.value.ncmec_code == 5101


def test_faults(ncmec: ConformanceServer) -> None:
    c = _client(ncmec)
    xml = rpt.build_report(make_case(), make_config())
    ncmec.fail_next("submit", 2)
    for _ in range(2):
        with pytest.raises(NcmecUnavailable):
            c.submit(xml)
    assert ncmec.reports == {}  # a 503 processes nothing
    ncmec.drop_next("submit")
    with pytest.raises(NcmecUnavailable):
        c.submit(xml)
    assert len(ncmec.reports) == 1  # processed, answer lost
    ncmec.reject_next("submit", 4100, "Validation failed")
    with pytest.raises(NcmecRejected):
        c.submit(xml)
    assert c.submit(xml).report_id is not None
