"""The conflict ledger over HTTP: review cases (reads open to whoever reads the conflicts, writes need a token with
the review scope), and the report page at /report, linked from the landing page and drawn in headless Chromium."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from geoservice.serve.app import create_app
from geoservice.settings import AccessSettings, TokenSettings, token_digest
from servers import Server
from sql_helpers import query
from system_tools import chromium
from test_report import CHART_BACKGROUND, CHROMIUM_FLAGS, DISTRICT_FILL, MAP_BACKGROUND, _bands, _pixels
from test_serve_html import signed_in_url


def _open_conflict(served: Server) -> int:
    """A conflict of the current run no test has reviewed yet."""
    return query(served.settings, "SELECT c.id FROM geoservice.conflict c JOIN geoservice.detection_run r ON c.run_id = ANY(r.chain) AND (c.until_run IS NULL OR c.until_run > r.id) "
                                  "JOIN geoservice.conflict_case k ON k.id = c.case_id WHERE r.is_current AND k.status = 'open' "
                                  "AND NOT EXISTS (SELECT 1 FROM geoservice.conflict_case_event e WHERE e.case_id = k.id) "
                                  "ORDER BY c.id DESC LIMIT 1")[0][0]


def _review(conflict: int) -> str:
    return f"/collections/conflicts/items/{conflict}/review"


def test_case_reads_are_open_to_conflict_readers(served: Server) -> None:
    conflict = _open_conflict(served)
    case = served.get(_review(conflict), as_="viewer").json()
    assert case["conflict_id"] == conflict and case["case"]["status"] == "open" and case["history"] == []
    assert case["allowed"] == ["confirmed", "resolved", "waived"]
    assert served.get(_review(conflict), as_=None).status_code == 404  # anonymous callers do not read conflicts
    assert served.get(_review(99_999_999), as_="viewer").status_code == 404


def test_writes_need_a_token_with_the_review_scope(served: Server) -> None:
    conflict = _open_conflict(served)
    change = {"status": "confirmed", "comment": "核实属实"}
    anonymous = served.post(_review(conflict), change, as_=None)
    assert anonymous.status_code == 401 and "Bearer" in anonymous.headers["WWW-Authenticate"]
    viewer = served.post(_review(conflict), change, as_="viewer")
    assert viewer.status_code == 403 and "no 'review' scope" in viewer.json()["description"]
    assert served.get(_review(conflict), as_="viewer").json()["history"] == []  # refused writes changed nothing

    accepted = served.post(_review(conflict), change, as_="tester")
    assert accepted.status_code == 200, accepted.text
    case = accepted.json()
    assert case["case"]["status"] == "confirmed" and case["case"]["reviewer"] == "tester"
    assert [(e["from_status"], e["to_status"], e["reviewer"], e["comment"]) for e in case["history"]] == [
        ("open", "confirmed", "tester", "核实属实")]
    assert query(served.settings, "SELECT status FROM geoservice.conflict WHERE id = %s", conflict)[0][0] == "confirmed"
    item = served.get(f"/collections/conflicts/items/{conflict}", as_="viewer").json()
    assert item["properties"]["status"] == "confirmed"


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"status": "resolved"}, 422, "needs a comment"),
    ({"status": "closed", "comment": "x"}, 409, "cannot go from open to closed"),
    ({"status": "confirmed", "reviewer": "someone else"}, 400, "unknown member 'reviewer'"),
    ({"comment": "no status"}, 400, "string \"status\""),
    ("confirmed", 400, "JSON object"),
])
def test_bad_reviews_are_refused_with_reasons(served: Server, body: object, status: int, message: str) -> None:
    conflict = _open_conflict(served)
    response = served.post(_review(conflict), body, as_="tester")
    assert response.status_code == status and message in response.json()["description"]
    assert served.get(_review(conflict), as_="tester").json()["history"] == []


def test_writes_are_disabled_when_no_token_has_the_review_scope(served: Server, tmp_path: Path) -> None:
    readers_only = AccessSettings(tokens={"reader": TokenSettings(sha256=token_digest("reader-token"), grade="internal")})
    settings = served.settings.model_copy(update={"access": readers_only})
    with TestClient(create_app(settings)) as client:
        conflict = _open_conflict(served)
        headers = {"Authorization": "Bearer reader-token"}
        response = client.post(_review(conflict), json={"status": "confirmed"}, headers=headers)
        assert response.status_code == 403 and "disabled" in response.json()["description"]
        assert client.get(_review(conflict), headers=headers).status_code == 200


def test_report_page_is_linked_from_the_landing_page(served: Server) -> None:
    assert 'href="' + served.url + '/report"' in served.get("/", as_="viewer", f="html").text
    assert "/report" not in served.get("/", as_=None, f="html").text.replace("/login", "")
    page = served.get("/report", as_="viewer")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "冲突台账" in page.text and "<svg" in page.text
    assert served.get("/report", as_=None).status_code == 404


def test_served_report_draws_in_headless_chromium(served: Server, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
                    "--window-size=1200,3400", f"--screenshot={shot}", signed_in_url(served, "/report")],
                   capture_output=True, timeout=120, check=True)
    image = np.asarray(Image.open(shot).convert("RGB"))
    ys, xs = np.nonzero(_pixels(image, MAP_BACKGROUND))
    assert len(ys) > 10_000, "the map did not draw"
    assert _pixels(image[ys.min():ys.max() + 1, xs.min():xs.max() + 1], DISTRICT_FILL).mean() > 0.2
    assert len(_bands(_pixels(image, CHART_BACKGROUND).sum(axis=1) > 200)) == 2  # both charts drew
