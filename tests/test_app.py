"""`python -m omnigen.app`: the Gradio page over a 2-step quickstart checkpoint, driven through gradio_client
and through a headless Chromium (Debian's chromium + chromium-driver, which .ci/run installs)."""

import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")  # the `app` extra (in `dev`)

from gradio_client.exceptions import AppError  # noqa: E402

from omnigen.app import Generator, build_app, default_checkpoint, find_checkpoints, snap  # noqa: E402
from omnigen.flow.sampler import SamplerSettings  # noqa: E402
from omnigen.pipeline import OmniGenPipeline  # noqa: E402

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(fitted_checkpoint):
    """(url, checkpoint) of the app on a free local port; OMNIGEN_APP_CKPT serves another 32² Shapes checkpoint
    (README's screenshot is this test's, over the quickstart's last.ckpt, saved to OMNIGEN_APP_SCREENSHOT)."""
    ckpt = os.environ.get("OMNIGEN_APP_CKPT") or str(fitted_checkpoint)
    app = build_app(Generator(), [ckpt], ckpt)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/", ckpt
    app.close()


def generate(
    client, ckpt, prompt, image=None, height=32, width=32, seed=0, batch=1, use_input_size=False, scales=(2.0, 1.5),
    guide=(0.0, 1.0), shift=1.0, step_cache=0.0,
):  # fmt: skip
    image = gradio_client.handle_file(str(image)) if image else None
    args = (ckpt, prompt, image, None, None, height, width, use_input_size, 2, *scales, seed, False, True, "", batch,
            *guide, shift, step_cache)  # fmt: skip
    gallery, used_seed, timing = client.predict(*args, api_name="/generate")
    return [np.asarray(Image.open(item["image"]).convert("RGB")) for item in gallery], used_seed, timing


def test_text_to_image_and_edit_return_images_of_the_requested_size_and_a_seed_repeats(served, tmp_path):
    url, ckpt = served
    client = gradio_client.Client(url, verbose=False)
    images, seed, timing = generate(client, ckpt, "a red circle at the center on a white background", batch=2)
    assert len(images) == 2 and all(im.shape == (32, 32, 3) for im in images) and seed == 0
    assert "2 image(s) of 32×32 in" in timing
    again, _, _ = generate(client, ckpt, "a red circle at the center on a white background", batch=2)
    assert all(np.array_equal(a, b) for a, b in zip(images, again, strict=True))  # same seed, same images
    other, _, _ = generate(client, ckpt, "a red circle at the center on a white background", seed=1)
    assert not np.array_equal(other[0], images[0])
    source = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 48, 3), dtype=np.uint8)).save(source)
    edited, _, _ = generate(client, ckpt, "<img><|image_1|></img> make the circle blue", source, height=16, width=32)
    assert edited[0].shape == (16, 32, 3)
    by_input, _, timing = generate(
        client, ckpt, "<img><|image_1|></img> make the circle blue", source, use_input_size=True
    )
    assert by_input[0].shape == (16, 48, 3) and "48×16" in timing
    # the guidance interval: one no step reaches (2 steps: t = 0, 0.5) is the conditional branch alone
    edit = "<img><|image_1|></img> make the circle blue"
    guided, _, _ = generate(client, ckpt, edit, source)
    never, _, _ = generate(client, ckpt, edit, source, guide=(0.9, 1.0))
    alone, _, _ = generate(client, ckpt, edit, source, scales=(1.0, 1.0))
    assert np.array_equal(never[0], alone[0]) and not np.array_equal(never[0], guided[0])
    shifted, _, _ = generate(client, ckpt, edit, source, shift=3.0)  # the steps' times, shifted towards noise
    assert not np.array_equal(shifted[0], guided[0])
    # the step cache reaches the sampler: with 2 steps both are computed (its first order needs two), so the
    # image is the plain one; a bad value comes back as a message
    cached, _, _ = generate(client, ckpt, edit, source, step_cache=0.5)
    assert np.array_equal(cached[0], guided[0])
    with pytest.raises(AppError, match="minimum"):  # the slider refuses it
        generate(client, ckpt, edit, source, step_cache=-1.0)


def test_input_mistakes_come_back_as_messages_and_the_server_keeps_serving(served, tmp_path):
    url, ckpt = served
    client = gradio_client.Client(url, verbose=False)
    source = tmp_path / "in.png"
    Image.new("RGB", (32, 32), "white").save(source)
    with pytest.raises(Exception, match=r"references 0 image\(s\) but 1 were given"):
        generate(client, ckpt, "a red circle", source)
    with pytest.raises(Exception, match=r"references 1 image\(s\) but 0 were given"):
        generate(client, ckpt, "<img><|image_1|></img> make the circle blue")
    Image.new("RGB", (2, 2), "white").save(source)
    with pytest.raises(Exception, match="smaller than one token"):
        generate(client, ckpt, "<img><|image_1|></img> make the circle blue", source)
    images, _, _ = generate(client, ckpt, "a red circle", height=30, width=33)  # snapped to the 4-pixel tokens
    assert images[0].shape == (32, 32, 3)
    args = (ckpt, "a red circle", None, None, None, 32, 32, False, 2, 2.0, 1.5, 5, False, True, "", 1)
    jobs = [client.submit(*args, api_name="/generate") for _ in range(3)]  # queued, run one at a time
    assert len({job.result()[2].split(" in ")[0] for job in jobs}) == 1


