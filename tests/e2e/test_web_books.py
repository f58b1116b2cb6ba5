"""The web page's Books tab shows a book's plan (POST /books/plan) before its job starts, in headless
Chromium against a real server on the tiny checkpoint (the browser and server of test_web.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
from test_web import base, console_errors, driver, el, screenshot, shots, show, wait

__all__ = ["base", "driver", "shots"]  # the fixtures this module uses, shared with test_web.py

BOOK = "# The First\n\nIt was a dark night. The wind blew hard.\n\n# The Second\n\nThen the sun came out. Birds sang.\n"


def plan_rows(driver: Any) -> list[list[str]]:
    rows = "[...document.querySelectorAll('#book-plan-table tbody tr')]"
    script = f"return {rows}.map(r => [...r.cells].map(c => c.textContent))"
    return driver.execute_script(script)  # type: ignore[no-any-return]


def test_the_plan_is_shown_before_the_job_starts(driver: Any, base: str, tmp_path: Path, shots: Path) -> None:
    book = tmp_path / "two chapters.md"
    book.write_text(BOOK)
    show(driver, "books")
    jobs_before = requests.get(f"{base}/jobs", timeout=30).json()["total"]
    el(driver, "book-file").send_keys(str(book))  # choosing the book asks for its plan
    wait(driver).until(lambda d: el(d, "book-plan").is_displayed())
    fields = {"voice_preset": el(driver, "book-voice").get_attribute("value"), "format": "mp3"}
    plan = requests.post(f"{base}/books/plan", files={"file": (book.name, BOOK)}, data=fields, timeout=60).json()
    assert [c["title"] for c in plan["chapters"]] == ["The First", "The Second"]
    rows = [[str(c["number"]), c["title"], str(c["words"]), str(c["chunks"]), ", ".join(c["voices"]), c["first_words"]]
            for c in plan["chapters"]]  # fmt: skip
    assert plan_rows(driver) == rows
    assert (
        f"{plan['chunks']} chunks" in el(driver, "book-plan-summary").text
        and plan["voice"] in el(driver, "book-plan-summary").text
    )
    assert requests.get(f"{base}/jobs", timeout=30).json()["total"] == jobs_before  # planning queues nothing

    el(driver, "book-chapters").send_keys("9")
    el(driver, "book-plan-button").click()
    wait(driver).until(lambda d: el(d, "book-chapters-error").text)
    assert "this book has chapters 1-2" in el(driver, "book-chapters-error").text
    assert not el(driver, "book-plan").is_displayed()
    el(driver, "book-chapters").clear()
    el(driver, "book-chapters").send_keys("2")
    el(driver, "book-plan-button").click()
    wait(driver).until(lambda d: el(d, "book-plan").is_displayed())
    assert [row[:2] for row in plan_rows(driver)] == [["2", "The Second"]]
    screenshot(driver, shots, "book-plan")

    el(driver, "book-start").click()  # the job is the one planned: the second chapter only
    wait(driver).until(lambda d: el(d, "job-state").text in ("succeeded", "failed", "cancelled"))
    job = requests.get(f"{base}/jobs/{el(driver, 'job-id').text}", timeout=30).json()
    assert job["state"] == "succeeded" and [c["title"] for c in job["chapters"]] == ["The Second"]
    refused = "/books/plan - Failed to load resource: the server responded with a status of 400"
    assert console_errors(driver, allowed=(refused,)) == []
