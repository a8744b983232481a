//! The web console in a real browser: headless Chromium driven over WebDriver (Debian's
//! `chromium` and `chromium-driver`, through fantoccini) against a real `herald-ca serve`.
//!
//! An admin signs in for the first time with the one-time password, chooses a password and
//! enrols TOTP (the code computed here from the secret the page shows, by Python's standard
//! library: an implementation independent of Herald's), creates an enrollment token, a real
//! `herald-update enroll` uses it, the endpoint appears, the admin revokes it and sees it
//! revoked and the audit entry with the account's name. A form without its CSRF token is
//! refused. An auditor sees no revoke button, and a revoke POST forged with the auditor's own
//! session and CSRF token is refused with 403. Wrong TOTP codes are refused and lock the
//! account, so that then even the right code is refused. A screenshot of every page is saved
//! under `target/console-screenshots/`.
//!
//! Chromium missing is a failure with instructions, never a skip (`scripts/install-test-deps`
//! installs it).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use herald_e2e::herald_bin;

mod ca_support;
mod enroll_support;
use ca_support::{ca_cmd, free_addr, run_ok, TestCa};

/// `chromedriver`, stopped when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn require_tool(name: &str) {
    let found = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{name} is missing: the console's browser test needs Chromium and its WebDriver \
         (Debian packages `chromium` and `chromium-driver`); run scripts/install-test-deps"
    );
}

fn start_driver() -> (Driver, String) {
    require_tool("chromium");
    require_tool("chromedriver");
    let addr = free_addr();
    let child = Command::new("chromedriver")
        .arg(format!("--port={}", addr.port()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    (Driver(child), format!("http://{addr}"))
}

async fn browser(driver_url: &str) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), "chrome".into());
    // The test CA's root is not in the browser's store; the server is reached by address.
    caps.insert("acceptInsecureCerts".into(), true.into());
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1000"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(driver_url)
        .await
        .expect("a Chromium session")
}

/// Where screenshots go: `target/console-screenshots/`.
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

