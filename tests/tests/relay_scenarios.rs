//! Relay scenarios: endpoints enroll and renew through `herald-ca relay` processes (a chain of
//! two), revocation data is served from the relay, and a relay that tampers with what an
//! endpoint asked for is caught by the authority or by the endpoint.

#![allow(clippy::unwrap_used)]

mod ca_support;
mod enroll_support;

use std::process::{Command, Stdio};

use ca_support::{ca_cmd, python, run_ok};
use enroll_support::{
    client_with, code, identity, key_and_csr, post_with, proof, renew, renewal_body, runtime,
    wait_listening, RelayProcess, Site,
};
use herald_token_service::{Purpose, PROOF_HEADER};
use herald_wire::RELAY_CHAIN;

fn endpoint_enroll(
    server: &str,
    token: &str,
    fingerprint: &str,
    state: &std::path::Path,
) -> std::process::Output {
    herald_e2e::herald_bin("herald-update")
        .args(["enroll", "--server", server, "--token", token])
        .args(["--root-fingerprint", fingerprint])
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap()
}

#[test]
fn enrollment_through_a_chain_of_two_relays() {
    let site = Site::start();
    let (near, far) = site.two_relays();
    // The endpoint knows only the far relay's URL and the root fingerprint.
    let state = site.ca.scratch("endpoint");
    let out = endpoint_enroll(
        &far.url,
        &site.cli_token("shop", "endpoint"),
        &site.fingerprint(),
        &state,
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("shop-0001"), "{said}");
    assert_eq!(site.certificates_named("shop-0001"), 1);
    let discovery: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("identity/discovery.json")).unwrap())
            .unwrap();
    assert_eq!(
        discovery["enroll_url"],
        format!("{}/api/v1/enroll", far.url)
    );
    // The relays enrolled themselves with their relay tokens.
    assert_eq!(site.certificates_named("relay-0001"), 1);
    assert_eq!(site.certificates_named("relay-0002"), 1);

    runtime().block_on(async {
        // The CRL through both relays is the CA's CRL.
        let client = site.client();
        let via_relays = client
            .get(format!("{}/crl/intermediate.crl", far.url))
            .send()
            .await
            .unwrap();
        assert_eq!(via_relays.status(), 200);
        assert!(via_relays.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age"));
        let body = via_relays.bytes().await.unwrap();
        let direct = client
            .get(format!("{}/crl/intermediate.crl", site.ca.https_url()))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body, direct);
        // Renewal through both relays keeps the name.
        let token = site.create_token(&client, "till").await;
        let (key, csr) = key_and_csr("till");
        let (_, issued) =
            enroll_support::enroll(&client, &far.url, token["token"].as_str().unwrap(), &csr).await;
        assert_eq!(issued["name"], "till-0001", "{issued}");
        let identity_pem = identity(&key, &issued);
        let mtls = client_with(&site.root_pem, Some(&identity_pem));
        let (_, new_csr) = key_and_csr("till");
        let (status, renewed) = renew(&mtls, &far.url, &identity_pem, &new_csr)
            .await
            .unwrap();
        assert_eq!(status, 200, "{renewed}");
        assert_eq!(renewed["name"], "till-0001");
        assert_ne!(renewed["serial"], issued["serial"]);
        // An endpoint that claims, through a relay, to be a relay itself is named in the relay
        // chain and refused.
        let (status, body) = renew_claiming_relay(
            &mtls,
            &near.url,
            &identity_pem,
            &new_csr,
            issued["serial"].as_str().unwrap(),
        )
        .await;
        assert_eq!((status, code(&body)), (403, "not_a_relay"), "{body}");
    });
}

