"""The portal in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by Selenium, against the real berth binary.

Content is pushed with skopeo; the browser signs in, browses to the image,
reads its platforms and layer sizes, changes network rules, creates a
service principal, reads the logs and runs explain. A Reader sees no change
buttons and its posts are refused; a post without the session's CSRF token
is refused; an idle session ends. Every main page is checked with axe-core
(run inside the page) for serious accessibility violations, on a narrow
screen and in dark mode, and saved as a screenshot for CI's artifacts
(``BERTH_ARTIFACTS_DIR``, by default ``<repo>/ci-artifacts``).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.parse
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from conftest import E2E_REGISTRY, REPO_ROOT, Creds, Skopeo, free_port, require_tool, wait_for
from diag_support import CertAuthority, start_berth

pytestmark = pytest.mark.skipif(E2E_REGISTRY != "berth", reason="the portal is berth's own")

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# axe-core, unpacked by scripts/install-test-deps.sh from the npm registry's tarball.
AXE_JS = Path(os.environ.get("AXE_CORE_JS", "/opt/axe-core/axe.min.js"))
ARTIFACTS = Path(os.environ.get("BERTH_ARTIFACTS_DIR", REPO_ROOT / "ci-artifacts")) / "portal"

REPO = "portal/multi"


@pytest.fixture(scope="module")
def portal(berth_servers):
    port = free_port()
    return berth_servers("portal", {"server": {"listen": f"127.0.0.1:{port}"}})


@pytest.fixture(scope="module")
def pushed(portal, client_env, client_home, oci_images):
    """The layout's ``multi`` (an index of linux/amd64 and linux/arm64/v8) as portal/multi:v1."""
    skopeo = Skopeo(client_env, client_home["policy"], portal.owner)
    skopeo.copy(oci_images.layout.transport("multi"), f"docker://{portal.host}/{REPO}:v1", "--all")
    index = requests.get(
        f"http://{portal.host}/v2/{REPO}/manifests/v1",
        auth=(portal.owner.user, portal.owner.password),
        headers={"Accept": "application/vnd.oci.image.index.v1+json"},
        timeout=10,
    )
    assert index.status_code == 200, index.text
    return index.json(), index.headers["Docker-Content-Digest"]


def make_driver(*, javascript: bool = True, width: int = 1280, height: int = 900) -> webdriver.Chrome:
    require_tool("chromium")
    require_tool("chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", f"--window-size={width},{height}"):
        options.add_argument(arg)
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    # A click that submits a form returns before the next page has loaded:
    # lookups wait for their element (absences are checked after a lookup
    # that waited for the page).
    driver.implicitly_wait(5)
    return driver


@pytest.fixture
def browser():
    driver = make_driver()
    yield driver
    driver.quit()


def sign_in(driver, base: str, creds: Creds, next_path: str = "/"):
    driver.get(f"{base}/login?next={urllib.parse.quote(next_path, safe='')}")
    driver.find_element(By.ID, "login").send_keys(creds.user)
    driver.find_element(By.ID, "password").send_keys(creds.password)
    submit(driver, driver.find_element(By.CSS_SELECTOR, "form.signin button[type=submit]"))
    wait_for(lambda: "/login" not in driver.current_url, 10, "the sign-in to land")
    loaded(driver)


def loaded(driver):
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return document.readyState") == "complete")


def replaced(page):
    """A wait condition: the element ``page`` no longer belongs to the current document.

    Selenium's ``staleness_of`` expects a StaleElementReferenceException, but
    chromedriver answers a check made mid-navigation with an "unknown error:
    Node with given id does not belong to the document", which means the same.
    """

    def check(_driver):
        try:
            page.is_enabled()
            return False
        except StaleElementReferenceException:
            return True
        except WebDriverException as error:
            if "does not belong to the document" in str(error):
                return True
            raise

    return check


def submit(driver, element):
    """Clicks a link or a submit button and waits until the next page has replaced this one."""
    page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, 10).until(replaced(page))
    loaded(driver)


def press_enter_and_wait(driver, element):
    """Presses Enter in a form field and waits until the page it submits to has replaced this one."""
    page = driver.find_element(By.TAG_NAME, "html")
    element.send_keys(Keys.ENTER)
    WebDriverWait(driver, 10).until(replaced(page))
    loaded(driver)


