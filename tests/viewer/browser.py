"""Headless Chromium driving OHIF: what a radiologist sees of the study and its results.

Waits are on DOM and OHIF/cornerstone state (``window.services``, ``window.cornerstone``),
each with a timeout; nothing sleeps a fixed time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import ConsoleMessage, Error, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.viewer.study import Study

CHROMIUM = "/usr/bin/chromium"
# Software WebGL (no GPU here); root needs --no-sandbox.
CHROMIUM_ARGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--ignore-gpu-blocklist"]
# Console errors that say nothing about the study or its results.
ALLOWED = [re.compile(p) for p in (r"favicon\.ico",)]

JS_SR = """uid => window.services.displaySetService.getActiveDisplaySets()
    .find(d => d.SeriesInstanceUID === uid)"""
JS_VIEWPORT = "() => window.cornerstone.getRenderingEngines()[0].getViewports()[0]"
JS_IMAGE = f"""() => {{ const v = ({JS_VIEWPORT})(); return v && v.getImageData()
    ? v.getCurrentImageId() : null; }}"""


@dataclass
class Outcome:
    chromium: str = ""
    display_sets: list[str] = field(default_factory=list)
    sr_loaded: int = 0  # ROIs OHIF read from the SR
    placed_by: str = ""
    placed: list[str] = field(default_factory=list)  # shown on their image in the SR viewport
    not_placed: list[str] = field(default_factory=list)
    rehydratable: bool = False
    hydration: str = ""
    tracked: int = 0  # rows in OHIF's measurement panel
    errors: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)


class Viewer:
    def __init__(self, page: Page, study: Study, out: Path, outcome: Outcome,
                 timeout_s: float) -> None:
        self.page, self.study, self.out, self.outcome = page, study, out, outcome
        self.timeout_ms = timeout_s * 1000

    def wait(self, script: str, arg: object = None, timeout_ms: float | None = None) -> object:
        handle = self.page.wait_for_function(script, arg=arg,
                                             timeout=timeout_ms or self.timeout_ms)
        return handle.json_value()

    def shot(self, name: str) -> None:
        path = self.out / f"{len(self.outcome.screenshots):02d}-{name}.png"
        self.page.screenshot(path=path)
        self.outcome.screenshots.append(path)

    def thumbnail(self, series_number: int) -> None:
        """Double-click a series in the study browser: OHIF loads it in the active viewport."""
        self.page.locator(f'[data-cy^="study-browser-thumbnail"][data-series="{series_number}"]'
                          ).first.dblclick()

    def open_study(self, base_url: str) -> None:
        self.page.goto(f"{base_url}/viewer?StudyInstanceUIDs={self.study.study_uid}")
        self.wait("n => window.services?.displaySetService?.getActiveDisplaySets().length >= n",
                  len(self.study.series))
        self.wait(JS_IMAGE)
        self.wait("n => document.querySelectorAll("
                  "'[data-cy=\"study-browser-thumbnail\"] img').length >= n", 5)
        self.outcome.display_sets = self.page.evaluate(
            """() => window.services.displaySetService.getActiveDisplaySets().map(d =>
                `${d.Modality} S:${d.SeriesNumber} ${d.SeriesDescription} `
                + `(${d.unsupported ? 'unsupported' : d.SOPClassHandlerId.split('.').pop()}, `
                + `${d.numImageFrames ?? d.instances?.length ?? 0} image(s))`)""")
        self.shot("viewer")

    def open_sr(self) -> None:
        sr_uid = str(self.study.sr.SeriesInstanceUID)
        self.thumbnail(int(self.study.sr.SeriesNumber))
        self.wait(f"uid => ({JS_SR})(uid)?.isLoaded", sr_uid)
        measurements: list[dict[str, str]] = self.page.evaluate(
            f"""uid => ({JS_SR})(uid).measurements.map(m => ({{
                id: m.TrackingIdentifier, image: m.imageId }}))""", sr_uid)
        self.outcome.sr_loaded = len(measurements)
        self.outcome.rehydratable = bool(self.page.evaluate(
            f"uid => ({JS_SR})(uid).isRehydratable", sr_uid))
        if self.outcome.rehydratable:
            self._hydrate(sr_uid)
        else:
            self._step_sr(measurements)
            self._not_offered()
        self._panel()

    def _placed(self, name: str, image: str, tool: str) -> None:
        """Wait until the viewport shows ``image`` with a ``tool`` annotation on it."""
        try:
            self.wait(f"""image => ({JS_IMAGE})() === image && window.cornerstoneTools
                .annotation.state.getAllAnnotations().some(a => a.metadata.toolName ===
                '{tool}' && a.metadata.referencedImageId === image)""",
                      image, timeout_ms=min(self.timeout_ms, 15000))
            self.outcome.placed.append(name)
        except PlaywrightTimeout:
            self.outcome.not_placed.append(name)

    def _step_sr(self, measurements: list[dict[str, str]]) -> None:
        """The SR viewport, measurement by measurement (its arrows): is each on its image?"""
        self.outcome.placed_by = "SR viewport arrows"
        for number, measurement in enumerate(measurements):
            if number:
                self.page.locator('[data-cy="viewport-action-arrows-right"]').first.click()
            self._placed(measurement["id"], measurement["image"], "DICOMSRDisplay")
            self.shot("sr-" + re.sub(r"\W+", "-", measurement["id"]).strip("-"))

    def _not_offered(self) -> None:
        """What OHIF tells a user who hovers the SR badge when it will not load the SR."""
        self.page.locator('[data-cy^="ModalityLoadBadge-"]').first.hover()
        tooltip = self.page.locator('[role="tooltip"], [data-radix-popper-content-wrapper]')
        try:
            tooltip.first.wait_for(timeout=5000)
            text = tooltip.first.inner_text().strip().splitlines()[0]
            self.outcome.hydration = f"not offered; OHIF says: {text}"
        except PlaywrightTimeout:
            self.outcome.hydration = "not offered (SR not rehydratable)"
        self.page.mouse.move(0, 0)
        self.page.keyboard.press("Escape")
        tooltip.first.wait_for(state="hidden", timeout=5000)

    def _hydrate(self, sr_uid: str) -> None:
        """Load the SR as tracked measurements: OHIF does it at once or asks first."""
        try:
            self.wait(f"uid => ({JS_SR})(uid).isHydrated", sr_uid, timeout_ms=5000)
            self.outcome.hydration = "hydrated by OHIF on opening"
        except PlaywrightTimeout:
            self.page.get_by_role("button", name=re.compile(r"^(Yes|Load|LOAD)$")).first.click()
            self.wait(f"uid => ({JS_SR})(uid).isHydrated", sr_uid)
            self.outcome.hydration = "hydrated after the prompt"

    def _panel(self) -> None:
        """OHIF's measurement panel: its rows, each clicked to check it is on its image."""
        rows = '[data-cy^="measurement-table-row-"]'
        if not self.page.locator('[data-cy="trackedMeasurements-panel"]').filter(
                visible=True).count():
            self.page.locator('[data-cy="trackedMeasurements-btn"]').click()
        # Settled when the panel lists what the measurement service holds.
        self.outcome.tracked = int(str(self.wait(
            f"""() => {{ const n = [...document.querySelectorAll('{rows}')]
                .filter(e => e.offsetParent).length;
                return n === window.services.measurementService.getMeasurements().length
                    && `${{n}}`; }}""")))
        self.shot("measurements")
        if not self.outcome.tracked:
            return
        self.outcome.placed_by = "measurement panel rows"
        tracked = self.page.evaluate("""() => window.services.measurementService
            .getMeasurements().map(m => ({ label: m.label, image: m.referencedImageId,
            tool: m.toolName }))""")
        for number, measurement in enumerate(tracked):
            self.page.locator(rows).filter(visible=True).nth(number).locator(
                '[data-cy="data-row"]').first.click()
            name = f"{number + 1} {measurement['label']}"
            self._placed(name, measurement["image"], measurement["tool"])
            self.shot(f"tracked-{number + 1}")

    def secondary_captures(self, series_number: int) -> None:
        self.thumbnail(series_number)
        for number, uid in enumerate(self.study.sc_uids):
            if number:
                self.page.keyboard.press("ArrowDown")  # OHIF's next-image hotkey
            self.wait(f"uid => ({JS_IMAGE})()?.includes(`/instances/${{uid}}/`)", uid)
            self.shot(f"sc-{number + 1}")