#[test]
fn forwarded_certificate_from_a_non_relay_refused() {
    let site = Site::start();
    runtime().block_on(async {
        let client = site.client();
        let token = site.create_token(&client, "sly").await;
        let (key, csr) = key_and_csr("sly");
        let (_, issued) = enroll_support::enroll(
            &client,
            &site.ca.https_url(),
            token["token"].as_str().unwrap(),
            &csr,
        )
        .await;
        // An endpoint (not a relay) claims to forward a request as a relay.
        let identity_pem = identity(&key, &issued);
        let mtls = client_with(&site.root_pem, Some(&identity_pem));
        let (_, new_csr) = key_and_csr("sly");
        let (status, body) = renew_claiming_relay(
            &mtls,
            &site.ca.https_url(),
            &identity_pem,
            &new_csr,
            issued["serial"].as_str().unwrap(),
        )
        .await;
        assert_eq!((status, code(&body)), (403, "not_a_relay"), "{body}");
    });
}

/// A renewal signed by `identity_pem` whose sender claims to be the relay `serial`.
async fn renew_claiming_relay(
    client: &reqwest::Client,
    base: &str,
    identity_pem: &[u8],
    csr: &str,
    serial: &str,
) -> (u16, serde_json::Value) {
    let body = renewal_body(csr);
    let proof = proof(identity_pem, Purpose::Renew, body.as_bytes(), 0);
    post_with(
        client,
        &format!("{base}/api/v1/renew"),
        &body,
        &[(PROOF_HEADER, &proof), (RELAY_CHAIN, serial)],
    )
    .await
    .unwrap()
}

/// A static file server (the update repository), stopped when dropped.
struct Files(std::process::Child);