def test_a_checkpoint_sets_the_size_and_sampling_sliders(fitted_checkpoint, tmp_path):
    """Sizes: tiny has 4 pixels per token, trained at 32², a 16-token position grid, so at most 64 pixels a side.
    Sampling: the checkpoint's recommendation (its run config's `sampling`; the quickstart's: fast), what the page
    starts from."""
    assert Generator().settings(str(fitted_checkpoint)) == (4, 32, 32, 64, SamplerSettings(8, schedule_shift=0.5))
    pipe = OmniGenPipeline.from_checkpoint(fitted_checkpoint)
    pipe.module.run_config["sampling"] = {
        "num_inference_steps": 7,
        "schedule_shift": 0.5,
        "guidance_interval": [0, 0.5],
    }
    exported = str(pipe.save_pretrained(tmp_path / "fast"))
    assert Generator().settings(exported)[4] == SamplerSettings(7, guidance_interval=(0, 0.5), schedule_shift=0.5)
    page = build_app(Generator(), [exported], exported)
    sliders = {block.label: block.value for block in page.blocks.values() if getattr(block, "label", None)}
    names = ("steps", "guide from t", "guide to t", "schedule shift", "step cache (skip below)")
    assert [sliders[name] for name in names] == [7, 0, 0.5, 0.5, 0.0]


def test_checkpoints_are_found_newest_first_and_sizes_snap(tmp_path):
    older, newer = tmp_path / "a" / "last.ckpt", tmp_path / "b" / "step_2.ckpt"
    for i, path in enumerate((older, newer)):
        path.parent.mkdir()
        path.write_bytes(b"")
        os.utime(path, (time.time() + i, time.time() + i))
    found = find_checkpoints(tmp_path)
    assert found == [str(newer), str(older)] and default_checkpoint(found) == str(older)
    assert default_checkpoint([str(newer)]) == str(newer) and default_checkpoint([]) is None
    assert [snap(s, 16) for s in (1, 23, 25, 256, 1010)] == [16, 16, 32, 256, 1008]


def test_at_most_two_pipelines_stay_loaded_the_least_recently_used_goes(fitted_checkpoint, tmp_path):
    copies = [tmp_path / f"{i}.ckpt" for i in range(3)]
    for copy in copies:
        shutil.copy(fitted_checkpoint, copy)
    generator = Generator()
    for path in (copies[0], copies[1], copies[0], copies[2]):
        generator.pipeline(str(path))
    assert list(generator.pipelines) == [str(copies[0]), str(copies[2])]


def test_a_corrupt_newest_checkpoint_is_a_message_in_the_page_which_keeps_serving(fitted_checkpoint, tmp_path):
    bad, good = tmp_path / "run" / "last.ckpt", str(fitted_checkpoint)
    bad.parent.mkdir()
    bad.write_bytes(b"\xff" * 100)
    app = build_app(Generator(), find_checkpoints(tmp_path) + [good], default_checkpoint(find_checkpoints(tmp_path)))
    shown = [b.value for b in app.blocks.values() if getattr(b, "elem_id", None) == "problem"]
    assert len(shown) == 1 and f"{bad} is truncated or corrupt" in shown[0]
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
        with pytest.raises(AppError, match="truncated or corrupt"):
            generate(client, str(bad), "a red circle")
        images, _, _ = generate(client, good, "a red circle")
        assert images[0].shape == (32, 32, 3)
    finally:
        app.close()


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver")
def test_a_browser_fills_the_prompt_generates_and_sees_the_image(served, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = served
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1250"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        browser.get(url)
        wait = WebDriverWait(browser, 60)
        prompt = wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, "textarea[placeholder^='a red circle']")))
        prompt.send_keys("a large red circle at the center on a white background")
        browser.find_element(By.ID, "generate").click()
        image = wait.until(ready.visibility_of_element_located((By.CSS_SELECTOR, "#gallery img")))
        wait.until(lambda _: browser.execute_script("return arguments[0].naturalWidth", image) > 0)
        size = browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", image)
        timing = "return document.querySelector('#timing textarea').value"
        wait.until(lambda _: "1 image(s) of 32×32" in browser.execute_script(timing))
        browser.execute_script("window.scrollTo(0, 0)")
        shot = Path(os.environ.get("OMNIGEN_APP_SCREENSHOT", tmp_path / "app.png"))
        browser.save_screenshot(str(shot))
    finally:
        browser.quit()
    assert size == [32, 32]
    assert Image.open(shot).size[0] >= 1000  # the whole page, as README shows it