def run(base_url: str, study: Study, out: Path, timeout_s: float = 120) -> Outcome:
    outcome = Outcome()

    def on_console(message: ConsoleMessage) -> None:
        line = f"{message.type}: {message.text}"
        outcome.console.append(line)
        if message.type == "error":
            record(line)

    def record(line: str) -> None:
        allowed = any(p.search(line) for p in ALLOWED)
        (outcome.allowed if allowed else outcome.errors).append(line)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        outcome.chromium = browser.version
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        # The onboarding tour would cover the viewport: mark it as seen.
        page.add_init_script("localStorage.setItem('shownTours', '[\"basicViewerTour\"]')")
        page.on("console", on_console)
        page.on("pageerror", lambda error: record(f"uncaught: {error}"))
        page.on("requestfailed", lambda r: record(f"request failed: {r.url} {r.failure}"))
        viewer = Viewer(page, study, out, outcome, timeout_s)
        steps: list[Callable[[], None]] = [
            lambda: viewer.open_study(base_url), viewer.open_sr,
            lambda: viewer.secondary_captures(study.sc_series_number)]
        for number, step in enumerate(steps):
            try:
                step()
            except (PlaywrightTimeout, Error) as error:
                lines = str(error).splitlines()
                outcome.errors.append("check step failed: " + " / ".join(lines[:1] + lines[-3:]))
                viewer.shot("failure")
                if number == 0:
                    break
        browser.close()
    return outcome
