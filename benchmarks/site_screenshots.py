"""The leaderboard site's screenshots in the docs and README (docs/assets/leaderboard.png and
docs/assets/model-card.png), taken in Debian's Chromium from the committed site (docs/leaderboard):

    python -m bench site baselines --out docs/leaderboard && python benchmarks/site_screenshots.py
"""
from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "docs" / "leaderboard" / "index.html"
OUT = ROOT / "docs" / "assets"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]


def main() -> None:
    text = (SITE.parent / "data.js").read_text()
    rows = json.loads(text[text.index("=") + 1:].strip().rstrip(";"))["rows"]
    ard = next(r["id"] for r in rows if r["label"] == "ard")
    OUT.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 760})
        page.goto(SITE.as_uri())
        page.click("th[data-key=aa]")
        page.screenshot(path=str(OUT / "leaderboard.png"))
        page.goto(SITE.as_uri() + f"#/card/{ard}")
        page.screenshot(path=str(OUT / "model-card.png"))
        browser.close()
    print(f"written: {OUT / 'leaderboard.png'}, {OUT / 'model-card.png'}")


if __name__ == "__main__":
    main()
