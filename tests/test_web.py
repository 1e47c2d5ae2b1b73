"""The web page (stdfusion_tf/web, stdfusion-web): the API in-process
(Starlette's test client), then the page in headless Chromium against the
command started in a subprocess on a free loopback port.

The browser tests need Debian's ``chromium`` and ``chromium-driver`` and the
``selenium`` package; without them they are skipped with a message saying
what to install.  Small pairs (a RoadScene raw pair reduced 4x) keep the
default run short; the full-size pair is a slow test.
"""

import io
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, SHARED

RAW = SHARED / "datasets" / "RoadScene_raw"
STEM = "FLIR_00006"
PRESET = "stdfusionnet_jiayima_29"


def png_bytes(array, fmt="PNG"):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def decode(data):
    from PIL import Image

    return Image.open(io.BytesIO(data))


@pytest.fixture(scope="module")
def pair():
    """(infrared PNG, visible JPEG) bytes: a raw 640x512 FLIR frame and its
    high-resolution visible crop, both reduced 4x (160x128 and 351x256):
    different sizes, fields of view and modalities, as users have them."""
    from PIL import Image

    if not RAW.is_dir():
        pytest.skip("../shared/datasets/RoadScene_raw is not beside the "
                    "project")
    ir = Image.open(RAW / "infrared" / f"{STEM}.png")
    vi = Image.open(RAW / "crop_HR_visible" / f"{STEM}.jpg")
    ir = ir.resize((ir.width // 4, ir.height // 4), Image.LANCZOS)
    vi = vi.resize((vi.width // 4, vi.height // 4), Image.LANCZOS)
    out = []
    for im, fmt in ((ir, "PNG"), (vi, "JPEG")):
        buf = io.BytesIO()
        im.save(buf, format=fmt, quality=92)
        out.append(buf.getvalue())
    return out[0], out[1], (vi.width, vi.height)


@pytest.fixture(scope="module")
def keras_home(tmp_path_factory):
    """Presets converted into a fresh Keras cache (nothing in ~/.keras)."""
    home = tmp_path_factory.mktemp("keras_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KERAS_HOME", str(home))
        mp.delenv("STDFUSION_MIRROR", raising=False)
        yield home


# ------------------------------------------------------------ API, in-process

@pytest.fixture(scope="module")
def client(keras_home):
    pytest.importorskip("starlette")
    try:
        import httpx2  # noqa: F401  (what Starlette's test client wants)
    except ImportError:
        pytest.importorskip("httpx")
    from starlette.testclient import TestClient

    from stdfusion_tf.web import app, service

    limits = service.Limits(max_upload_bytes=1 << 20, max_pixels=2_000_000)
    svc = service.FusionService(service.Models(), limits)
    asgi = app.create_app(svc, max_waiting=0, wait_seconds=1)
    with TestClient(asgi) as c:
        c.asgi = asgi
        yield c


def post(client, ir, vi, **fields):
    files = {"ir": ("ir.png", ir, "image/png"),
             "vi": ("vi.jpg", vi, "image/jpeg")}
    return client.post("/api/fuse", files=files,
                       data={k: str(v) for k, v in fields.items()})


def test_page_and_info(client):
    page = client.get("/")
    assert page.status_code == 200
    for needle in ('id="ir"', 'id="vi"', 'id="fuser"', 'id="register"',
                   'id="color"', "/api/fuse"):
        assert needle in page.text
    info = client.get("/api/info").json()
    names = [f["name"] for f in info["fusers"]]
    assert PRESET in names and "difn" in names
    assert info["default_fuser"] == PRESET
    assert info["register"] == ["auto", "none"]
    assert info["limits"]["max_pixels"] == 2_000_000


def test_fuse_registers_into_the_visible_frame(client, pair):
    ir, vi, (w, h) = pair
    r = post(client, ir, vi, register="auto", color=1, fuser=PRESET)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    fused = decode(r.content)
    assert fused.size == (w, h) and fused.mode == "RGB"
    assert np.asarray(fused).std() > 10  # not blank
    assert float(r.headers["X-Registration-Confidence"]) == \
        pytest.approx(float(r.headers["X-Registration-Confidence"]))
    assert r.headers["X-Registration-Method"]
    rid = r.headers["X-Result-Id"]
    summary = client.get(f"/api/results/{rid}/summary.json").json()
    assert summary["fused"] == {"width": w, "height": h}
    assert summary["registration"]["requested"] == "auto"
    assert set(summary["seconds"]) >= {"decode", "register", "fuse", "total"}
    for name, size in (("registered.png", (w, h)), ("checkerboard.png", (w, h)),
                       ("overlay.png", (w, h)), ("flow.png", (w, h))):
        got = client.get(f"/api/results/{rid}/{name}")
        assert got.status_code == 200 and decode(got.content).size == size
    flow = np.load(io.BytesIO(client.get(f"/api/results/{rid}/flow.npy")
                              .content))
    assert flow.shape == (2, h, w) and flow.dtype == np.float32
    down = client.get(f"/api/results/{rid}/fused.png?download=1")
    assert "attachment" in down.headers["content-disposition"]
    assert down.content == r.content


def test_fuse_without_registration_gray(client, pair):
    ir, vi, (w, h) = pair
    r = post(client, ir, vi, register="none", color=0)
    assert r.status_code == 200, r.text
    fused = decode(r.content)
    assert fused.size == (w, h) and fused.mode == "L"
    assert r.headers["X-Registration-Method"] == "none"
    rid = r.headers["X-Result-Id"]
    summary = client.get(f"/api/results/{rid}/summary.json").json()
    assert summary["registration"]["method"] == "none"


@pytest.mark.parametrize("make, status, needles", [
    (lambda ir: (b"hello, not an image\n", ir), 415,
     ["infrared image 'ir.png'", "not an image"]),
    (lambda ir: (b"", ir), 422, ["infrared image", "empty file"]),
    (lambda ir: (png_bytes(np.zeros((1, 1))), ir), 422,
     ["infrared image", "1x1", "too small"]),
    (lambda ir: (png_bytes(np.zeros((1600, 1600))), ir), 413,
     ["infrared image", "1600x1600", "2.6 Mpx", "limit"]),
    (lambda ir: (ir, png_bytes(np.full((40, 40), 128))), 422,
     ["registration"]),
])
def test_bad_uploads_are_one_line_answers(client, pair, make, status,
                                          needles):
    ir, vi, _ = pair
    bad_ir, bad_vi = make(ir)
    if bad_vi is ir:  # the bad one is the infrared image
        bad_vi = vi
    r = post(client, bad_ir, bad_vi)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text.count("\n") == 1
    for needle in needles:
        assert needle in r.text, r.text
    assert client.get("/api/info").status_code == 200  # still serving


def test_bad_fields(client, pair):
    ir, vi, _ = pair
    r = client.post("/api/fuse", files={"ir": ("ir.png", ir, "image/png")})
    assert r.status_code == 400 and "'vi'" in r.text
    r = post(client, ir, vi, register="sideways")
    assert r.status_code == 400 and "register='sideways'" in r.text
    r = post(client, ir, vi, fuser="nope")
    assert r.status_code == 400 and "fuser 'nope' unknown" in r.text
    r = client.post("/api/fuse", content=b"x" * 10,
                    headers={"content-type": "text/plain"})
    assert r.status_code == 400 and "multipart" in r.text


def test_upload_above_the_byte_limit(client, pair):
    ir, _, _ = pair
    noise = np.random.default_rng(0).integers(0, 256, (800, 800, 3))
    big = png_bytes(noise)  # ~1.9 MB, limit 1 MB
    r = post(client, ir, big)
    assert r.status_code == 413 and "limit of 1 MB" in r.text


def test_busy_answers_503(client, pair):
    ir, vi, _ = pair
    gate = client.asgi.app.state.gate  # max_waiting=0: no queue
    with gate:
        r = post(client, ir, vi, register="none")
    assert r.status_code == 503 and "busy" in r.text
    assert r.headers["retry-after"]
    assert post(client, ir, vi, register="none").status_code == 200


def test_gate_lets_one_wait():
    from stdfusion_tf.web.app import Busy, Gate
    import threading

    gate, order = Gate(max_waiting=1, wait_seconds=5), []
    gate.__enter__()
    waiter = threading.Thread(target=lambda: (gate.__enter__(),
                                              order.append("ran"),
                                              gate.__exit__()))
    waiter.start()
    while gate.waiting == 0:
        time.sleep(0.01)
    with pytest.raises(Busy):  # the queue of one is full
        gate.__enter__()
    gate.__exit__()
    waiter.join(5)
    assert order == ["ran"]


def test_difn_tiles_equal_the_whole_image():
    """DIFN in tiles with the halo reproduces the whole-image output."""
    from stdfusion_tf.umf import difn, pipeline
    from stdfusion_tf.web import service

    net = pipeline.DIFNFuser(difn.DIFN())
    rng = np.random.default_rng(1)
    a, b = (rng.random((70, 90), dtype=np.float32) for _ in range(2))
    whole = net(a, b)
    parts = service.tiled(net, a, b, tile=24, halo=service.DIFN_HALO)
    np.testing.assert_allclose(parts, whole, atol=2e-6)


def test_pictures():
    from stdfusion_tf.web import service

    a = np.zeros((32, 48), np.uint8)
    b = np.full((32, 48), 255, np.uint8)
    board = service.checkerboard(a, b)
    assert board[0, 0] == 0 and board[0, 8] == 255 and board[8, 8] == 0
    assert service.colour_overlay(a, b)[0, 0].tolist() == [0, 255, 0]
    m = np.array([[2.0, 0, 1], [0, 2, 0], [0, 0, 1]])
    g = service.global_flow(m, (4, 5))
    assert g[1, 0, 3] == pytest.approx(2 * 3 + 1 - 3)  # dx at x=3
    assert g[0, 2, 0] == pytest.approx(2)  # dy at y=2
    flow = np.zeros((2, 8, 8), np.float32)
    flow[1, 4:, 4:] = 3.0
    pic, peak = service.flow_picture(flow)
    assert peak == 3.0
    assert pic[0, 0].tolist() == [255, 255, 255]  # no displacement: white
    assert pic[5, 5].tolist() == [255, 0, 0]  # +x at full length: red


# ------------------------------------------------------------ in a browser

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium_paths():
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return browser, driver


def start_server(folder, *flags):
    """``python -m stdfusion_tf.commands.web`` on a free loopback port with
    a fresh Keras cache -> (url, process); waits until it answers."""
    import urllib.request

    port = free_port()
    log = folder / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "STDFUSION_MIRROR"}
    env.update(PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p]),
        KERAS_HOME=str(folder / "kh"))
    with open(log, "w") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "stdfusion_tf.commands.web",
             "--port", str(port), *flags],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(url + "/api/info", timeout=5).read()
            return url, child
        except OSError:
            if child.poll() is not None or time.time() > deadline:
                child.kill()
                pytest.fail("stdfusion-web did not start:\n"
                            + log.read_text()[-3000:])
            time.sleep(0.3)


