"""The suite in a real browser (Playwright driving Debian's Chromium), as a visitor uses it.

Each step saves a screenshot under ``$INTERP_ARTIFACTS/browser`` (default ``tests/artifacts/browser``).
Needs ``pip install -r requirements-dev.txt`` and ``apt-get install chromium`` (Playwright cannot
download its own browser here). Without Chromium the tests skip, except under ``.ci/run``
(``INTERP_REQUIRE_BROWSER=1``), where a missing browser is a failure.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import app_env, serve_demo

ARTIFACTS = Path(os.environ.get("INTERP_ARTIFACTS", Path(__file__).parent / "artifacts")) / "browser"
TIMEOUT_MS = 60_000


def _chromium() -> str:
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "Chromium is not installed (apt-get install chromium, or set CHROMIUM_PATH)"
        if os.environ.get("INTERP_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        message = "Playwright is not installed (pip install -r requirements-dev.txt)"
        if os.environ.get("INTERP_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    import app

    tmp = tmp_path_factory.mktemp("browser")
    mp = app_env(tmp)
    try:
        # the built-in faces64 and the registry, offline; the page's CSS as app.py launches it
        with serve_demo(app.build_demo(app.build_zoo(), "cpu"), css=app.CSS) as url:
            yield url
    finally:
        mp.undo()


@pytest.fixture()
def page(app_url):
    from playwright.sync_api import sync_playwright

    chromium = _chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1600}, accept_downloads=True)
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(app_url)
        yield page
        browser.close()


class Steps:
    """Screenshots named by test and step number, so a person can replay what the browser saw."""

    def __init__(self, page, name: str) -> None:
        self.page, self.name, self.i = page, name, 0

    def shot(self, what: str) -> None:
        self.i += 1
        self.page.screenshot(path=str(ARTIFACTS / f"{self.name}-{self.i:02d}-{what}.png"), full_page=True)


def _src(page, elem_id: str) -> str:
    """The URL of the image shown by the component ``elem_id`` (it changes when the image changes)."""
    img = page.locator(f"#{elem_id} img").first
    img.wait_for()
    return img.get_attribute("src") or ""


def _current_src(page) -> str:
    return _src(page, "current-image")


def _explore_src(page) -> str:
    return _src(page, "explore-image")


def _summary(page) -> str:
    return page.get_by_text(re.compile(r"^Image: ")).first.inner_text()


def _error_pills(page) -> int:
    """Components whose status shows "Error" (a failed event marks its outputs so until they update)."""
    trackers = page.locator("[data-testid='status-tracker']").all()
    return sum(1 for t in trackers if "Error" in t.inner_text() and "hide" not in (t.get_attribute("class") or ""))


def _wait_changed(page, before: str, read, timeout_ms: int = TIMEOUT_MS) -> str:
    deadline = timeout_ms
    while deadline > 0:
        now = read(page)
        if now and now != before:
            return now
        page.wait_for_timeout(250)
        deadline -= 250
    raise AssertionError(f"nothing changed within {timeout_ms / 1000:.0f} s (still {before[:80]!r})")


def test_generate_explore_apply_and_recipe(page, tmp_path):
    steps = Steps(page, "explore")
    page.get_by_text("Image: seed 0, psi 0.70").first.wait_for()      # a sample as soon as the page opens
    first = _current_src(page)
    steps.shot("opened")

    page.get_by_label("Seed").first.fill("5")
    page.get_by_role("button", name="Generate", exact=True).click()
    page.get_by_text("Image: seed 5, psi 0.70").first.wait_for()
    _wait_changed(page, first, _current_src)
    steps.shot("generated")

    page.get_by_role("tab", name="Explore").click()
    page.get_by_role("button", name="Find directions").click()
    page.get_by_text(re.compile(r"directions\*?\*? from SeFa")).first.wait_for()
    found = _explore_src(page)
    steps.shot("found")
    before = _summary(page)

    # drag the first direction's slider to the right with the keyboard, as a person with arrows would
    slider = page.locator("input[type='range'][aria-label*='more']").first
    slider.focus()
    for _ in range(15):
        page.keyboard.press("ArrowRight")
    _wait_changed(page, found, _explore_src)                      # the preview follows the slider
    steps.shot("slid")

    page.get_by_role("button", name="Apply to the current image").click()
    page.get_by_text(re.compile(r"SeFa .*std in w")).first.wait_for()
    assert _summary(page) == before                               # the first summary line (source) is unchanged
    steps.shot("applied")

    # an expected mistake: a toast with the sentence, the page keeps working
    page.get_by_role("button", name="Apply to the current image").click()
    page.get_by_text("All sliders are at 0").first.wait_for()
    steps.shot("error-toast")
    assert page.locator("#explore-image img").count() == 1                 # the preview is not replaced by "Error"
    page.wait_for_timeout(1000)
    assert _error_pills(page) == 0                          # no component is replaced by an "Error" pill

    # save the recipe, clear the edits, open the recipe again: the edit comes back
    page.get_by_role("button", name="Save recipe").click()
    link = page.locator("a[download$='recipe.safetensors']").first
    link.wait_for()
    with page.expect_download() as info:
        link.click()
    saved = tmp_path / "recipe.safetensors"
    info.value.save_as(saved)
    page.get_by_role("button", name="Clear edits").click()
    page.get_by_text("No edits yet.").first.wait_for()
    steps.shot("cleared")
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Open recipe").click()
    chooser.value.set_files(str(saved))
    page.get_by_text(re.compile(r"SeFa .*std in w")).first.wait_for()
    steps.shot("reopened")


def test_paint_a_stroke_preview_and_apply(page):
    """The Paint tab: brush a stroke on the current image, preview the edit, apply it; a mistake is a toast."""
    steps = Steps(page, "paint")
    page.get_by_text("Image: seed 0, psi 0.70").first.wait_for()
    page.get_by_role("tab", name="Paint").click()
    page.get_by_text("No current image yet: generate one").first.wait_for(state="hidden")
    canvas = page.locator("#paint-editor canvas").first
    canvas.wait_for()
    page.wait_for_timeout(1500)                                   # the current image is on the canvas
    steps.shot("opened")

    # a horizontal stroke across the eyes (the image is centred on the canvas, at least 256 px wide)
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 70, cy - 25)
    page.mouse.down()
    for i in range(15):
        page.mouse.move(cx - 70 + 10 * (i + 1), cy - 25, steps=2)
    page.mouse.up()
    steps.shot("painted")

    page.get_by_role("button", name="Preview").click()
    page.get_by_text("Rendered in").first.wait_for()
    assert page.locator("#paint-compare img").count() == 2        # before / after
    steps.shot("preview")

    page.get_by_role("button", name="Apply to the current image").click()
    applied = re.compile(r"Dissection brush 'what I painted': remove \d+ unit\(s\) of b16\.conv1")
    page.get_by_text(applied).first.wait_for()
    page.get_by_text(re.compile(r"^Applied")).first.wait_for()
    page.wait_for_timeout(1000)
    steps.shot("applied")
    assert _error_pills(page) == 0

    # the canvas shows the new current image without strokes: previewing now is a toast, not an "Error" pill
    page.get_by_role("button", name="Preview").click()
    page.get_by_text("Paint the region first").first.wait_for()
    page.wait_for_timeout(1000)
    steps.shot("empty-toast")
    assert _error_pills(page) == 0


def test_attributes_train_hold_fixed_and_apply(page):
    steps = Steps(page, "attributes")
    page.get_by_text("Image: seed 0, psi 0.70").first.wait_for()
    page.get_by_role("tab", name="Attributes").click()
    for elem_id, value in (("attributes-samples", "400"), ("attributes-ratio", "0.1")):
        box = page.locator(f"#{elem_id} input[type='number']")              # the number box of the slider
        box.fill(value)
        box.press("Enter")
    page.get_by_role("button", name="Score samples and train").click()
    page.get_by_text(re.compile(r"boundaries\*?\*? in")).first.wait_for()
    page.get_by_text("hair_length", exact=True).first.wait_for()             # the boundary table filled
    steps.shot("trained")

    page.get_by_label("Attribute", exact=True).first.click()
    page.get_by_role("option", name="age", exact=True).click()
    before = _src(page, "attributes-image")
    slider = page.locator("#attributes-strength input[type='range']")
    slider.focus()
    for _ in range(20):
        page.keyboard.press("ArrowRight")
    _wait_changed(page, before, lambda p: _src(p, "attributes-image"))
    steps.shot("moved")
    page.get_by_role("button", name="Apply to the current image").click()
    page.get_by_text(re.compile(r"InterFaceGAN 'age'")).first.wait_for()
    steps.shot("applied")

    page.get_by_role("button", name="Verify this direction").click()
    page.get_by_text(re.compile(r"(Reliable|Unreliable)")).first.wait_for()
    steps.shot("verified")
    assert _error_pills(page) == 0
