"""The web page at /, driven in headless Chromium against a real server on the tiny checkpoint."""

from __future__ import annotations

import contextlib
import io
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import soundfile as sf

from barkserve.testing.tiny import make_tiny_ctc
from serverproc import running_server
from support import missing

MAX_TEXT_CHARS = 300
WAIT_SEC = 300  # a guard against a hung page or server, not a speed assertion
PHONE = (412, 915)  # a phone-width window: every screen must fit it without scrolling sideways


@pytest.fixture(scope="module")
def base(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("web")
    # Word timestamps align with a tiny random CTC checkpoint (the hub's cannot be fetched here).
    ctc = make_tiny_ctc(root / "ctc")
    extra = ["--max-duration-sec", "0.3", "--max-text-chars", str(MAX_TEXT_CHARS), "--align-model", str(ctc)]
    with running_server(tiny_model_dir, root, *extra) as url:
        yield url


@pytest.fixture(scope="module")
def driver(base: str) -> Iterator[Any]:
    with start_browser(base) as chrome:
        wait(chrome).until(lambda d: d.execute_script("return document.getElementById('voice').options.length > 0"))
        yield chrome


@contextlib.contextmanager
def start_browser(base: str) -> Iterator[Any]:
    """Headless Chromium at phone width with the page at `base` loaded."""
    browser, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver_path is None:
        missing("chromium and chromium-driver (Debian) are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(browser)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={PHONE[0]},{PHONE[1]}", "--autoplay-policy=no-user-gesture-required"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(service=Service(str(driver_path)), options=options)
    try:
        chrome.get(base + "/")
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def wait(driver: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_SEC, poll_frequency=0.2)


def el(driver: Any, element_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def show(driver: Any, tab: str) -> None:
    el(driver, f"tab-{tab}").click()
    assert el(driver, f"panel-{tab}").is_displayed()


def player_seconds(driver: Any, player_id: str) -> float:
    """The duration the browser decoded for an audio element, once its metadata has loaded."""
    script = f"const p = document.getElementById('{player_id}'); return p.readyState >= 1 && isFinite(p.duration)"
    wait(driver).until(lambda d: d.execute_script(script))
    return float(driver.execute_script(f"return document.getElementById('{player_id}').duration"))


def screenshot(driver: Any, folder: Path, name: str) -> Path:
    """Save the screen as PNG and check it is not blank; also that it fits the phone-width window."""
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path))
    width, height, distinct = png_summary(path.read_bytes())
    assert width > 0 and height > 0
    assert distinct > 8, f"{path} looks blank"
    return path


def png_summary(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the pixel data) of a PNG; a blank page has very few."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    pos, idat = 8, b""
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        idat += data[pos + 8 : pos + 8 + length] if kind == b"IDAT" else b""
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


def console_errors(driver: Any, allowed: tuple[str, ...] = ()) -> list[str]:
    """Errors logged by the page since the last call, but the ones a test caused on purpose."""
    entries = driver.get_log("browser")
    return [e["message"] for e in entries if e["level"] == "SEVERE" and not any(a in e["message"] for a in allowed)]


def test_speak_plays_the_audio_the_server_made_with_the_chosen_voice(driver: Any, base: str, shots: Path) -> None:
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    groups = driver.execute_script("return [...document.querySelectorAll('#voice optgroup')].map(g => g.label)")
    assert {"English", "German", "Chinese"} <= set(groups)
    voice = Select(el(driver, "voice"))
    assert voice.first_selected_option.get_attribute("value") == "v2/en_speaker_6"  # the server's default
    voice.select_by_value("v2/de_speaker_3")
    el(driver, "text").send_keys("Hallo. Wie geht es dir heute? Gut.")
    assert el(driver, "stream").is_selected()  # Chromium streams mp3 through MediaSource
    assert el(driver, "text-estimate").text.startswith("2 chunks, about ")  # the first sentence goes alone
    el(driver, "speak").click()
    wait(driver).until(lambda d: el(d, "download").is_displayed())
    assert "voice v2/de_speaker_3" in el(driver, "speak-status").text
    seconds = player_seconds(driver, "player")
    request_id = el(driver, "player").get_attribute("data-request-id")
    progress = requests.get(f"{base}/v1/audio/speech/{request_id}", timeout=30).json()
    assert progress["chunks_done"] == progress["chunks_total"] == 2
    assert seconds > 0
    assert seconds == pytest.approx(progress["audio_sec"], abs=0.08)  # whole mp3 frames at the end
    # Keyboard: the arrow keys move between the screens' tabs.
    el(driver, "tab-speak").send_keys(Keys.ARROW_RIGHT)
    assert el(driver, "tab-clone").get_attribute("aria-selected") == "true"
    el(driver, "tab-clone").send_keys(Keys.ARROW_LEFT)
    assert el(driver, "panel-speak").is_displayed()
    screenshot(driver, shots, "speak")
    assert console_errors(driver) == []


def test_whole_file_speech_and_api_errors_next_to_their_fields(driver: Any) -> None:
    show(driver, "speak")
    el(driver, "stream").click()  # POST /synthesize: every option, the server's max_text_chars
    assert not el(driver, "stream").is_selected() and el(driver, "seed").is_enabled()
    assert el(driver, "text-estimate").text.startswith("1 chunk, about ")
    el(driver, "speak").click()
    wait(driver).until(lambda d: el(d, "download").is_displayed())
    served = requests.get(el(driver, "download").get_attribute("href"), timeout=30)
    audio, rate = sf.read(io.BytesIO(served.content))
    recorded = float(el(driver, "player").get_attribute("data-duration-sec"))
    assert len(audio) / rate == pytest.approx(recorded, abs=0.01)
    assert player_seconds(driver, "player") == pytest.approx(recorded, abs=0.01)
    el(driver, "text").clear()
    el(driver, "text").send_keys("x" * (MAX_TEXT_CHARS + 1))
    el(driver, "speak").click()
    wait(driver).until(lambda d: el(d, "text-error").text)
    assert f"this server accepts at most {MAX_TEXT_CHARS}" in el(driver, "text-error").text
    assert el(driver, "text").get_attribute("aria-invalid") == "true"
    assert el(driver, "speak-error").text == ""
    el(driver, "text").clear()
    el(driver, "text").send_keys("Hello.")
    driver.find_element("css selector", "#speak-form summary").click()
    el(driver, "seed").send_keys("-1")
    el(driver, "speak").click()
    wait(driver).until(lambda d: el(d, "seed-error").text)
    assert el(driver, "seed-error").text.startswith("seed must be an integer")
    assert el(driver, "text-error").text == ""
    el(driver, "seed").clear()
    # The two refused requests are logged by Chromium as failed loads; nothing else may be.
    assert console_errors(driver, allowed=("/synthesize - Failed to load resource: the server responded with "
                                           "a status of 400",)) == []  # fmt: skip


WORDS_SCRIPT = (
    "return [...document.querySelectorAll('#timestamps-view span')].map(s => [s.textContent, "
    "Number(s.dataset.start), Number(s.dataset.end)])"
)
# Moves the paused player to a time and says so as playback does (deterministic: no waiting for playback).
SEEK_SCRIPT = (
    "const p = document.getElementById('player'); p.pause(); p.currentTime = arguments[0]; "
    "p.dispatchEvent(new Event('timeupdate'));"
)
SPOKEN_SCRIPT = "return [...document.querySelectorAll('#timestamps-view span.spoken')].map(s => s.textContent)"


def test_timestamps_highlight_the_word_being_spoken(driver: Any, shots: Path) -> None:
    show(driver, "speak")
    el(driver, "text").clear()
    el(driver, "text").send_keys("Hi. Go on now.")
    if el(driver, "stream").is_selected():  # the JSON answer (streamed timestamps: test_web_stream_words.py)
        el(driver, "stream").click()
    el(driver, "timestamps").click()
    assert el(driver, "seed").is_enabled()  # the timed answer takes every option
    el(driver, "speak").click()
    wait(driver).until(lambda d: el(d, "download").is_displayed() and el(d, "timestamps-view").is_displayed())
    words = driver.execute_script(WORDS_SCRIPT)
    assert [w[0] for w in words] == ["Hi.", "Go", "on", "now."]  # words: the server aligned them
    duration = player_seconds(driver, "player")
    assert words[-1][2] <= duration + 0.01
    checked = 0
    for text, start, end in words:
        if end <= start:
            continue  # a word the aligner squeezed to no time cannot be played
        driver.execute_script(SEEK_SCRIPT, (start + end) / 2)
        assert driver.execute_script(SPOKEN_SCRIPT) == [text]
        assert driver.find_element("css selector", "#timestamps-view [aria-current]").text == text
        checked += 1
    assert checked >= 2
    driver.execute_script(SEEK_SCRIPT, duration + 1)  # past the end: nothing is spoken
    assert driver.execute_script(SPOKEN_SCRIPT) == []
    driver.execute_script(SEEK_SCRIPT, (words[0][1] + words[0][2]) / 2)
    screenshot(driver, shots, "timestamps")
    el(driver, "timestamps").click()
    assert console_errors(driver) == []


def test_clone_a_voice_and_speak_with_it(driver: Any, base: str, tmp_path: Path, shots: Path) -> None:
    if shutil.which("espeak-ng") is None:
        missing("espeak-ng is not installed (apt-get install espeak-ng)")
    reference = tmp_path / "me.wav"
    subprocess.run(["espeak-ng", "-w", str(reference), "This is my voice, recorded for a quick test."], check=True)
    show(driver, "clone")
    el(driver, "clone-file").send_keys(str(reference))
    el(driver, "clone-name").send_keys("espeak_me")
    assert not el(driver, "clone-create").is_enabled()  # consent first
    el(driver, "consent").click()
    assert el(driver, "clone-create").is_enabled()
    el(driver, "clone-create").click()
    wait(driver).until(lambda d: el(d, "clone-try").is_displayed())
    assert "espeak_me" in requests.get(f"{base}/voices", timeout=30).json()["custom"]
    assert el(driver, "voice").get_attribute("value") == "espeak_me"
    el(driver, "clone-speak").click()
    seconds = player_seconds(driver, "clone-player")
    assert seconds > 0
    assert seconds == pytest.approx(float(el(driver, "clone-player").get_attribute("data-duration-sec")), abs=0.01)
    screenshot(driver, shots, "clone")
    assert console_errors(driver) == []


def test_a_book_job_runs_to_done_with_live_chunks(driver: Any, base: str, tmp_path: Path, shots: Path) -> None:
    book = tmp_path / "book.md"
    sentences = " ".join(f"Sentence number {i} of the book goes on for a little while." for i in range(8))
    book.write_text(f"# Chapter one\n\nIt was a *dark* night. {sentences}\n\nThen, at last, the sun came out.\n")
    show(driver, "books")
    el(driver, "book-file").send_keys(str(book))
    el(driver, "book-start").click()
    wait(driver).until(lambda d: el(d, "job-state").text in ("succeeded", "failed", "cancelled"))
    assert el(driver, "job-state").text == "succeeded"
    job = requests.get(f"{base}/jobs/{el(driver, 'job-id').text}", timeout=30).json()
    marks = driver.execute_script("return [...document.querySelectorAll('#job-chunks .mark')].map(m => m.textContent)")
    assert marks == ["done"] * job["chunks_total"] and job["chunks_total"] >= 2
    assert el(driver, "job-download").get_attribute("href").endswith(job["audio_url"])
    wait(driver).until(lambda d: job["id"][:8] in el(d, "jobs-table").text)
    screenshot(driver, shots, "books")
    assert console_errors(driver) == []


def test_an_eval_report_opens_in_the_page(driver: Any, tmp_path: Path, shots: Path) -> None:
    report = tmp_path / "report.html"
    report.write_text(
        "<!doctype html><title>barkserve eval</title><style>h1{color:#174a84}</style><h1>Eval report</h1>"
        '<svg width="200" height="60"><rect width="150" height="40" fill="#174a84"/></svg>'
    )
    show(driver, "eval")
    el(driver, "eval-file").send_keys(str(report))
    wait(driver).until(lambda d: el(d, "eval-frame").is_displayed())
    assert "Eval report" in el(driver, "eval-frame").get_attribute("srcdoc")
    screenshot(driver, shots, "eval")
    assert console_errors(driver) == []


def test_the_page_and_its_files_come_from_the_package(base: str) -> None:
    page = requests.get(f"{base}/", timeout=30)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        asset = requests.get(f"{base}/web/{name}", timeout=30)
        assert asset.status_code == 200 and kind in asset.headers["Content-Type"]
    absent = requests.get(f"{base}/web/nothing.js", timeout=30)
    assert absent.status_code == 404 and absent.json()["error"]["code"] == "not_found"