def stop_server(child):
    child.terminate()
    try:
        child.wait(20)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The command with small limits (1 MB, 2 Mpx) and no queue."""
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    if not (SHARED / "upstream").is_dir():
        pytest.skip("../shared/upstream is not beside the project")
    url, child = start_server(tmp_path_factory.mktemp("server"),
                              "--max_upload_mb", "1", "--max_megapixels",
                              "2", "--max_waiting", "0")
    yield url
    stop_server(child)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium driven by Selenium through Debian's chromedriver
    (given explicitly: Selenium Manager downloads nothing)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("the browser tests need selenium (pip install selenium)")
    browser_path, driver_path = chromium_paths()
    if not (browser_path and driver_path):
        pytest.skip("the browser tests need headless Chromium: apt-get "
                    "install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for flag in ("--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-quic", "--no-first-run",
                 "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1100",
                 "--user-data-dir="
                 + str(tmp_path_factory.mktemp("chromium-profile"))):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path),
                              options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def submit(driver, url, ir_path, vi_path, timeout=240, **choices):
    """Load the page, choose the files (and options), press the button, wait
    until the page says done or error; -> the state."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver.get(url + "/")
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        "return document.getElementById('fuser').options.length > 0"))
    driver.find_element(By.ID, "ir").send_keys(str(ir_path))
    driver.find_element(By.ID, "vi").send_keys(str(vi_path))
    for field, value in choices.items():
        if field == "color":
            box = driver.find_element(By.ID, "color")
            if box.is_selected() != bool(value):
                box.click()
        else:
            Select(driver.find_element(By.ID, field)).select_by_value(value)
    driver.find_element(By.ID, "run").click()
    WebDriverWait(driver, timeout, poll_frequency=0.2).until(
        lambda d: d.execute_script("return document.body.dataset.state")
        in ("done", "error"))
    return driver.execute_script("return document.body.dataset.state")