impl Drop for Files {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn relay_serves_cached_revocation_data_and_repository_files() {
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(repo.path().join("1.root.json"), "version one").unwrap();
    let repo_addr = ca_support::free_addr();
    let _files = Files(
        Command::new("python3")
            .args(["-m", "http.server", &repo_addr.port().to_string()])
            .args(["--bind", "127.0.0.1", "--directory"])
            .arg(repo.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(repo_addr);
    let site = Site::start_with(|ca| {
        ca.set_config("repository_urls", &format!("[\"http://{repo_addr}/\"]"));
    });
    let relay = RelayProcess::start(
        &site.ca,
        "cache",
        &site.ca.https_url(),
        &site.cli_token("relay", "relay"),
        &site.fingerprint(),
    );
    let (_, cert) = site.ca.issue("watched");
    let request = site.ca.scratch("ocsp-request.der");
    run_ok(
        Command::new("openssl")
            .args(["ocsp", "-no_nonce", "-issuer"])
            .arg(site.ca.file("intermediate.crt"))
            .arg("-cert")
            .arg(&cert)
            .arg("-reqout")
            .arg(&request),
    );
    let ocsp_request = std::fs::read(&request).unwrap();
    let rt = runtime();
    // Repository files are served to clients of the CA only.
    let (reader_key, reader_cert) = site.ca.issue("reader");
    let mut reader = std::fs::read(&reader_key).unwrap();
    reader.extend(std::fs::read(&reader_cert).unwrap());
    reader.extend(std::fs::read(site.ca.file("intermediate.crt")).unwrap());
    let client = client_with(&site.root_pem, Some(&reader));
    let get = |url: String| {
        let client = client.clone();
        rt.block_on(async move {
            let r = client.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap()
        })
    };
    let ocsp = |base: &str| {
        let client = client.clone();
        let url = format!("{base}/ocsp");
        let body = ocsp_request.clone();
        rt.block_on(async move {
            let r = client
                .post(url)
                .header("content-type", "application/ocsp-request")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap()
        })
    };
    let discovery: serde_json::Value =
        serde_json::from_slice(&get(format!("{}/.well-known/herald", relay.url))).unwrap();
    assert_eq!(
        discovery["repository_urls"],
        serde_json::json!([format!("{}/repo/0/", relay.url)])
    );
    let crl_before = get(format!("{}/crl/intermediate.crl", relay.url));
    let ocsp_before = ocsp(&relay.url);
    assert_eq!(
        get(format!("{}/repo/0/1.root.json", relay.url)).as_ref(),
        b"version one"
    );

    // The CA publishes a new CRL and OCSP status; the mirror changes its file.
    run_ok(
        ca_cmd()
            .args(["cert", "revoke", "--data-dir"])
            .arg(&site.ca.dir)
            .arg("watched"),
    );
    std::fs::write(repo.path().join("1.root.json"), "changed").unwrap();
    // The server notices the revocation made by the CLI within a second or so.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while get(format!("{}/crl/intermediate.crl", site.ca.https_url())) == crl_before
        || ocsp(&site.ca.https_url()) == ocsp_before
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the CA never published the new status"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // Until their nextUpdate (and the repository time-to-live) the relay serves its copies.
    assert_eq!(
        get(format!("{}/crl/intermediate.crl", relay.url)),
        crl_before
    );
    assert_eq!(ocsp(&relay.url), ocsp_before);
    assert_eq!(
        get(format!("{}/repo/0/1.root.json", relay.url)).as_ref(),
        b"version one"
    );
}

/// A relay that alters enrollment requests, in Python: `mode` "subject" edits the request's
/// subject without re-signing, "swap" replaces the request with one for its own key.
const TAMPERING_RELAY: &str = r#"
import http.server, json, ssl, sys, urllib.request
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
port, upstream, root, cert, key, mode = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=root)
def fetch(url, body=None):
    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def reply(self, status, body):
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        status, body = fetch(upstream + self.path)
        if self.path == "/.well-known/herald":
            doc = json.loads(body)
            doc["enroll_url"] = "https://localhost:%s/api/v1/enroll" % port
            body = json.dumps(doc).encode()
        self.reply(status, body)
    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if mode == "subject":
            pem = x509.load_pem_x509_csr(req["csr"].encode())
            der = bytearray(pem.public_bytes(serialization.Encoding.DER))
            at = der.find(b"herald-endpoint")
            der[at:at + 15] = b"root-of-all-ca!"
            req["csr"] = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
        else:
            own = ec.generate_private_key(ec.SECP256R1())
            csr = x509.CertificateSigningRequestBuilder().subject_name(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mitm")])).sign(own, hashes.SHA256())
            req["csr"] = csr.public_bytes(serialization.Encoding.PEM).decode()
        status, body = fetch(upstream + self.path, json.dumps(req).encode())
        self.reply(status, body)
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), H)
tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
tls.load_cert_chain(cert, key)
server.socket = tls.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;

struct Tamperer(std::process::Child);

impl Drop for Tamperer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tampering_relay(site: &Site, mode: &str) -> (Tamperer, String) {
    let (cert, key) = enroll_support::localhost_tls(&site.ca, mode);
    let addr = ca_support::free_addr();
    let child = Command::new(python())
        .arg("-c")
        .arg(TAMPERING_RELAY)
        .arg(addr.port().to_string())
        .arg(site.ca.https_url())
        .arg(site.ca.file("root.crt"))
        .arg(&cert)
        .arg(&key)
        .arg(mode)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(addr);
    (
        Tamperer(child),
        format!("https://localhost:{}", addr.port()),
    )
}

#[test]
fn relay_that_alters_a_request_is_detected() {
    let site = Site::start();
    let fingerprint = site.fingerprint();

    // Changing what the endpoint asked for breaks the request's signature: refused upstream,
    // nothing issued, the token stays usable.
    let (_relay, url) = tampering_relay(&site, "subject");
    let token = site.cli_token("pos", "endpoint");
    let out = endpoint_enroll(&url, &token, &fingerprint, &site.ca.scratch("e1"));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(said.contains("bad_csr"), "{said}");
    assert_eq!(site.certificates_named("pos-0001"), 0);
    let out = endpoint_enroll(
        &site.ca.https_url(),
        &token,
        &fingerprint,
        &site.ca.scratch("e1"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Replacing the request with one for the relay's own key gets a certificate the endpoint
    // refuses: it is not for the key generated on the endpoint.
    let (_relay, url) = tampering_relay(&site, "swap");
    let state = site.ca.scratch("e2");
    let out = endpoint_enroll(
        &url,
        &site.cli_token("pos", "endpoint"),
        &fingerprint,
        &state,
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        said.contains("not for the key generated on this endpoint"),
        "{said}"
    );
    assert!(
        !state.join("identity/identity.pem").exists(),
        "nothing stored"
    );
}
