//! Signing in to the web console over HTTPS without a browser, for the scenarios and the
//! console benchmark: the sign-in form's double-submit token, the first password, the session.

/// The value of the CSRF field (`name="csrf" value="..."`) of a form page.
///
/// # Panics
/// If the page has no CSRF field.
pub fn csrf_in(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("the page carries a CSRF field")
        + 19;
    html[at..].split('"').next().unwrap_or_default().to_owned()
}

/// The value a response sets for cookie `name`.
pub fn cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

/// Signs in to the console at `base` as `account`, an account created without a second factor,
/// with its one-time password, and chooses `password`; returns the session cookie's value.
/// `http` must not follow redirects.
///
/// # Panics
/// If a step is refused.
pub async fn sign_in_without_mfa(
    http: &reqwest::Client,
    base: &str,
    account: &str,
    one_time: &str,
    password: &str,
) -> String {
    let form = http
        .get(format!("{base}/ui/login"))
        .send()
        .await
        .expect("sign-in page");
    let login = cookie(&form, "__Host-herald-login").expect("the sign-in token cookie");
    let csrf = csrf_in(&form.text().await.expect("sign-in page body"));
    let signed = http
        .post(format!("{base}/ui/login"))
        .header("cookie", format!("__Host-herald-login={login}"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", account),
            ("password", one_time),
        ])
        .send()
        .await
        .expect("sign-in answer");
    assert_eq!(signed.status(), 303, "sign-in refused");
    let session = cookie(&signed, "__Host-herald-session").expect("a session cookie");
    let setup = http
        .get(format!("{base}/ui/setup"))
        .header("cookie", format!("__Host-herald-session={session}"))
        .send()
        .await
        .expect("set-up page");
    let csrf = csrf_in(&setup.text().await.expect("set-up page body"));
    let done = http
        .post(format!("{base}/ui/setup"))
        .header("cookie", format!("__Host-herald-session={session}"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("new_password", password),
            ("new_password2", password),
        ])
        .send()
        .await
        .expect("set-up answer");
    assert_eq!(done.status(), 303, "set-up refused");
    cookie(&done, "__Host-herald-session").expect("the signed-in session cookie")
}