PIXEL_STATS = """
const img = document.getElementById(arguments[0]);
const c = document.createElement('canvas');
c.width = img.naturalWidth; c.height = img.naturalHeight;
const g = c.getContext('2d');
g.drawImage(img, 0, 0);
const d = g.getImageData(0, 0, c.width, c.height).data;
let n = 0, s = 0, s2 = 0;
for (let i = 0; i < d.length; i += 4) {
  const y = (d[i] + d[i + 1] + d[i + 2]) / 3; n++; s += y; s2 += y * y;
}
const mean = s / n;
return [c.width, c.height, mean, Math.sqrt(Math.max(s2 / n - mean * mean, 0))];
"""


def message(driver):
    return driver.execute_script(
        "return document.getElementById('message').textContent")


def test_page_bad_uploads_say_why_and_the_server_keeps_serving(
        server, browser, pair, tmp_path):
    import urllib.request

    ir, vi, _ = pair
    (tmp_path / "ir.png").write_bytes(ir)
    vi_path = tmp_path / "vi.jpg"
    vi_path.write_bytes(vi)
    noise = np.random.default_rng(0).integers(0, 256, (800, 800, 3))
    cases = [
        ("notes.txt", b"this is text, not an image\n",
         ["Error 415", "infrared image 'notes.txt'", "not an image"]),
        ("empty.png", b"", ["Error 422", "empty file"]),
        ("dot.png", png_bytes(np.zeros((1, 1))),
         ["Error 422", "1x1", "too small"]),
        ("huge.png", png_bytes(np.zeros((1600, 1600))),
         ["Error 413", "1600x1600", "limit of 2.0 Mpx"]),
        ("noise.png", png_bytes(noise), ["limit of 1.0 MB"]),
    ]
    for name, data, needles in cases:
        bad = tmp_path / name
        bad.write_bytes(data)
        assert submit(browser, server, bad, vi_path) == "error", name
        text = message(browser)
        for needle in needles:
            assert needle in text, (name, text)
        browser.save_screenshot(str(tmp_path / f"bad-{name}.png"))
        # still serving
        assert urllib.request.urlopen(server + "/api/info",
                                      timeout=10).status == 200


