"""The draw page in a real browser: headless Chromium draws a 7, submits it, reads the answer.

Needs Debian's chromium + chromium-driver (``.ci/run`` installs them with apt-get where missing)
and selenium (test extra); skipped, saying which is missing, otherwise. With the real MNIST files
(CNN_TRACKER_DATA_MIRROR) the page serves a trained lenet (`train --preset fast`, shared with
test_predict_photos), must read the drawn 7 as a 7, and the screenshot becomes
``docs/serving.png`` (the README's); without them an untrained checkpoint is served and the
screenshot goes to the test's temp folder.
"""

from __future__ import annotations

import base64
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx (test extra) is not installed")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (test extra) is not installed")

from cnn_tracker.serve.app import Settings  # noqa: E402
from cnn_tracker.serve.model import load_served  # noqa: E402

from .conftest import REAL_MIRROR, REPO  # noqa: E402
from .test_predict_photos import mnist_model  # noqa: E402,F401 - the session's trained lenet
from .test_serve import LiveServer, make_ckpt  # noqa: E402

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
STROKE = [(-70, -85), (70, -85), (35, -20), (5, 45), (-15, 95)]  # a 7, from the canvas centre (px)


def chromium() -> tuple[str, str]:
    browser = next((p for b in BROWSERS if (p := shutil.which(b))), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        missing = " and ".join(n for n, p in (("chromium", browser), ("chromedriver", driver)) if not p)
        pytest.skip(f"{missing} not found: install Debian's chromium and chromium-driver "
                    "(apt-get install chromium chromium-driver; .ci/run does it where it can)")
    return browser, driver


@pytest.fixture
def served_model(request, tmp_path):
    """(checkpoint, trained?) for the page: the real lenet when the mirror is there."""
    if REAL_MIRROR and Path(REAL_MIRROR).is_dir():
        return request.getfixturevalue("mnist_model")[0], True
    return make_ckpt(tmp_path / "untrained.pt"), False


@pytest.mark.slow
def test_a_digit_drawn_on_the_page_is_predicted(served_model, tmp_path):
    import torch
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser, driver_path = chromium()
    ckpt, trained = served_model
    torch.set_num_threads(1)
    served = load_served(str(ckpt), device="cpu")
    server = LiveServer(lambda: served, Settings())
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1180,640", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    except Exception as exc:  # noqa: BLE001 - e.g. a driver that does not match the browser
        server.stop()
        pytest.skip(f"chromium could not be started by chromedriver: {str(exc).splitlines()[0]}")
    try:
        server.wait_ready()
        driver.get(server.url + "/")
        wait = WebDriverWait(driver, 20)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        pad = driver.find_element(By.ID, "pad")
        actions = ActionChains(driver).move_to_element_with_offset(pad, *STROKE[0]).click_and_hold()
        for (x0, y0), (x1, y1) in zip(STROKE, STROKE[1:]):
            for step in range(1, 9):  # small moves: pointermove events along the segment
                actions.move_to_element_with_offset(pad, round(x0 + (x1 - x0) * step / 8),
                                                    round(y0 + (y1 - y0) * step / 8))
        actions.release().perform()  # pointerup: the page submits the drawing
        wait.until(lambda d: d.find_element(By.ID, "predicted").get_attribute("data-class"))
        predicted = driver.find_element(By.ID, "predicted").text
        bars = [b.get_attribute("data-class") for b in driver.find_elements(By.CSS_SELECTOR, "#bars .bar")]
        shown = driver.find_element(By.ID, "input").get_attribute("src")
        drawing = driver.execute_script("return document.getElementById('pad').toDataURL('image/png')")
        time.sleep(0.3)  # the bars' 0.15 s transition, for the screenshot
        shot = REPO / "docs" / "serving.png" if trained else tmp_path / "serving.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(shot))
        api = httpx.post(server.url + "/v1/predict", json={"images": [drawing]})  # the same image
    finally:
        driver.quit()
        server.stop()
    assert bars == [str(k) for k in range(10)]
    assert shown.startswith("data:image/png;base64,") and len(base64.b64decode(shown.split(",")[1])) > 50
    assert api.json()["predictions"][0]["predicted"] == predicted  # same answer
    if trained:
        assert predicted == "7"
    assert shot.read_bytes()[:4] == b"\x89PNG"
