"""The page in a real browser: headless Chromium from the distribution's packages, driven by Selenium.

Skipped, saying why, where Chromium, its driver or Selenium is missing. No browser or driver is
ever downloaded: the driver's path is given, so Selenium Manager never runs.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed (pip install -e '.[web]')")
pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from bot.config import Config
from bot.web.app import create_app
from embeddings.engine import open_retriever
from embeddings.retrieval.retrieve import Retriever
from tests.conftest import SPEECHES, make_config
from tests.webtools import CHROMEDRIVER, CHROMIUM, ThreadedServer, chromium

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
HOSTILE = """关于职工书屋建设的讲话

同志们：

一、职工书屋的开放安排

职工书屋每天开放到晚上九点<script>window.__pwned = 1</script>，周末照常开放。

职工书屋的借阅登记要规范<img src=x onerror="window.__pwned = 2">，做到有借有还。
"""
WAIT = 15


@pytest.fixture(scope="module")
def hostile_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Retriever]:
    """The shipped speeches plus one whose text is hostile markup."""
    root = tmp_path_factory.mktemp("site")
    shutil.copytree(SPEECHES, root / "speeches")
    (root / "speeches" / "hostile.txt").write_text(HOSTILE, "utf-8")
    config = make_config(root / "speeches", root / "index")
    return config, open_retriever(config.corpus_path, config.index_path, config.engine)[0]


@pytest.fixture(scope="module")
def site(hostile_index: tuple[Config, Retriever]) -> Iterator[str]:
    config, retriever = hostile_index
    with ThreadedServer(create_app(config, lambda: retriever)) as server:
        yield server.url


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    driver = chromium(tmp_path / "profile")
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: webdriver.Chrome, css: str) -> Any:
    return WebDriverWait(driver, WAIT).until(expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, css)))


def test_typed_question_gets_a_cited_answer_and_a_paragraph(site: str, browser: webdriver.Chrome) -> None:
    browser.get(site)
    box = wait_for(browser, "#question")
    assert not browser.find_element(By.ID, "token-box").is_displayed()  # no token asked for: none is set
    box.send_keys("工匠日是怎么设立的？", Keys.ENTER)
    direct = wait_for(browser, "#direct-text p")
    assert "全票通过了设立“工匠日”的决定" in browser.find_element(By.ID, "direct-text").text
    assert direct.find_element(By.CSS_SELECTOR, ".ref").text == "[1]"
    first = browser.find_element(By.CSS_SELECTOR, "#citations li")
    assert first.find_element(By.CSS_SELECTOR, ".cite").text.startswith("[1]《某市全市工会组建百日攻坚行动")
    assert "第2段" in first.text and first.find_elements(By.CSS_SELECTOR, ".snippet mark")
    assert "?q=" in browser.current_url  # the question can be shared as a link
    first.find_element(By.CSS_SELECTOR, "button.open").click()
    wait_for(browser, "#paragraph[open]")
    quoted = browser.find_elements(By.CSS_SELECTOR, "#p-text mark.quote")
    assert any("全票通过" in mark.text for mark in quoted)
    assert "第2段" in browser.find_element(By.ID, "p-citation").text
    browser.find_element(By.ID, "p-close").click()
    WebDriverWait(browser, WAIT).until(lambda d: not d.find_element(By.ID, "paragraph").is_displayed())
    browser.find_element(By.ID, "more").click()
    WebDriverWait(browser, WAIT).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#citations li")) > 5)
    assert browser.find_elements(By.CSS_SELECTOR, "#citations li")[5].text.startswith("[6]")
    speeches = browser.find_element(By.CSS_SELECTOR, "#speeches summary")
    assert "3 篇" in speeches.text


def test_hostile_speech_text_and_question_render_as_text(site: str, browser: webdriver.Chrome) -> None:
    browser.get(f"{site}/?q={quote('职工书屋周末开放吗？')}")
    wait_for(browser, "#direct-text p")
    assert "<script>window.__pwned = 1</script>" in browser.find_element(By.ID, "direct-text").text
    assert '<img src=x onerror="window.__pwned = 2">' in browser.find_element(By.ID, "citations").text
    for number in (1, 2):  # the citation itself opens the paragraph, as its button does
        browser.find_element(By.CSS_SELECTOR, f"#c-{number} .cite").click()
        wait_for(browser, "#paragraph[open]")
        assert "<" in browser.find_element(By.ID, "p-text").text
        browser.find_element(By.ID, "p-close").click()
    box = browser.find_element(By.ID, "question")
    box.clear()
    box.send_keys('<img src=x onerror="window.__pwned = 3">职工书屋', Keys.ENTER)
    WebDriverWait(browser, WAIT).until(lambda d: "img" in d.current_url)
    wait_for(browser, "#citations li")
    assert browser.execute_script("return window.__pwned") is None
    assert browser.find_elements(By.CSS_SELECTOR, "main img, main script, dialog img, dialog script") == []


def test_copy_puts_the_quote_and_its_citation_on_the_clipboard(site: str, browser: webdriver.Chrome) -> None:
    browser.execute_cdp_cmd(
        "Browser.grantPermissions", {"origin": site, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]}
    )
    browser.get(f"{site}/?q={quote('工匠日是怎么设立的？')}")
    wait_for(browser, "#citations li")
    browser.find_element(By.CSS_SELECTOR, "#c-1 button.copy").click()
    WebDriverWait(browser, WAIT).until(lambda d: "已复制" in d.find_element(By.ID, "status").text)
    copied = browser.execute_async_script("navigator.clipboard.readText().then(arguments[0], () => arguments[0](''))")
    assert copied.startswith("“") and "全票通过了设立“工匠日”的决定" in copied
    assert copied.endswith("》 › 一、“工匠日”的设立及启示 · 第2段）")


def test_not_found_and_phone_width(site: str, tmp_path: Path) -> None:
    phone = chromium(tmp_path / "phone", width=390, height=844)
    try:
        phone.get(f"{site}/?q={quote('工会会员每个月要交多少会费？')}")
        wait_for(phone, "#not-found")
        assert phone.find_element(By.ID, "not-found").text == "讲话中没有找到这个问题的答案。"
        assert phone.find_element(By.ID, "direct").is_displayed() is False
        if phone.find_elements(By.CSS_SELECTOR, "#citations li"):
            assert phone.find_element(By.ID, "sources-title").text == "可能相关的段落（仅供参考）："
        width = phone.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1]  # nothing wider than the phone's screen
    finally:
        phone.quit()


def test_an_access_token_is_asked_for_once_and_sent(
    hostile_index: tuple[Config, Retriever], browser: webdriver.Chrome
) -> None:
    config, retriever = hostile_index
    with ThreadedServer(create_app(config, lambda: retriever, token="intranet-token")) as server:
        browser.get(f"{server.url}/?q={quote('工匠日是怎么设立的？')}")
        wait_for(browser, "#token-box").find_element(By.ID, "token").send_keys("intranet-token", Keys.ENTER)
        wait_for(browser, "#direct-text p")
        assert not browser.find_element(By.ID, "token-box").is_displayed()
        assert "3 篇" in browser.find_element(By.CSS_SELECTOR, "#speeches summary").text


def test_a_question_asked_while_the_index_is_built_is_answered_once_it_is_ready(
    hostile_index: tuple[Config, Retriever], browser: webdriver.Chrome
) -> None:
    config, retriever = hostile_index
    built = threading.Event()

    def slow_open() -> Retriever:
        built.wait(30)
        return retriever

    with ThreadedServer(create_app(config, slow_open)) as server:
        browser.get(f"{server.url}/?q={quote('工匠日是怎么设立的？')}")
        WebDriverWait(browser, WAIT).until(lambda d: "自动重试" in d.find_element(By.ID, "status").text)
        built.set()
        wait_for(browser, "#direct-text p")
        assert "全票通过" in browser.find_element(By.ID, "direct-text").text