def test_page_fuses_a_pair(server, browser, pair, tmp_path):
    ir, vi, (w, h) = pair
    ir_path, vi_path = tmp_path / "ir.png", tmp_path / "vi.jpg"
    ir_path.write_bytes(ir)
    vi_path.write_bytes(vi)
    state = submit(browser, server, ir_path, vi_path, register="auto")
    assert state == "done", message(browser)
    width, height, mean, std = browser.execute_script(PIXEL_STATS, "fused")
    assert (width, height) == (w, h)
    assert 20 < mean < 235 and std > 10, (mean, std)  # not blank
    for picture in ("overlay", "flow", "registered"):
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(browser, 30).until(lambda d: d.execute_script(
            f"const i = document.getElementById('{picture}');"
            "return i.complete && i.naturalWidth > 0"))
    confidence = browser.execute_script(
        "return document.getElementById('confidence').textContent")
    float(confidence)
    links = browser.execute_script(
        "return [...document.querySelectorAll('#downloads a')]"
        ".map(a => a.href)")
    assert any(link.endswith("fused.png?download=1") for link in links)
    shot = tmp_path / "page.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
    # no registration, gray output
    assert submit(browser, server, ir_path, vi_path, register="none",
                  color=False) == "done", message(browser)
    assert browser.execute_script(
        "return document.getElementById('method').textContent") == "none"
    width, height, _, std = browser.execute_script(PIXEL_STATS, "fused")
    assert (width, height) == (w, h) and std > 10


