"""Click through the console in a real browser (Debian's headless Chromium via Playwright)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from .conftest import LiveServer


def _page(browser: Any) -> Any:
    page = browser.new_page(viewport={"width": 1360, "height": 900})
    page.set_default_timeout(10_000)
    return page


def test_click_through_a_campaign_and_block_an_account(
    browser: Any, live_console: tuple[LiveServer, Path], screenshots: Path
) -> None:
    server, verdicts = live_console
    page = _page(browser)
    page.goto(server.url + "/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Campaigns, highest risk first")
    rows = page.locator("section[aria-labelledby=campaigns-h] tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("C1")
    page.screenshot(path=screenshots / "index.png", full_page=True)

    page.get_by_role("link", name="C2", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Campaign C2")
    graph = page.locator("svg.graph")
    expect(graph.locator("a.node")).to_have_count(7)
    expect(graph).to_contain_text("198.51.100.0/24")
    expect(page.locator("#traffic-h + p + figure svg")).to_be_visible()
    expect(page.get_by_label("Share of the campaign's events per capability")).to_contain_text(
        "code"
    )
    expect(page.locator("section[aria-labelledby=tmpl-h] .example").first).to_contain_text(
        "Write a Python function that"
    )
    page.screenshot(path=screenshots / "campaign.png", full_page=True)

    # Open an account from the graph, then block it with a note.
    node = graph.locator("a.node").first
    name = node.get_attribute("aria-label") or ""
    account_id = name.split(":")[0].removeprefix("account ")
    node.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Account {account_id}")
    page.get_by_label("Analyst").fill("ana")
    page.get_by_label("Note").fill("same template as C2")
    page.get_by_role("button", name="Block account", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Recorded: block")
    expect(page.locator("table", has_text="Decisions so far")).to_contain_text("same template")
    page.screenshot(path=screenshots / "account.png", full_page=True)
    rows_written = [json.loads(x) for x in (verdicts / "overrides.jsonl").read_text().splitlines()]
    assert [(r["account_id"], r["action"], r["by"]) for r in rows_written] == [
        (account_id, "block", "ana")
    ]

    # Mark the whole campaign benign from its page.
    page.get_by_role("link", name="C2", exact=True).click()
    page.get_by_role("button", name="Mark campaign benign").click()
    expect(page.get_by_role("status")).to_contain_text("Recorded: benign")
    lines = (verdicts / "overrides.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 7
    page.close()


def test_keyboard_navigation_and_labels(
    browser: Any, live_console: tuple[LiveServer, Path]
) -> None:
    server, _ = live_console
    page = _page(browser)
    page.goto(server.url + "/")
    assert page.evaluate("document.documentElement.lang") == "en"
    # The first Tab reaches the skip link; Enter moves focus to the main content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    # Tabbing on reaches the top campaign's link; Enter opens it.
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "C1":
            break
    else:
        raise AssertionError("the C1 link is not reachable with Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Campaign C1")
    # Every form control has a label or an accessible name; every graph node has a name.
    unlabeled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
             .filter(e => e.type !== 'hidden' && e.labels.length === 0).map(e => e.name)"""
    )
    assert unlabeled == []
    nameless = page.evaluate(
        """() => [...document.querySelectorAll('button, a')]
             .filter(e => !(e.getAttribute('aria-label') || e.textContent.trim()))
             .map(e => e.outerHTML)"""
    )
    assert nameless == []
    # Graph nodes are links in the tab order, with a focus outline.
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('node')"):
            break
    else:
        raise AssertionError("no graph node is reachable with Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Account c1-acct-")
    # The analyst field is reachable and typed into from the keyboard.
    page.get_by_label("Analyst").focus()
    page.keyboard.type("kim")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.name") == "note"
    page.close()
