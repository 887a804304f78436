"""The listening report and the MUSHRA page in a real browser: headless Chromium (Debian's
`chromium`) driven by Playwright. Every audio element and image loads from file://, nothing is
requested from anywhere else, the keys switch players at the same position, and scripted
listeners complete MUSHRA sessions whose downloaded JSON aggregates to the ratings they gave.

Skipped without Chromium or the playwright package (`pip install 'codec[browser]'`) unless
CODEC_REQUIRE_BROWSER is set (.ci/run sets it after installing both): then they fail instead.
Screenshots of both pages go to $CODEC_SCREENSHOTS when set (docs/ holds the committed ones).
"""

import importlib.util
import io
import json
import os
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from codec.cli import main

CHROMIUM = os.environ.get("CODEC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HAS_OPUS = shutil.which("opusenc") is not None and shutil.which("opusdec") is not None
DEMO = Path(__file__).resolve().parents[1] / "recipes" / "demo" / "speech"
ODD_NAME = 'ü <b>Zoë & "Ånne"\'s.wav'  # sorts last; markup, entity, quotes, non-ASCII


def _require_browser() -> None:
    missing = []
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package (pip install 'codec[browser]')")
    if not Path(CHROMIUM).is_file():
        missing.append(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    if missing:
        why = "the browser tests need " + " and ".join(missing)
        if os.environ.get("CODEC_REQUIRE_BROWSER"):
            pytest.fail(why + "; CODEC_REQUIRE_BROWSER is set")
        pytest.skip(why)


@pytest.fixture(scope="module")
def browser():
    _require_browser()
    from playwright.sync_api import sync_playwright

    # Playwright gives each launch a fresh temporary profile (--user-data-dir) of its own
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def report(browser, tmp_path_factory):
    """`codec eval` of the shipped speech16k model on the demo's two wideband speech clips (3 s
    of each, and the Czech one's rest under ODD_NAME) at 3 and 6 kbps, beside Opus at 6 and 8
    where installed; and `codec mushra page` of it."""
    root = tmp_path_factory.mktemp("browser")
    speech = root / "speech"
    speech.mkdir()
    for clip in sorted(DEMO.glob("*.flac")):  # 3 s of each keep the evaluation short
        wav, rate = sf.read(clip, frames=3 * 16000)
        sf.write(speech / clip.name, wav, rate)
    wav, rate = sf.read(DEMO / "cs_z-v-forky.flac", start=3 * 16000)
    sf.write(speech / ODD_NAME, wav, rate, format="WAV")
    out = root / "report"
    compare = ["--compare", "opus", "--opus-kbps", "6", "8"] if HAS_OPUS else []
    args = ["eval", str(speech), "-m", "speech16k", "--bandwidths", "3", "6", "-o", str(out)]
    args += ["--quiet", "--spectrograms", "0", "--listen-seconds", "2.5", *compare]
    args += ["--metrics", "pesq", "stoi"]  # DNSMOS on the page: tests/test_listening.py
    assert main(args) == 0
    assert main(["mushra", "page", str(out)]) == 0
    return out


@pytest.fixture
def page(browser):
    """A fresh page that records every URL it requests. The pages' Content-Security-Policy
    holds here too, so waits are functions: Playwright evaluates string expressions with eval,
    which the policy refuses."""
    context = browser.new_context(viewport={"width": 1280, "height": 1180}, accept_downloads=True)
    tab = context.new_page()
    tab.requested = []
    tab.errors = []
    tab.on("request", lambda request: tab.requested.append(request.url))
    tab.on("pageerror", lambda error: tab.errors.append(str(error)))
    yield tab
    context.close()


def screenshot(page, name: str, tmp_path, height: int) -> Path:
    """A palette PNG of the page's top `height` pixels, in $CODEC_SCREENSHOTS or tmp_path."""
    from PIL import Image

    folder = Path(os.environ.get("CODEC_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    shot = page.screenshot(clip={"x": 0, "y": 0, "width": 1280, "height": height})
    image = Image.open(io.BytesIO(shot))
    image.convert("RGB").quantize(colors=96).save(path, optimize=True)
    return path


def only_local(urls: list[str]) -> bool:
    return all(url.split(":", 1)[0] in ("file", "data", "blob") for url in urls)


def test_the_listening_report_loads_every_player_and_image(report, page, tmp_path):
    manifest = json.loads((report / "listening" / "clips.json").read_text())
    page.goto((report / "index.html").as_uri())
    page.wait_for_function(
        "() => [...document.querySelectorAll('audio')].every(a => a.readyState >= 1 || a.error)"
    )
    players = page.evaluate(
        "[...document.querySelectorAll('audio')].map(a => ({src: a.getAttribute('src'),"
        " ready: a.readyState, duration: a.duration, error: a.error && a.error.code}))"
    )
    expected = [
        (entry["audio"], clip["rendered_seconds"])
        for clip in manifest["clips"]
        for entry in [clip["original"], *clip["decoded"]]
    ]
    assert len(players) == len(expected) == 3 * (1 + 2 * (2 if HAS_OPUS else 1))
    for player, (src, seconds) in zip(players, expected):
        assert player["src"] == src and player["error"] is None and player["ready"] >= 1
        assert player["duration"] == pytest.approx(seconds, abs=0.01)
    page.evaluate("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    images = page.evaluate("[...document.images].map(i => [i.getAttribute('src'), i.naturalWidth])")
    assert images[0][0] == "rate_distortion.png" and all(width > 0 for _, width in images)
    names = page.evaluate(
        "[...document.querySelectorAll('.clip .file')].map(e => [e.textContent, e.title])"
    )
    assert [title for _, title in names] == [clip["file"] for clip in manifest["clips"]]
    assert [name for name, _ in names] == [Path(clip["file"]).name for clip in manifest["clips"]]
    assert names[-1][0] == ODD_NAME  # shown as written: escaped, not markup
    screenshot(page, "listening-report.png", tmp_path, 1180)
    # keys: 1 plays clip 1's first decoding; 2 switches to the next at the same position
    page.keyboard.press("1")
    page.wait_for_function("() => document.querySelectorAll('#clip0 audio')[1].currentTime > 0.3")
    page.keyboard.press("2")
    state = page.evaluate(
        "[...document.querySelectorAll('#clip0 audio')].map(a => [a.paused, a.currentTime])"
    )
    assert [paused for paused, _ in state] == [True, True, False] + [True] * (len(state) - 3)
    assert state[2][1] == pytest.approx(state[1][1], abs=0.25)
    assert state[1][1] > 0.3
    assert only_local(page.requested) and not page.errors


def test_scripted_listeners_complete_mushra_sessions_that_aggregate(report, page, tmp_path):
    url = (report / "mushra.html").as_uri()
    files, given, orders = [], {}, []
    for listener, seed in (('Zoë <&> "x"', 1), ("bob", 2)):
        page.goto(f"{url}?seed={seed}")
        page.wait_for_function("() => window.mushraCheck && mushraCheck.done")
        check = page.evaluate("mushraCheck")
        test = page.evaluate("test")
        assert check["errors"] == []
        expected = {
            audio_id: trial["seconds"]
            for trial in test["trials"]
            for audio_id in trial["stimuli"].values()
        }
        assert check["durations"] == pytest.approx(expected, abs=0.01)
        page.fill("#listener", listener)
        page.click("#start")
        order = []
        for position in range(len(test["trials"])):
            page.wait_for_function(f"() => shown === {position}")
            ids = page.evaluate(
                "[...document.querySelectorAll('#conds input')].map(s => s.dataset.condition)"
            )
            order.append(ids)
            page.keyboard.press("r")
            assert page.evaluate("playing.key") == "ref"
            page.wait_for_timeout(150)
            before = page.evaluate("position()")
            page.keyboard.press("2")  # switches at the same position, looped
            after = page.evaluate("[playing.key, position(), playing.source.loop]")
            assert after[0] == ids[1] and after[2] is True
            assert after[1] == pytest.approx(before, abs=0.1)
            page.keyboard.press("1")  # ↑ rates what plays: 4 steps of 1, one of 10
            for key in ["ArrowUp"] * 4 + ["Shift+ArrowUp"]:
                page.keyboard.press(key)
            ratings = {ids[0]: 14}
            for n, cid in enumerate(ids[1:], start=1):
                assert page.is_disabled("#next")
                value = 100 if cid == "reference" else (17 * n + 31 * position + seed) % 90
                page.locator(f"#conds input[data-condition='{cid}']").fill(str(value))
                ratings[cid] = value
            if ids[0] == "reference":
                page.locator("#conds input[data-condition='reference']").fill("100")
                ratings["reference"] = 100
            trial_id = page.evaluate(f"plan[{position}].trial.id")
            given[(listener, trial_id)] = ratings
            if seed == 1 and position == 0:
                screenshot(page, "mushra.png", tmp_path, 610)
            page.click("#next")
        page.wait_for_selector("#done:not(.hidden)")
        with page.expect_download() as download:
            page.click("#download")
        path = tmp_path / f"listener{seed}.json"
        download.value.save_as(path)
        files.append(path)
        orders.append(order)
        assert only_local(page.requested) and not page.errors
    assert orders[0] != orders[1]  # each listener has an order of their own
    for path, (listener, _) in zip(files, (('Zoë <&> "x"', 1), ("bob", 2))):
        saved = json.loads(path.read_text())
        assert saved["listener"] == listener
        for trial in saved["trials"]:
            assert trial["ratings"] == given[(listener, trial["trial"])]
    out = tmp_path / "results"
    assert main(["mushra", "aggregate", *map(str, files), "-o", str(out)]) == 0
    results = json.loads((out / "mushra.json").read_text())
    assert [s["excluded"] for s in results["post_screening"]["listeners"]] == [False, False]
    names = {c["id"]: (c["name"], c["kbps"]) for c in test["conditions"]}
    for row in results["conditions"]:
        cid = next(k for k, v in names.items() if v == (row["condition"], row["kbps"]))
        values = [ratings[cid] for ratings in given.values()]
        assert row["ratings"] == len(values) == 2 * len(test["trials"])
        assert row["mean"] == pytest.approx(sum(values) / len(values))
