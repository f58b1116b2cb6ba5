"""The web page with streamed timestamps and read-along books, in headless Chromium against a real server on
the tiny checkpoint (the browser and server of test_web.py): the Speak tab shows each chunk's words from the
SSE stream as its audio arrives and highlights them as it plays; the Books tab asks for a read-along EPUB 3."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import requests
from test_web import (
    SEEK_SCRIPT,
    SPOKEN_SCRIPT,
    base,
    console_errors,
    driver,
    el,
    player_seconds,
    screenshot,
    shots,
    show,
    wait,
)

__all__ = ["base", "driver", "shots"]  # the fixtures this module uses, shared with test_web.py

# Records what the page sends and, at each piece of audio handed to the player, how many words it shows.
HOOKS = """
window.sentBodies = []; window.wordsAtAudio = [];
window.realFetch = window.fetch;
window.fetch = (url, init) => {
  if (init && typeof init.body === "string") window.sentBodies.push([String(url), init.body]);
  return window.realFetch(url, init);
};
window.realAppend = SourceBuffer.prototype.appendBuffer;
SourceBuffer.prototype.appendBuffer = function (data) {
  window.wordsAtAudio.push(document.querySelectorAll("#timestamps-view span").length);
  return window.realAppend.call(this, data);
};
"""
UNHOOK = "window.fetch = window.realFetch; SourceBuffer.prototype.appendBuffer = window.realAppend;"
SPANS_SCRIPT = (
    "return [...document.querySelectorAll('#timestamps-view span')].map(s => [s.textContent, "
    "Number(s.dataset.start), Number(s.dataset.end), Number(s.dataset.chunk)])"
)
# Pause tags end chunks, and their silence makes each chunk's piece long enough for mp3 frames of its own.
TEXT = "Hi. [pause:0.5s] Go on now. [pause:0.5s] Then stop."


def test_streamed_timestamps_arrive_with_the_audio_and_are_highlighted(driver: Any, base: str, shots: Path) -> None:
    show(driver, "speak")
    assert el(driver, "stream").is_selected()  # Chromium streams mp3 through MediaSource
    el(driver, "timestamps").click()
    assert not el(driver, "format").is_enabled()  # the stream is mp3
    driver.find_element("css selector", "#speak-form summary").click()
    assert el(driver, "seed").is_enabled()  # ...but takes Bark's options
    el(driver, "seed").send_keys("11")
    el(driver, "text").send_keys(TEXT)
    driver.execute_script(HOOKS)
    try:
        el(driver, "speak").click()
        wait(driver).until(lambda d: el(d, "download").is_displayed() or el(d, "speak-error").text)
        sent, at_audio = driver.execute_script("return [window.sentBodies, window.wordsAtAudio]")
    finally:
        driver.execute_script(UNHOOK)
    assert el(driver, "speak-error").text == ""
    speech = [json.loads(body) for url, body in sent if url.endswith("/v1/audio/speech")]
    assert speech == [
        {"model": "tts-1", "input": TEXT, "voice": "v2/en_speaker_6", "response_format": "mp3",
         "stream_format": "sse", "timestamps": True, "seed": 11, "text_temp": 0.7, "waveform_temp": 0.7, "speed": 1}
    ]  # fmt: skip

    spans = driver.execute_script(SPANS_SCRIPT)
    assert [s[0] for s in spans] == ["Hi.", "Go", "on", "now.", "Then", "stop."]  # the aligner's words
    assert [s[3] for s in spans] == [0, 1, 1, 1, 2, 2]  # each from its chunk's timestamps event
    # Each chunk's words were on the page before its audio reached the player, and no later chunk's were.
    assert at_audio[0] == 1 and at_audio[-1] == len(spans)
    assert set(at_audio) == {1, 4, 6}
    assert at_audio == sorted(at_audio)
    starts = [s[1] for s in spans]
    assert starts == sorted(starts) and all(s[1] <= s[2] for s in spans)
    duration = player_seconds(driver, "player")
    assert spans[-1][2] <= duration + 0.01  # on the stream's clock: inside the audio the player holds
    assert spans[1][1] >= 0.5  # the second chunk's words come after the first chunk's 0.5 s pause

    checked = 0
    for text, start, end, _ in spans:
        if end <= start:
            continue  # a word the aligner squeezed to no time cannot be played
        driver.execute_script(SEEK_SCRIPT, (start + end) / 2)
        assert driver.execute_script(SPOKEN_SCRIPT) == [text]
        checked += 1
    assert checked >= 3
    driver.execute_script(SEEK_SCRIPT, (spans[4][1] + spans[4][2]) / 2)
    screenshot(driver, shots, "stream-timestamps")
    el(driver, "timestamps").click()
    assert el(driver, "format").is_enabled() is False  # streaming alone sends the stream's own fields
    assert console_errors(driver) == []


BOOK = "# The First\n\nIt was a dark night. The wind blew.\n\n# The Second\n\nThen the sun came out.\n"


def test_a_read_along_epub_is_asked_for_from_the_books_tab(driver: Any, base: str, tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import Select

    book = tmp_path / "short.md"
    book.write_text(BOOK)
    show(driver, "books")
    Select(el(driver, "book-output")).select_by_value("epub3")
    el(driver, "book-words").click()
    el(driver, "book-file").send_keys(str(book))
    wait(driver).until(lambda d: el(d, "book-plan").is_displayed())
    el(driver, "book-start").click()
    wait(driver).until(lambda d: el(d, "job-state").text in ("succeeded", "failed", "cancelled"))
    job = requests.get(f"{base}/jobs/{el(driver, 'job-id').text}", timeout=30).json()
    assert job["state"] == "succeeded", job.get("error")
    assert job["book"]["output"] == "epub3" and job["caption_words"] is True
    link = el(driver, "job-download")
    assert link.get_attribute("download") == f"job-{job['id']}.epub"
    epub = zipfile.ZipFile(io.BytesIO(requests.get(link.get_attribute("href"), timeout=60).content))
    assert epub.read("mimetype") == b"application/epub+zip"
    assert any(name.endswith(".smil") for name in epub.namelist())  # Media Overlays: the read-along

    Select(el(driver, "book-output")).select_by_value("")  # the server's default again: m4b, one file for .md
    el(driver, "book-words").click()
    el(driver, "book-start").click()
    wait(driver).until(lambda d: el(d, "job-id").text != job["id"])
    wait(driver).until(lambda d: el(d, "job-state").text in ("succeeded", "failed", "cancelled"))
    plain = requests.get(f"{base}/jobs/{el(driver, 'job-id').text}", timeout=30).json()
    assert plain["book"]["output"] == "single" and plain["caption_words"] is False

    Select(el(driver, "book-output")).select_by_value("m4b")
    el(driver, "book-start").click()
    wait(driver).until(lambda d: el(d, "job-id").text not in (job["id"], plain["id"]))
    wait(driver).until(lambda d: el(d, "job-state").text in ("succeeded", "failed", "cancelled"))
    m4b = requests.get(f"{base}/jobs/{el(driver, 'job-id').text}", timeout=30).json()
    assert m4b["book"]["output"] == "m4b"
    assert console_errors(driver) == []