def base_of(server) -> str:
    return f"http://{server.host}"


def text(driver, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text


def session_cookie(driver) -> dict:
    cookie = driver.get_cookie("berth_session")
    assert cookie, f"no session cookie: {driver.get_cookies()}"
    return cookie


def screenshot(driver, name: str):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def service_principal(server, name: str, role: str | None) -> Creds:
    body = {"name": name}
    if role:
        body["role"] = role
    created = server.api("POST", "/service-principals", body)
    return Creds(created["identity"]["login"], created["secrets"][0]["value"])


def test_sign_in_and_browse_to_an_image_pushed_by_skopeo(portal, pushed, browser):
    index, index_digest = pushed
    base = base_of(portal)
    browser.get(f"{base}/repositories")
    assert "/login" in browser.current_url, "without a session the portal asks to sign in"
    sign_in(browser, base, portal.owner, "/repositories")
    cookie = session_cookie(browser)
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict", cookie

    search = browser.find_element(By.ID, "q")
    search.send_keys("MULTI")
    press_enter_and_wait(browser, search)
    assert "q=MULTI" in browser.current_url, browser.current_url
    submit(browser, browser.find_element(By.LINK_TEXT, REPO))
    submit(browser, browser.find_element(By.LINK_TEXT, "v1"))
    assert index_digest in text(browser, "dl.facts")
    platforms = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#platforms tbody tr td:first-child")]
    expected = sorted(
        "/".join(filter(None, [m["platform"]["os"], m["platform"]["architecture"], m["platform"].get("variant")]))
        for m in index["manifests"]
    )
    assert sorted(platforms) == expected == ["linux/amd64", "linux/arm64/v8"]
    # With JavaScript on, the copy button appears next to the command.
    assert browser.find_element(By.CSS_SELECTOR, "button.copy-button").is_displayed()
    pull = browser.find_element(By.CSS_SELECTOR, ".copy input").get_attribute("value")
    assert pull == f"docker pull {portal.host}/{REPO}@{index_digest}"
    screenshot(browser, "manifest-index")

    # The amd64 image: its layers with the sizes its manifest states.
    amd64 = next(m for m in index["manifests"] if m["platform"]["architecture"] == "amd64")
    row = browser.find_element(By.XPATH, "//table[@id='platforms']//tr[td[1][normalize-space()='linux/amd64']]")
    submit(browser, row.find_element(By.TAG_NAME, "a"))
    manifest = requests.get(
        f"http://{portal.host}/v2/{REPO}/manifests/{amd64['digest']}",
        auth=(portal.owner.user, portal.owner.password),
        headers={"Accept": amd64["mediaType"]},
        timeout=10,
    ).json()
    sizes = [int(c.get_attribute("data-bytes")) for c in browser.find_elements(By.CSS_SELECTOR, "#layers td[data-bytes]")]
    assert sizes == [layer["size"] for layer in manifest["layers"]]
    config_size = int(browser.find_element(By.CSS_SELECTOR, "#config td[data-bytes]").get_attribute("data-bytes"))
    assert config_size == manifest["config"]["size"]
    screenshot(browser, "manifest-image")


def test_add_and_remove_a_network_rule(portal, browser):
    base = base_of(portal)
    sign_in(browser, base, portal.owner, "/network")
    browser.find_element(By.ID, "add-ip").send_keys("10.20.0.0/16")
    submit(browser, browser.find_element(By.CSS_SELECTOR, "form[action='/network/rules/add'] button"))
    assert "The rule was added" in text(browser, ".notice.ok")
    assert "10.20.0.0/16" in text(browser, "#ip-rules")
    assert "10.20.0.0/16" in portal.api("GET", "/network")["networkRuleSet"]["ipRules"]
    screenshot(browser, "network")

    submit(browser, browser.find_element(By.CSS_SELECTOR, "button[aria-label='Remove the rule 10.20.0.0/16']"))
    assert "The rule was removed" in text(browser, ".notice.ok")
    assert not browser.find_elements(By.CSS_SELECTOR, "#ip-rules")
    assert "10.20.0.0/16" not in portal.api("GET", "/network")["networkRuleSet"]["ipRules"]


def test_a_change_that_would_lock_the_browser_out_is_warned_about_and_not_made(portal, browser):
    base = base_of(portal)
    sign_in(browser, base, portal.owner, "/network")
    Select(browser.find_element(By.ID, "default-action")).select_by_value("Deny")
    submit(browser, browser.find_element(By.CSS_SELECTOR, "form[action='/network/settings'] button"))
    warning = text(browser, "#lockout")
    assert "lock you out" in warning and "127.0.0.1" in warning, warning
    assert portal.api("GET", "/network")["networkRuleSet"]["defaultAction"] == "Allow"
    submit(browser, browser.find_element(By.LINK_TEXT, "Cancel"))
    assert "Allow" in text(browser, "#network-summary")


def test_create_a_service_principal_and_see_its_secret_once(portal, browser):
    base = base_of(portal)
    sign_in(browser, base, portal.owner, "/access")
    browser.find_element(By.ID, "sp-name").send_keys("portal-ci")
    Select(browser.find_element(By.ID, "sp-role")).select_by_value("AcrPull")
    submit(browser, browser.find_element(By.CSS_SELECTOR, "form[action='/access/service-principals'] button"))
    login = text(browser, "#sp-login")
    secret = text(browser, "#sp-secret")
    assert len(secret) >= 20
    screenshot(browser, "service-principal-created")
    # The secret works, as a client would use it.
    ping = requests.get(f"{base}/v2/", auth=(login, secret), timeout=10)
    assert ping.status_code == 200, ping.text
    browser.get(f"{base}/access")
    assert "portal-ci" in text(browser, "#identities")
    assert secret not in browser.page_source, "the secret is shown once only"


def test_an_orphaned_role_assignment_is_marked_with_its_fix(portal, browser):
    creds = service_principal(portal, "portal-gone", "AcrPush")
    portal.api("DELETE", f"/service-principals/{creds.user}")
    sign_in(browser, base_of(portal), portal.owner, "/access")
    row = browser.find_element(By.XPATH, f"//table[@id='assignments']//tr[.//code[normalize-space()='{creds.user}']]")
    assert "orphaned" in row.text
    assert "berth role assignment delete --id" in row.text
    screenshot(browser, "access")


def test_filter_failed_logins(portal, browser):
    base = base_of(portal)
    correlation_ids = []
    for _ in range(2):
        r = requests.get(f"{base}/v2/", auth=("portal-intruder", "guess"), timeout=10)
        assert r.status_code == 401
        correlation_ids.append(r.headers["X-Correlation-Id"])
    # A failed sign-in in the portal is a failed login too.
    browser.get(f"{base}/login")
    browser.find_element(By.ID, "login").send_keys("portal-intruder")
    browser.find_element(By.ID, "password").send_keys("another guess")
    submit(browser, browser.find_element(By.CSS_SELECTOR, "form.signin button[type=submit]"))
    assert "Sign-in refused" in text(browser, ".notice.error")

    sign_in(browser, base, portal.owner, "/logs")

    def filtered_rows():
        browser.get(f"{base}/logs")
        browser.find_element(By.ID, "failed").click()
        browser.find_element(By.ID, "identity").send_keys("portal-intruder")
        submit(browser, browser.find_element(By.CSS_SELECTOR, "form[action='/logs'] button"))
        return browser.find_elements(By.CSS_SELECTOR, "#logins tbody tr")

    # Events are written by a background writer: wait until all three are in.
    wait_for(lambda: len(filtered_rows()) == 3, 15, "three failed logins of portal-intruder")
    rows = browser.find_elements(By.CSS_SELECTOR, "#logins tbody tr")
    for row in rows:
        cells = row.find_elements(By.TAG_NAME, "td")
        assert cells[1].text == "portal-intruder" and cells[3].text == "401", row.text
    screenshot(browser, "logs-failed-logins")

    # The correlation id leads to every event of that request, in the
    # portal and with the CLI's filter.
    submit(browser, rows[0].find_element(By.CSS_SELECTOR, "td:last-child a"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#logins tbody tr")) == 1
    assert "portal-intruder" in text(browser, "#logins")
    listed = json.loads(portal.cli("logs", "login", "--correlation-id", correlation_ids[0], "-o", "json").stdout)
    assert [e["correlationId"] for e in listed] == [correlation_ids[0]], listed

    # The overview counts them by reason.
    browser.get(f"{base}/")
    reasons = {
        r.find_elements(By.TAG_NAME, "td")[0].text: int(r.find_elements(By.TAG_NAME, "td")[1].text)
        for r in browser.find_elements(By.CSS_SELECTOR, "#failure-reasons tbody tr")
    }
    assert sum(reasons.values()) >= 3, reasons


def test_explain_shows_why_a_pull_is_refused(portal, browser):
    base = base_of(portal)
    sign_in(browser, base, portal.owner, "/explain")
    ip = browser.find_element(By.ID, "ip")
    ip.clear()
    ip.send_keys("127.0.0.9")
    browser.find_element(By.ID, "repository").send_keys(REPO)
    Select(browser.find_element(By.ID, "action")).select_by_value("pull")
    submit(browser, browser.find_element(By.CSS_SELECTOR, "form[action='/explain'] button"))
    verdict = text(browser, "#verdict")
    assert verdict, "a verdict"
    # Anonymous pull is off: the trace says so, and what would grant it.
    assert not verdict.startswith("allowed"), verdict
    trace = text(browser, "#access-trace")
    assert "registries/pull/read" in trace and "anonymous pull is disabled" in trace, trace
    screenshot(browser, "explain")


def test_a_reader_sees_no_change_buttons_and_its_posts_are_refused(portal, browser):
    reader = service_principal(portal, "portal-reader", "Reader")
    base = base_of(portal)
    sign_in(browser, base, reader, "/network")
    assert browser.find_element(By.ID, "read-only")
    assert not browser.find_elements(By.CSS_SELECTOR, "form[action='/network/rules/add']")
    assert not browser.find_elements(By.CSS_SELECTOR, "form[action='/network/settings']")
    browser.get(f"{base}/access")
    assert not browser.find_elements(By.CSS_SELECTOR, "form[action='/access/service-principals']")

    # Posting the form anyway, with the reader's own session and CSRF token.
    csrf = browser.find_element(By.CSS_SELECTOR, "input[name=csrf]").get_attribute("value")
    jar = {"berth_session": session_cookie(browser)["value"]}
    r = requests.post(
        f"{base}/network/rules/add",
        data={"ip": "10.30.0.0/16", "csrf": csrf},
        cookies=jar,
        headers={"Origin": base},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 403, r.text
    assert "registries/manage/write" in r.text
    assert "10.30.0.0/16" not in portal.api("GET", "/network")["networkRuleSet"]["ipRules"]


def test_a_post_without_the_csrf_token_is_refused(portal, browser):
    base = base_of(portal)
    sign_in(browser, base, portal.owner, "/network")
    jar = {"berth_session": session_cookie(browser)["value"]}
    r = requests.post(
        f"{base}/network/rules/add", data={"ip": "10.40.0.0/16"}, cookies=jar, allow_redirects=False, timeout=10
    )
    assert r.status_code == 403 and "CSRF" in r.text, r.text
    assert "10.40.0.0/16" not in portal.api("GET", "/network")["networkRuleSet"]["ipRules"]


def test_an_idle_session_ends(berth_servers, browser):
    server = berth_servers(
        "portal-idle", {"server": {"listen": f"127.0.0.1:{free_port()}"}, "portal": {"idle_timeout_seconds": 2}}
    )
    base = base_of(server)
    sign_in(browser, base, server.owner, "/settings")
    assert "Settings" in text(browser, "h1")
    # Every request renews the session, so the browser stays away for longer
    # than the idle timeout (the in-process tests move an injected clock).
    time.sleep(3)
    browser.get(f"{base}/settings")
    assert "/login" in browser.current_url
    assert "session ended" in text(browser, ".notice.warn")
    assert browser.get_cookie("berth_session") is None, "the ended session's cookie is cleared"


def test_over_https_the_session_cookie_is_secure(tmp_path):
    ca = CertAuthority(tmp_path / "ca")
    cert, key = ca.issue("portal", ["localhost"], ["127.0.0.1"])
    port = free_port()
    server = start_berth(
        tmp_path / "berth",
        "portal-tls",
        {"server": {"listen": f"127.0.0.1:{port}", "tls_cert": cert, "tls_key": key}},
        dict(os.environ),
        ca_file=ca.cert,
    )
    try:
        base = f"https://127.0.0.1:{port}"
        r = requests.post(
            f"{base}/login",
            data={"login": server.owner.user, "password": server.owner.password, "next": "/"},
            headers={"Origin": base},
            verify=str(ca.cert),
            allow_redirects=False,
            timeout=10,
        )
        assert r.status_code == 303, r.text
        attributes = [a.strip() for a in r.headers["Set-Cookie"].split(";")]
        assert attributes[0].startswith("__Host-berth_session="), attributes
        assert {"Secure", "HttpOnly", "SameSite=Strict", "Path=/"} <= set(attributes), attributes
        page = requests.get(f"{base}/", cookies=r.cookies, verify=str(ca.cert), timeout=10)
        assert page.status_code == 200 and "Overview" in page.text
    finally:
        server.stop()


def test_pages_read_with_javascript_off(portal, pushed):
    driver = make_driver(javascript=False)
    try:
        base = base_of(portal)
        sign_in(driver, base, portal.owner, f"/manifest?repository={REPO}&reference=v1")
        assert "linux/arm64/v8" in text(driver, "#platforms")
        # The copy button needs JavaScript and stays hidden; the command can still be selected.
        assert not driver.find_element(By.CSS_SELECTOR, "button.copy-button").is_displayed()
        assert driver.find_element(By.CSS_SELECTOR, ".copy input").get_attribute("value").startswith("docker pull")
    finally:
        driver.quit()


def test_the_overview_charts_storage_sampled_by_the_running_server(portal, pushed, browser):
    # berth serve samples its size when it starts and each hour after.
    sign_in(browser, base_of(portal), portal.owner)
    assert browser.find_element(By.ID, "storage-chart")
    assert browser.find_elements(By.CSS_SELECTOR, "#storage-samples tbody tr")
    assert browser.find_element(By.ID, "activity-chart")


MAIN_PAGES = {
    "overview": "/",
    "repositories": "/repositories",
    "repository": f"/repository?name={REPO}",
    "manifest": f"/manifest?repository={REPO}&reference=v1",
    "network": "/network",
    "access": "/access",
    "logs": "/logs",
    "explain": "/explain?ip=10.1.2.3&action=push&repository=portal%2Fmulti",
    "settings": "/settings",
}


def axe_violations(driver) -> list[dict]:
    assert AXE_JS.is_file(), f"{AXE_JS} is missing: run scripts/install-test-deps.sh"
    driver.execute_script(AXE_JS.read_text())
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations)).catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));"
    )
    return [v for v in result if v.get("impact") in ("serious", "critical")]


