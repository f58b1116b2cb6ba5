"""The Speak tab's markup tools in headless Chromium against a real server on the tiny checkpoint (the
browser and server of test_web.py): the pause button, and the lexicon editor over /lexicon."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests
from test_web import base, console_errors, driver, el, screenshot, shots, show, wait

__all__ = ["base", "driver", "shots"]  # the fixtures this module uses, shared with test_web.py


def test_the_pause_button_puts_a_pause_tag_at_the_cursor(driver: Any, base: str) -> None:
    show(driver, "speak")
    box = el(driver, "text")
    box.clear()
    box.send_keys("Hello there.")
    driver.execute_script("const t = document.getElementById('text'); t.setSelectionRange(6, 6);")  # after "Hello "
    el(driver, "pause-seconds").clear()
    el(driver, "pause-seconds").send_keys("1.5")
    el(driver, "insert-pause").click()
    text = box.get_attribute("value")
    assert text == "Hello  [pause:1.5s] there."
    plan = requests.post(
        f"{base}/v1/audio/speech/plan", json={"model": "tts-1", "voice": "alloy", "input": text}, timeout=60
    ).json()
    assert plan["pauses"] == [{"after_chunk": 0, "seconds": 1.5}]  # the tag the page wrote is one the server reads
    el(driver, "pause-seconds").clear()
    el(driver, "pause-seconds").send_keys("30")
    el(driver, "insert-pause").click()
    assert "0.1 to 10 seconds" in el(driver, "pause-seconds-error").text
    assert box.get_attribute("value") == text
    assert console_errors(driver) == []


def test_the_lexicon_editor_loads_saves_and_deletes(driver: Any, base: str, shots: Path) -> None:
    show(driver, "speak")
    el(driver, "lexicon-editor").click()  # opening it loads the key's lexicon
    wait(driver).until(lambda d: "entries" in el(d, "lexicon-status").text)
    editor = el(driver, "lexicon")
    editor.clear()
    editor.send_keys(json.dumps({"en": {"Nguyen": "win"}}))
    el(driver, "lexicon-save").click()
    wait(driver).until(lambda d: "Saved" in el(d, "lexicon-status").text)
    assert requests.get(f"{base}/lexicon", timeout=30).json()["lexicon"] == {"en": {"Nguyen": "win"}}
    screenshot(driver, shots, "speak-lexicon")

    editor.clear()
    editor.send_keys(json.dumps({"en": {"Nguyen": "Nguyen win"}}))
    el(driver, "lexicon-save").click()
    wait(driver).until(lambda d: el(d, "lexicon-error").text)
    assert "contains the word 'Nguyen'" in el(driver, "lexicon-error").text  # the server names the entry
    editor.clear()
    editor.send_keys("{not json")
    el(driver, "lexicon-save").click()
    wait(driver).until(lambda d: "not JSON" in el(d, "lexicon-error").text)

    el(driver, "lexicon-delete").click()
    wait(driver).until(lambda d: el(d, "lexicon-status").text == "Deleted.")
    assert requests.get(f"{base}/lexicon", timeout=30).json()["lexicon"] == {}
    assert console_errors(driver, allowed=("/lexicon",)) == []