/// The current six-digit TOTP code of a base32 secret, computed by Python's standard library.
fn totp_now(secret: &str) -> String {
    let script = "import base64,hmac,hashlib,struct,sys,time\n\
        s=base64.b32decode(sys.argv[1]+'='*(-len(sys.argv[1])%8))\n\
        h=hmac.new(s,struct.pack('>Q',int(time.time())//30),hashlib.sha1).digest()\n\
        o=h[-1]&15\n\
        print('%06d'%((struct.unpack('>I',h[o:o+4])[0]&0x7fffffff)%1000000))";
    let out = run_ok(Command::new("python3").args(["-c", script, secret]));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn text_of(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .text()
        .await
        .unwrap()
}

async fn page_text(client: &Client) -> String {
    text_of(client, "body").await
}

async fn fill(client: &Client, css: &str, value: &str) {
    let field = client.find(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

/// Clicks what `css` finds without waiting for anything.
async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Clicks what `locator` finds and waits until the next page has loaded (the old document
/// is gone and the new one complete).
async fn navigate_by(client: &Client, locator: Locator<'_>) {
    let old = client.find(Locator::Css("html")).await.unwrap();
    client
        .find(locator)
        .await
        .unwrap_or_else(|e| panic!("nothing to click: {e}"))
        .click()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while old.tag_name().await.is_ok() {
        assert!(Instant::now() < deadline, "the page did not change");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loop {
        let state = client
            .execute("return document.readyState", Vec::new())
            .await;
        if state.is_ok_and(|s| s == "complete") {
            return;
        }
        assert!(Instant::now() < deadline, "the page did not load");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// [`navigate_by`] a CSS selector.
async fn submit(client: &Client, css: &str) {
    navigate_by(client, Locator::Css(css)).await;
}

async fn current_path(client: &Client) -> String {
    client.current_url().await.unwrap().path().to_owned()
}

/// Signs in with a one-time password: chooses `password`, enrols TOTP; returns the secret.
async fn first_sign_in(
    client: &Client,
    base: &str,
    name: &str,
    one_time: &str,
    password: &str,
    shots: &str,
) -> String {
    client.goto(&format!("{base}/ui/")).await.unwrap();
    assert_eq!(current_path(client).await, "/ui/login");
    shot(client, &format!("{shots}-1-sign-in")).await;
    fill(client, "#username", name).await;
    fill(client, "#password", one_time).await;
    submit(client, "form.card button[type=submit]").await;
    assert_eq!(
        current_path(client).await,
        "/ui/setup",
        "{}",
        page_text(client).await
    );
    let secret = text_of(client, "#totp-secret").await;
    let qr = client.find(Locator::Css("img.qr")).await.unwrap();
    let src = qr.attr("src").await.unwrap().unwrap_or_default();
    assert!(
        src.starts_with("data:image/svg+xml;base64,"),
        "QR code image: {src:.40}"
    );
    shot(client, &format!("{shots}-2-setup")).await;
    fill(client, "#new_password", password).await;
    fill(client, "#new_password2", password).await;
    fill(client, "#code", &totp_now(&secret)).await;
    submit(client, "form.card button[type=submit]").await;
    let codes = client
        .find_all(Locator::Css("#recovery-codes li"))
        .await
        .unwrap();
    assert_eq!(codes.len(), 10, "{}", page_text(client).await);
    shot(client, &format!("{shots}-3-recovery-codes")).await;
    submit(client, "a.button").await;
    assert_eq!(current_path(client).await, "/ui/");
    secret
}

fn add_account(ca: &TestCa, name: &str, role: &str) -> String {
    let out = run_ok(
        ca_cmd()
            .args([
                "admin",
                "user",
                "add",
                name,
                "--role",
                role,
                "--json",
                "--data-dir",
            ])
            .arg(&ca.dir),
    );
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    value["one_time_password"].as_str().unwrap().to_owned()
}

fn root_fingerprint(ca: &TestCa) -> String {
    let out = run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(ca.file("root.crt")),
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_ascii_lowercase()
}

fn enroll(ca: &TestCa, token: &str, state_dir: &Path) {
    run_ok(
        herald_bin("herald-update")
            .args(["enroll", "--server", &ca.https_url(), "--token", token])
            .args(["--root-fingerprint", &root_fingerprint(ca), "--state-dir"])
            .arg(state_dir),
    );
}

/// A form POST to the console outside the browser, with the given session cookie.
async fn post_form(ca: &TestCa, session: &str, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let root = std::fs::read_to_string(ca.file("root.crt")).unwrap();
    let client = enroll_support::client_with(&root, None);
    let body: String = form
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let response = client
        .post(format!("{}{path}", ca.https_url()))
        .header("cookie", format!("__Host-herald-session={session}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn cert_revoked(ca: &TestCa, serial: &str) -> bool {
    let out = run_ok(
        ca_cmd()
            .args(["cert", "show", serial, "--json", "--data-dir"])
            .arg(&ca.dir),
    );
    let cert: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    !cert["revocation"].is_null()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_real_browser() {
    let (_driver, driver_url) = start_driver();
    let mut ca = TestCa::init();
    ca.serve();
    let base = ca.https_url();
    let alice_once = add_account(&ca, "alice", "admin");
    let bob_once = add_account(&ca, "bob", "auditor");
    let client = browser(&driver_url).await;

    // First sign-in of the admin: one-time password, own password, TOTP.
    first_sign_in(
        &client,
        &base,
        "alice",
        &alice_once,
        "alice's long password",
        "01-admin",
    )
    .await;
    let dashboard = page_text(&client).await;
    assert!(dashboard.contains("Endpoints by state"), "{dashboard}");
    assert!(dashboard.contains("Revocation services"));
    assert!(
        client.find(Locator::Css("svg.chart")).await.is_ok(),
        "the chart is drawn"
    );
    shot(&client, "02-dashboard").await;
    // The same page at a phone's width.
    client.set_window_size(390, 844).await.unwrap();
    client.refresh().await.unwrap();
    shot(&client, "02-dashboard-phone").await;
    client.set_window_size(1280, 1000).await.unwrap();

    // A form whose CSRF token was removed is refused, and creates nothing.
    client.goto(&format!("{base}/ui/tokens")).await.unwrap();
    client
        .execute(
            "document.querySelector('form.card input[name=csrf]').remove()",
            Vec::new(),
        )
        .await
        .unwrap();
    fill(&client, "#name", "forged").await;
    submit(&client, "#create-token").await;
    let refused = page_text(&client).await;
    assert!(refused.contains("security token"), "{refused}");
    shot(&client, "03-csrf-refused").await;
    client.goto(&format!("{base}/ui/tokens")).await.unwrap();
    assert!(page_text(&client)
        .await
        .contains("No enrollment tokens yet"));

    // An enrollment token, shown once with the command to paste.
    fill(&client, "#name", "kiosk").await;
    submit(&client, "#create-token").await;
    let token = text_of(&client, "#new-token").await;
    assert!(token.starts_with("het_"), "{token}");
    let command = text_of(&client, "#enroll-command").await;
    assert!(command.contains(&token) && command.contains("herald-update enroll"));
    assert!(command.contains(&root_fingerprint(&ca)), "{command}");
    shot(&client, "04-token-created").await;

    // A real updater enrolls with it; the endpoint appears.
    let endpoint_state = ca.scratch("endpoint-state");
    enroll(&ca, &token, &endpoint_state);
    client.goto(&format!("{base}/ui/endpoints")).await.unwrap();
    let listing = text_of(&client, "#endpoints").await;
    assert!(listing.contains("kiosk-0001"), "{listing}");
    assert!(listing.contains("valid"), "{listing}");
    shot(&client, "05-endpoints").await;
    navigate_by(&client, Locator::LinkText("kiosk-0001")).await;
    assert_eq!(text_of(&client, "#cert-state").await, "valid");
    shot(&client, "06-endpoint").await;

    // Revoke it: reason, confirmation.
    client
        .find(Locator::Css("#reason"))
        .await
        .unwrap()
        .select_by_value("key-compromise")
        .await
        .unwrap();
    click(&client, "#confirm").await;
    submit(&client, "#revoke").await;
    assert_eq!(text_of(&client, "#cert-state").await, "revoked");
    shot(&client, "07-endpoint-revoked").await;
    client
        .goto(&format!("{base}/ui/endpoints?state=revoked"))
        .await
        .unwrap();
    assert!(text_of(&client, "#endpoints").await.contains("kiosk-0001"));

    // The audit log names the account.
    client
        .goto(&format!("{base}/ui/audit?action=revoke"))
        .await
        .unwrap();
    let audit = text_of(&client, "#audit").await;
    assert!(audit.contains("account:alice"), "{audit}");
    assert!(
        audit.contains("key-compromise") || audit.contains("keyCompromise"),
        "{audit}"
    );
    shot(&client, "08-audit").await;
    client
        .goto(&format!("{base}/ui/audit/verify"))
        .await
        .unwrap();
    assert!(text_of(&client, "#verify-result").await.contains("intact"));
    shot(&client, "09-audit-verified").await;
    client.goto(&format!("{base}/ui/accounts")).await.unwrap();
    assert!(text_of(&client, "#accounts").await.contains("bob"));
    shot(&client, "10-accounts").await;
    submit(&client, "form.signout button").await;
    assert_eq!(current_path(&client).await, "/ui/login");

    // The auditor sees no revoke button, and a forged revoke POST is refused.
    let (_, victim) = ca.issue("victim");
    let victim_serial = TestCa::serial_of(&victim);
    let bob_secret = first_sign_in(
        &client,
        &base,
        "bob",
        &bob_once,
        "bob's long password!",
        "11-auditor",
    )
    .await;
    client
        .goto(&format!("{base}/ui/certificates/{victim_serial}"))
        .await
        .unwrap();
    assert!(page_text(&client).await.contains("victim"));
    assert!(client
        .find_all(Locator::Css("#revoke"))
        .await
        .unwrap()
        .is_empty());
    assert!(!page_text(&client).await.contains("Revoke certificate"));
    shot(&client, "12-auditor-certificate").await;
    client.goto(&format!("{base}/ui/tokens")).await.unwrap();
    assert!(client
        .find_all(Locator::Css("#create-token"))
        .await
        .unwrap()
        .is_empty());
    assert!(client
        .find_all(Locator::Css("#accounts"))
        .await
        .unwrap()
        .is_empty());
    let session = client
        .get_named_cookie("__Host-herald-session")
        .await
        .unwrap();
    let csrf = client
        .find(Locator::Css("form.signout input[name=csrf]"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    let (status, body) = post_form(
        &ca,
        session.value(),
        &format!("/ui/certificates/{victim_serial}/revoke"),
        &[
            ("csrf", &csrf),
            ("reason", "unspecified"),
            ("confirm", "yes"),
        ],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("operator"), "{body}");
    assert!(
        !cert_revoked(&ca, &victim_serial),
        "the forged POST changed nothing"
    );
    // The auditor cannot reach the accounts page either.
    client.goto(&format!("{base}/ui/accounts")).await.unwrap();
    assert!(page_text(&client).await.contains("admin role"));
    shot(&client, "13-auditor-refused").await;
    submit(&client, "form.signout button").await;

    // Wrong TOTP codes are refused; after five the account is locked, even for the right one.
    fill(&client, "#username", "bob").await;
    fill(&client, "#password", "bob's long password!").await;
    submit(&client, "form.card button[type=submit]").await;
    assert_eq!(current_path(&client).await, "/ui/login/code");
    shot(&client, "14-second-factor").await;
    let right: u32 = totp_now(&bob_secret).parse().unwrap();
    let wrong = format!("{:06}", (right + 500_000) % 1_000_000);
    for attempt in 1..=5 {
        fill(&client, "#code", &wrong).await;
        submit(&client, "form.card button[type=submit]").await;
        let text = page_text(&client).await;
        if attempt < 5 {
            assert!(
                text.contains("Sign-in refused"),
                "attempt {attempt}: {text}"
            );
        } else {
            assert!(text.contains("locked until"), "attempt {attempt}: {text}");
        }
    }
    shot(&client, "15-wrong-code-locked").await;
    fill(&client, "#code", &totp_now(&bob_secret)).await;
    submit(&client, "form.card button[type=submit]").await;
    let text = page_text(&client).await;
    assert!(text.contains("locked until"), "{text}");
    assert_eq!(current_path(&client).await, "/ui/login/code");

    let actions = run_ok(ca_cmd().args(["audit", "show", "--data-dir"]).arg(&ca.dir));
    let actions = String::from_utf8_lossy(&actions.stdout);
    for action in [
        "console-setup",
        "console-login",
        "console-logout",
        "console-login-failed",
        "console-account-locked",
        "token-create",
    ] {
        assert!(
            actions.contains(action),
            "no {action} in the audit log:\n{actions}"
        );
    }
    client.close().await.unwrap();
}