def test_every_main_page_has_no_serious_accessibility_violations(portal, pushed, browser):
    base = base_of(portal)
    sign_in(browser, base, portal.owner)
    found = {}
    for name, path in MAIN_PAGES.items():
        browser.get(base + path)
        assert "/login" not in browser.current_url, name
        screenshot(browser, f"page-{name}")
        violations = axe_violations(browser)
        if violations:
            found[name] = [(v["id"], v["help"], [n.get("target") for n in v["nodes"]][:3]) for v in violations]
    assert not found, json.dumps(found, indent=1)


def test_keyboard_narrow_screen_and_dark_mode(portal, pushed):
    driver = make_driver(width=390, height=844)
    try:
        base = base_of(portal)
        sign_in(driver, base, portal.owner)
        # Keyboard: the first Tab reaches "Skip to content", which moves focus to the main landmark.
        driver.get(f"{base}/repositories")
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
        assert driver.switch_to.active_element.text == "Skip to content"
        driver.switch_to.active_element.send_keys(Keys.ENTER)
        assert driver.switch_to.active_element.get_attribute("id") == "main"
        # Narrow: no page scrolls sideways (wide tables scroll inside their own box).
        for name, path in MAIN_PAGES.items():
            driver.get(base + path)
            overflow = driver.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 1, f"{name} is {overflow}px wider than a 390px screen"
        screenshot(driver, "narrow-manifest")
        # Dark mode follows the system setting.
        driver.execute_cdp_cmd(
            "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}
        )
        driver.get(f"{base}/manifest?repository={REPO}&reference=v1")
        background = driver.execute_script("return getComputedStyle(document.body).backgroundColor")
        channels = [int(c) for c in re.findall(r"\d+", background)[:3]]
        assert max(channels) < 60, f"dark mode background is {background}"
        screenshot(driver, "dark-manifest")
        assert not axe_violations(driver), "dark mode has serious accessibility violations"
    finally:
        driver.quit()