def post_files(url, fields, files):
    """multipart/form-data POST with the standard library -> (status,
    headers, body)."""
    import urllib.error
    import urllib.request
    import uuid

    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; '
                     f'name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; '
                     f'name="{name}"; filename="{filename}"\r\n'
                     'Content-Type: application/octet-stream\r\n\r\n'
                     .encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=600) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.mark.slow
def test_roadscene_raw_pair_full_size(browser, tmp_path):
    """A raw 640x512 FLIR frame and its 1404x1026 visible crop, as they
    are: through the page and through POST /api/fuse with register=auto,
    the fused image has the visible image's size."""
    if not RAW.is_dir():
        pytest.skip("../shared/datasets/RoadScene_raw is not beside the "
                    "project")
    ir_path = RAW / "infrared" / f"{STEM}.png"
    vi_path = RAW / "crop_HR_visible" / f"{STEM}.jpg"
    size = decode(vi_path.read_bytes()).size
    url, child = start_server(tmp_path)
    try:
        status, headers, body = post_files(
            url + "/api/fuse", {"register": "auto", "color": "1"},
            {"ir": (ir_path.name, ir_path.read_bytes()),
             "vi": (vi_path.name, vi_path.read_bytes())})
        assert status == 200, body[:300]
        fused = decode(body)
        assert fused.size == size
        (tmp_path / "api_fused.png").write_bytes(body)
        print("API:", fused.size, {k: v for k, v in headers.items()
                                   if k.lower().startswith("x-")})
        assert submit(browser, url, ir_path, vi_path, timeout=600,
                      register="auto") == "done", message(browser)
        width, height, mean, std = browser.execute_script(PIXEL_STATS,
                                                          "fused")
        assert (width, height) == size and std > 10
        shot = tmp_path / "page_roadscene_raw.png"
        browser.save_screenshot(str(shot))
        print("page:", (width, height), f"mean {mean:.1f} std {std:.1f}",
              browser.execute_script(
                  "return document.querySelector('.facts').innerText"),
              f"screenshot: {shot}")
    finally:
        stop_server(child)


def test_difn_offline_is_said_on_the_menu(monkeypatch, tmp_path):
    """No DIFN weights on the machine and no network: the menu says the
    weights are fetched on first use; once that fails, the choice is
    unavailable with the reason, and asking for it is a 400."""
    from stdfusion_tf import assets
    from stdfusion_tf.errors import InputError
    from stdfusion_tf.web import service

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(assets, "mirror_or_shared", lambda group: None)

    def offline(group, **kwargs):
        raise InputError("https://raw.githubusercontent.com/x",
                         "cannot fetch checkpoint/umf/fus_0200.pth "
                         "(<urlopen error [Errno -3] Temporary failure in "
                         "name resolution>)")

    monkeypatch.setattr(assets, "fetch", offline)
    models = service.Models()
    difn = {c["name"]: c for c in models.choices()}["difn"]
    assert difn["available"] and "needs the network" in difn["note"]
    for _ in range(2):  # the failure is remembered, not retried
        with pytest.raises(service.Unavailable) as err:
            models.get("difn")
        assert err.value.status == 400
        assert "fuser 'difn' unavailable" in str(err.value)
        assert "cannot fetch" in str(err.value)
    difn = {c["name"]: c for c in models.choices()}["difn"]
    assert not difn["available"] and "cannot fetch" in difn["note"]
    given = service.Models(difn_weights=str(tmp_path / "mine.pth"))
    label = {c["name"]: c for c in given.choices()}["difn"]["label"]
    assert "mine.pth" in label


def test_a_busy_machine_still_fuses_small_pairs(monkeypatch):
    """The STDFusionNet budget counts the TF runtime the server already
    holds: with little memory free, small pairs still fuse whole."""
    from stdfusion_tf import fusion
    from stdfusion_tf.web import service

    monkeypatch.setattr(fusion, "available_memory", lambda: 600 << 20)
    assert service.memory_budget() == service.MIN_MEMORY_BUDGET
    assert fusion.plan_tile_size(256, 351, service.memory_budget()) is None
    assert fusion.plan_tile_size(1026, 1404, service.memory_budget()) > 128
