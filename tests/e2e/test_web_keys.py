"""The web page on a server that requires API keys: the key typed in the header reaches every call and file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from test_web import console_errors, el, player_seconds, screenshot, start_browser, wait

from serverproc import create_key, running_server


@pytest.fixture(scope="module")
def keyed(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    root = tmp_path_factory.mktemp("web-keys")
    secret = create_key(root, "browser", "speak,clone,jobs")
    with running_server(tiny_model_dir, root, "--max-duration-sec", "0.3") as url:
        yield url, secret


def test_the_page_works_once_its_key_is_typed(keyed: tuple[str, str], tmp_path: Path) -> None:
    from selenium.webdriver.common.keys import Keys

    base, secret = keyed
    with start_browser(base) as driver:
        wait(driver).until(lambda d: "API key" in el(d, "voice-error").text)  # 401 before a key is typed
        assert driver.execute_script("return document.getElementById('voice').options.length") == 0
        el(driver, "api-key").send_keys(secret, Keys.TAB)
        wait(driver).until(lambda d: d.execute_script("return document.getElementById('voice').options.length > 0"))
        assert el(driver, "voice-error").text == ""
        el(driver, "stream").click()  # whole file: POST /synthesize, then the file fetched with the key
        assert not el(driver, "stream").is_selected()
        el(driver, "text").send_keys("Hello there.")
        el(driver, "speak").click()
        wait(driver).until(lambda d: el(d, "download").is_displayed())
        assert player_seconds(driver, "player") > 0
        assert el(driver, "player").get_attribute("src").startswith("blob:")
        el(driver, "stream").click()  # streamed: POST /v1/audio/speech with the key, read as it comes
        el(driver, "speak").click()
        wait(driver).until(lambda d: "(streamed)" in el(d, "speak-status").text)
        assert driver.execute_script("return localStorage.length") == 0  # the key stays in this tab's session
        screenshot(driver, tmp_path, "keyed")
        assert console_errors(driver, allowed=("status of 401",)) == []  # only the calls made before the key
    assert requests.get(f"{base}/jobs", timeout=30).status_code == 401
