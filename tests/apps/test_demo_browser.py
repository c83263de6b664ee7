"""The demo in a real headless browser: masking tab, image-MAE tab, a bad upload."""

import pytest

pytestmark = pytest.mark.browser


def _tab(page, title: str) -> None:
    page.get_by_role("tab", name=title).click()


def test_masking_tab_draws_the_chosen_strategy(page, screenshot):
    _tab(page, "Masking strategies")
    page.locator("#draw-mask").click()
    info = page.locator("#mask-info")
    info.get_by_text("patches hidden").wait_for()
    text = info.inner_text()
    assert "147 of 196 patches hidden (75%)" in text  # random, 0.75 on a 14x14 grid
    assert page.locator("#mask-output img").count() == 1
    screenshot(page, "demo_masking")


def test_image_mae_tab_reconstructs(page, screenshot):
    _tab(page, "Image MAE (chest X-ray)")
    page.locator("#mae-go").click()
    page.locator("#mae-info").get_by_text("masked-patch MSE").wait_for()
    text = page.locator("#mae-info").inner_text()
    mse = float(text.split("masked-patch MSE")[1].split("(")[0].strip().strip("*"))
    baseline = float(text.split("nearest visible patch:")[1].split(";")[0])
    assert 0 < mse < baseline < 0.2  # the MAE beats copying the nearest visible patch on the shipped example
    assert page.locator("#mae-recon img").count() == 1
    screenshot(page, "demo_image_mae")


def test_bad_upload_is_explained_and_app_keeps_serving(page, tmp_path, screenshot):
    _tab(page, "Masking strategies")
    page.locator("#draw-mask").click()  # a result first: it must not stay beside the broken file's name
    page.locator("#mask-output img").wait_for()
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    page.locator("#mask-input button[aria-label='Clear']").click()
    page.locator("#mask-input input[type=file]").set_input_files(str(bad))
    page.locator("#draw-mask").click()
    page.locator("#mask-info").get_by_text("Cannot use broken.png: not a readable image").wait_for()  # stays on the page
    page.locator("#mask-output img").wait_for(state="detached")  # the old picture is gone
    screenshot(page, "demo_bad_upload")
    # the app still serves: draw with the example again after a reload
    page.reload()
    page.locator("#draw-mask").click()
    page.locator("#mask-info").get_by_text("patches hidden").wait_for()
