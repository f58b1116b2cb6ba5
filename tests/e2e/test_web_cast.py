"""The web page's Books tab shows a full cast's sheet with the plan, lets the user change a character's voice,
and starts the job with the edited sheet (headless Chromium, real server on the tiny checkpoint)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests
from test_web import base, console_errors, driver, el, screenshot, shots, show, wait

__all__ = ["base", "driver", "shots"]  # the fixtures this module uses, shared with test_web.py

BOOK = (
    '# The Visit\n\n"Where have you been?" said Mrs. Hale.\n\n"In the garden," replied Tom.\n\n'
    '"All day?"\n\n"All day, aunt."\n'
)


def cast_rows(driver: Any) -> list[list[str]]:
    script = (
        "return [...document.querySelectorAll('#book-cast-table tbody tr')].map(r => [...r.cells].map("
        "c => c.querySelector('select, input') ? c.querySelector('select, input').value : c.textContent))"
    )
    return driver.execute_script(script)  # type: ignore[no-any-return]


def test_the_cast_sheet_is_shown_edited_and_used(driver: Any, base: str, tmp_path: Path, shots: Path) -> None:
    from selenium.webdriver.support.ui import Select

    book = tmp_path / "visit.md"
    book.write_text(BOOK)
    show(driver, "books")
    Select(el(driver, "book-voice")).select_by_value("v2/en_speaker_6")
    Select(el(driver, "book-cast")).select_by_value("auto")
    el(driver, "book-file").send_keys(str(book))
    wait(driver).until(lambda d: el(d, "book-cast-view").is_displayed())
    fields = {"voice_preset": "v2/en_speaker_6", "format": "mp3", "cast": "auto"}
    plan = requests.post(f"{base}/books/plan", files={"file": (book.name, BOOK)}, data=fields, timeout=60).json()
    sheet = plan["cast"]
    rows = [[s["name"], str(s["lines"]), s["gender"] or "", s["voice"], ", ".join(s["aliases"])]
            for s in sheet["speakers"]]  # fmt: skip
    assert cast_rows(driver) == rows and {r[0] for r in rows} == {"Mrs. Hale", "Tom"}

    tom = next(k for k, s in enumerate(sheet["speakers"]) if s["name"] == "Tom")
    Select(el(driver, f"cast-voice-{tom}")).select_by_value("v2/en_speaker_3")
    el(driver, f"cast-aliases-{tom}").send_keys("Thomas\t")
    el(driver, "book-plan-button").click()  # the plan again, with the edited sheet
    voices = "return [...document.querySelectorAll('#book-plan-table tbody td')].map(c => c.textContent).join(' ')"
    wait(driver).until(lambda d: "v2/en_speaker_3" in d.execute_script(voices))  # the plan reads Tom in speaker 3
    assert next(r for r in cast_rows(driver) if r[0] == "Tom")[4] == "Thomas"
    screenshot(driver, shots, "book-cast")

    sheet["speakers"][tom] |= {"voice": "v2/en_speaker_3", "aliases": ["Thomas"]}
    edited = requests.post(f"{base}/books/plan", files={"file": (book.name, BOOK)},
                           data={**fields, "cast": json.dumps(sheet)}, timeout=60).json()  # fmt: skip
    plain = requests.post(f"{base}/books/plan", files={"file": (book.name, BOOK)},
                          data={**fields, "cast": ""}, timeout=60).json()  # fmt: skip
    assert edited["chunks"] > plain["chunks"]  # each line its own synthesis
    el(driver, "book-start").click()
    wait(driver).until(lambda d: el(d, "job-state").text in ("succeeded", "failed", "cancelled"))
    job = requests.get(f"{base}/jobs/{el(driver, 'job-id').text}", timeout=30).json()
    assert job["state"] == "succeeded" and job["chunks_total"] == edited["chunks"]
    assert console_errors(driver) == []
