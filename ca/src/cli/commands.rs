//! The `herald-ca` commands: each parses nothing (clap did), calls the library, prints.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use herald_token_service::{NewTokenRequest, Refusal, TokenService};
use herald_wire::Group;

use crate::cli::args::{
    AdminCommand, AdminTokenCommand, AuditCommand, CertCommand, Cli, Command, FleetCommand,
    InitArgs, KeyArgs, RootCommand, RotateWhat, TokenCommand, UserCommand,
};
use crate::cli::Error;
use crate::core::admin::{
    admin_token_expiry, admin_token_json, admin_token_status, create_admin_token,
    list_admin_tokens, revoke_admin_token, Role,
};
use crate::core::audit::Checkpoint;
use crate::core::authority::{
    init, Authority, InitOptions, KeyAccess, RevokeTarget, ServiceKind, SetupError, ISSUER_ID,
};
use crate::core::config::{Config, DataLayout, REPO_PATH};
use crate::core::enrollment::{token_json, TokenAuthority};
use crate::core::keys::{KeyProtection, Passphrase, MIN_KDF_ITERATIONS};
use crate::model::encoding::pem_certificate;
use crate::model::revocation::{Reason, ReasonParseError};
use crate::model::serial::Serial;
use crate::model::time::{format_time, now_unix};
use crate::store::{read_tx, ListFilter, Store, StoreError};
use herald_token_client::sha256_hex;

/// Runs one command.
pub(crate) async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Init(args) => cmd_init(&args),
        Command::Serve { data, keys, listen } => {
            let authority = open_authority(&data.data_dir, &keys)?;
            let listen_addr = listen.listen.unwrap_or(authority.config().server.listen);
            let http_addr = listen.http_listen.or(authority.config().server.http_listen);
            let bound = crate::server::bind(listen_addr, http_addr).await?;
            print_serving(&bound, &authority);
            crate::server::serve(authority, bound).await?;
            Ok(())
        }
        Command::Quickstart {
            data,
            listen,
            http_listen,
            token_name,
        } => quickstart(&data.data_dir, listen, http_listen, &token_name).await,
        Command::Cert(cmd) => cmd_cert(cmd),
        Command::Crl {
            data,
            keys,
            out,
            pem,
        } => {
            let authority = open_authority(&data.data_dir, &keys)?;
            let crl = authority.publish_crl()?;
            let bytes = if pem {
                pem::encode_config(
                    &pem::Pem::new("X509 CRL", crl.der.clone()),
                    pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
                )
                .into_bytes()
            } else {
                crl.der.clone()
            };
            write_output(out.as_deref(), &bytes)?;
            eprintln!("CRL number {} written", crl.number);
            Ok(())
        }
        Command::Root(cmd) => cmd_root(cmd),
        Command::Rotate(args) => {
            if args.kdf_iterations < MIN_KDF_ITERATIONS {
                return Err(Error::Usage(format!(
                    "--kdf-iterations must be at least {MIN_KDF_ITERATIONS}"
                )));
            }
            let authority = open_authority(&args.data.data_dir, &args.keys)?;
            let names = if args.tls_names.is_empty() {
                default_tls_names(authority.config().server.listen)
            } else {
                args.tls_names.clone()
            };
            let kind = match args.what {
                RotateWhat::OcspSigner => ServiceKind::Ocsp,
                RotateWhat::Tls => ServiceKind::Tls(&names),
            };
            let cert = authority.rotate_service_cert(kind, args.kdf_iterations, "cli")?;
            say(&format!(
                "new {} certificate, serial {}, valid until {}; restart the server to use it",
                cert.profile,
                cert.serial,
                format_time(cert.not_after)
            ));
            Ok(())
        }
        Command::AdminToken(cmd) => cmd_admin_token(cmd),
        Command::Admin(AdminCommand::User(cmd)) => cmd_user(cmd),
        Command::Audit(cmd) => cmd_audit(cmd),
        Command::Token(cmd) => cmd_token(cmd),
        Command::Relay(args) => super::relay::run_relay(&args).await,
        Command::Fleet(cmd) => cmd_fleet(cmd),
    }
}

/// The passphrase as configured: flag file, environment, quickstart's file.
fn passphrase(data_dir: &Path, keys: &KeyArgs) -> Result<Option<Passphrase>, Error> {
    if let Some(file) = &keys.passphrase_file {
        return Ok(Some(Passphrase::from_file(file)?));
    }
    if let Ok(text) = std::env::var("HERALD_CA_PASSPHRASE") {
        return Ok(Some(Passphrase::new(&text)?));
    }
    let quickstart = DataLayout::new(data_dir).quickstart_passphrase();
    if quickstart.is_file() {
        return Ok(Some(Passphrase::from_file(&quickstart)?));
    }
    Ok(None)
}

fn open_authority(data_dir: &Path, keys: &KeyArgs) -> Result<Authority, Error> {
    let access = KeyAccess {
        passphrase: passphrase(data_dir, keys)?,
    };
    let (config, layout) = load_config(data_dir)?;
    let store = open_configured_store(&config, &layout)?;
    Ok(Authority::open(data_dir, &access, store)?)
}

/// The configuration of the CA in `data_dir`, refused when the folder holds no CA.
fn load_config(data_dir: &Path) -> Result<(Config, DataLayout), Error> {
    let layout = DataLayout::new(data_dir);
    if !layout.config().is_file() {
        return Err(Error::Config(format!(
            "{} holds no CA: run `herald-ca init --data-dir {}` first",
            data_dir.display(),
            data_dir.display()
        )));
    }
    let config = Config::load(&layout.config()).map_err(SetupError::from)?;
    Ok((config, layout))
}

/// Opens the store `config` names: `[store]`, with `HERALD_CA_STORE_URL` and
/// `HERALD_CA_STORE_SCHEMA` overriding its `url` and `schema`; without a URL, the SQLite file
/// in the data folder.
pub fn open_configured_store(
    config: &Config,
    layout: &DataLayout,
) -> Result<Arc<dyn Store>, StoreError> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut section = config.store.clone();
    if let Some(url) = env("HERALD_CA_STORE_URL") {
        section.url = Some(url);
    }
    if let Some(schema) = env("HERALD_CA_STORE_SCHEMA") {
        section.schema = Some(schema);
    }
    crate::store::open::open(&section, &layout.database())
}

/// The store of the CA in `data_dir`, as its configuration (and the environment) names it.
pub fn open_store(data_dir: &Path) -> Result<Arc<dyn Store>, Error> {
    let (config, layout) = load_config(data_dir)?;
    Ok(open_configured_store(&config, &layout)?)
}

fn cmd_init(args: &InitArgs) -> Result<(), Error> {
    let protection = if args.insecure_unencrypted_keys {
        tracing::warn!("writing CA keys WITHOUT encryption (--insecure-unencrypted-keys)");
        KeyProtection::InsecureUnencrypted
    } else {
        if args.kdf_iterations < MIN_KDF_ITERATIONS {
            return Err(Error::Usage(format!(
                "--kdf-iterations must be at least {MIN_KDF_ITERATIONS}"
            )));
        }
        let passphrase = match &args.keys.passphrase_file {
            Some(file) => Passphrase::from_file(file)?,
            None => match std::env::var("HERALD_CA_PASSPHRASE") {
                Ok(text) => Passphrase::new(&text)?,
                Err(_) => {
                    return Err(Error::Usage(
                        "the CA keys are encrypted: set HERALD_CA_PASSPHRASE or pass \
                         --passphrase-file (or, for throw-away set-ups only, \
                         --insecure-unencrypted-keys)"
                            .into(),
                    ))
                }
            },
        };
        KeyProtection::Encrypted {
            passphrase,
            iterations: args.kdf_iterations,
        }
    };
    let opts = init_options(
        &args.name,
        args.key_type,
        protection,
        args.listen,
        args.http_listen,
        args.public_url.clone(),
        args.tls_names.clone(),
    );
    let opts = InitOptions {
        name_domain: args.name_domain.to_ascii_lowercase(),
        ..opts
    };
    let summary = init(&args.data.data_dir, &opts, &open_configured_store)?;
    let api_url = args.api_url.clone().or_else(|| {
        (!args.listen.ip().is_unspecified()).then(|| format!("https://{}", args.listen))
    });
    if let Some(api_url) = api_url {
        update_config(&args.data.data_dir, |config| {
            config.enrollment.api_url = Some(api_url.trim_end_matches('/').to_owned());
        })?;
    }
    if args.json {
        println!("{}", to_json(&summary)?);
    } else {
        println!("CA created in {}", summary.data_dir);
        println!("root certificate SHA-256: {}", summary.root_fingerprint);
        println!("next: export the root key and remove it from this machine:");
        println!(
            "  herald-ca root export --data-dir {} --out /offline/root.key",
            summary.data_dir
        );
        println!(
            "  herald-ca root remove --data-dir {} --yes",
            summary.data_dir
        );
        println!("then: herald-ca serve --data-dir {}", summary.data_dir);
    }
    Ok(())
}

fn init_options(
    name: &str,
    key_type: crate::core::keys::CaKeyType,
    protection: KeyProtection,
    listen: SocketAddr,
    http_listen: SocketAddr,
    public_url: Option<String>,
    tls_names: Vec<String>,
) -> InitOptions {
    let tls_names = if tls_names.is_empty() {
        default_tls_names(listen)
    } else {
        tls_names
    };
    InitOptions {
        name: name.to_owned(),
        key_type,
        protection,
        listen,
        http_listen: Some(http_listen),
        public_url: public_url.unwrap_or_else(|| format!("http://{http_listen}")),
        tls_names,
        name_domain: crate::core::config::DEFAULT_NAME_DOMAIN.to_owned(),
    }
}

/// Loads `config.toml` of `data_dir`, changes it, writes it back.
fn update_config(data_dir: &Path, change: impl FnOnce(&mut Config)) -> Result<(), Error> {
    let path = DataLayout::new(data_dir).config();
    let mut config = Config::load(&path).map_err(SetupError::from)?;
    change(&mut config);
    config.save(&path).map_err(SetupError::from)?;
    Ok(())
}

/// localhost, 127.0.0.1 and the listener's own address when it is a specific one.
fn default_tls_names(listen: SocketAddr) -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let host = listen.ip().to_string();
    if !listen.ip().is_unspecified() && !names.contains(&host) {
        names.push(host);
    }
    names
}

async fn quickstart(
    data_dir: &Path,
    listen: SocketAddr,
    http_listen: SocketAddr,
    token_name: &str,
) -> Result<(), Error> {
    // Bind first, so that the URLs written into certificates name the real ports.
    let bound = crate::server::bind(listen, Some(http_listen)).await?;
    let layout = DataLayout::new(data_dir);
    let mut fresh_token = None;
    let mut fresh_password = None;
    if !layout.config().is_file() {
        std::fs::create_dir_all(data_dir).map_err(|source| Error::File {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let passphrase = Passphrase::generate()?;
        herald_files::write_private(
            &layout.quickstart_passphrase(),
            format!("{}\n", passphrase.expose()).as_bytes(),
        )
        .map_err(|source| Error::File {
            path: layout.quickstart_passphrase(),
            source,
        })?;
        let http = bound.http_addr().unwrap_or(http_listen);
        // The passphrase is 256 random bits: key stretching adds nothing, so the KDF cost is
        // the minimum and start-up stays instant.
        let opts = init_options(
            "Herald Quickstart",
            crate::core::keys::CaKeyType::EcdsaP256,
            KeyProtection::Encrypted {
                passphrase,
                iterations: MIN_KDF_ITERATIONS,
            },
            bound.https_addr(),
            http,
            None,
            Vec::new(),
        );
        init(data_dir, &opts, &open_configured_store)?;
        // Serve the demo repository to enrolled endpoints, from a folder beside the data
        // folder: never from the folder that holds the keys.
        let absolute = std::fs::canonicalize(data_dir).map_err(|source| Error::File {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let repository = DataLayout::new(&absolute)
            .quickstart_repository()
            .ok_or_else(|| Error::File {
                path: absolute.clone(),
                source: std::io::Error::other(
                    "the data folder needs a parent folder to hold the repository beside it",
                ),
            })?;
        update_config(data_dir, |config| {
            config.repository = Some(crate::core::config::RepositorySection {
                dir: repository,
                require_client_cert: true,
            });
            // Advertise the address bound.
            let https = bound.https_addr();
            config.enrollment.api_url =
                (!https.ip().is_unspecified()).then(|| format!("https://{https}"));
        })?;
        let store = open_store(data_dir)?;
        let (_, token) = create_admin_token(
            store.as_ref(),
            Role::Admin,
            "quickstart",
            None,
            "quickstart",
        )?;
        herald_files::write_private(
            &layout.quickstart_admin_token(),
            format!("{token}\n").as_bytes(),
        )
        .map_err(|source| Error::File {
            path: layout.quickstart_admin_token(),
            source,
        })?;
        fresh_token = Some(token);
        let (_, password) = crate::core::accounts::create_account(
            store.as_ref(),
            QUICKSTART_ACCOUNT,
            Role::Admin,
            true,
            "quickstart",
        )?;
        fresh_password = Some(password);
    }
    let authority = open_authority(
        data_dir,
        &KeyArgs {
            passphrase_file: None,
        },
    )?;
    print_serving(&bound, &authority);
    let enrollment = token_service(data_dir)?
        .create_token(
            &NewTokenRequest {
                name: token_name.to_owned(),
                ttl: Some("24h".to_owned()),
                ..NewTokenRequest::default()
            },
            "quickstart",
        )
        .map_err(refused)?;
    let admin_token = match fresh_token {
        Some(token) => token,
        None => std::fs::read_to_string(layout.quickstart_admin_token())
            .map(|t| t.trim().to_owned())
            .unwrap_or_else(|_| "(see the admin-token file)".to_owned()),
    };
    let repository = authority
        .config()
        .repository
        .as_ref()
        .map(|r| authority.layout().dir().join(&r.dir));
    let console_account = match fresh_password {
        Some(password) => format!(
            "{QUICKSTART_ACCOUNT}, one-time password: {password} (choose your own and enrol \
             TOTP at the first sign-in)"
        ),
        None => {
            let pending = read_tx(authority.store(), |tx| tx.account(QUICKSTART_ACCOUNT))?
                .is_some_and(|a| a.password_one_time);
            if pending {
                format!(
                    "{QUICKSTART_ACCOUNT} (one-time password printed at the first start; \
                     `herald-ca admin user passwd {QUICKSTART_ACCOUNT}` makes a new one)"
                )
            } else {
                QUICKSTART_ACCOUNT.to_owned()
            }
        }
    };
    print_quickstart(&QuickstartFacts {
        console_account: &console_account,
        dir: data_dir,
        repository: repository.as_deref(),
        https: bound.https_addr(),
        root_fingerprint: &sha256_hex(authority.root_der()),
        admin_token: &admin_token,
        enrollment_token: &enrollment.token,
        endpoint_name: &enrollment.name,
    });
    crate::server::serve(authority, bound).await?;
    Ok(())
}

/// The console account `quickstart` creates.
const QUICKSTART_ACCOUNT: &str = "admin";

/// What `quickstart` prints after starting.
struct QuickstartFacts<'a> {
    console_account: &'a str,
    dir: &'a Path,
    repository: Option<&'a Path>,
    https: SocketAddr,
    root_fingerprint: &'a str,
    admin_token: &'a str,
    enrollment_token: &'a str,
    endpoint_name: &'a str,
}

/// Prints the quickstart's facts (one `key: value` line each, for scripts) and the next
/// commands of the demo.
fn print_quickstart(f: &QuickstartFacts<'_>) {
    let dir = f.dir.display();
    let https = f.https;
    let lines = [
        format!("Quickstart data folder: {dir} (keys encrypted with the random passphrase in"),
        format!("{dir}/passphrase; for production use `herald-ca init` with your own)."),
        format!("root fingerprint: {}", f.root_fingerprint),
        format!("admin token: {}", f.admin_token),
        format!(
            "enrollment token: {} (endpoint {}, valid 24h)",
            f.enrollment_token, f.endpoint_name
        ),
        "Next (README \"Quickstart\" has every step):".to_owned(),
        match f.repository {
            Some(repo) => {
                let repo = repo.display();
                format!("  sign a release:  herald-sign init --repo {repo} ...; herald-sign release --repo {repo} --from ./my-app ...")
            }
            None => "  sign a release:  configure [repository] in config.toml first".to_owned(),
        },
        format!(
            "  enroll:          herald-update enroll --server https://{https} --token {} --root-fingerprint {} --state-dir ./endpoint/state",
            f.enrollment_token, f.root_fingerprint
        ),
        "  update once:     herald-update --config endpoint.toml apply".to_owned(),
        format!("  see the fleet:   herald-ca fleet list --data-dir {dir}"),
        format!("console: https://{https}/ui/"),
        format!("console account: {}", f.console_account),
        format!("Open https://{https}/ui/ in a browser (the CA's root is {dir}/root.crt)."),
        "Stop with Ctrl-C.".to_owned(),
    ];
    for line in lines {
        say(&line);
    }
}

fn cmd_admin_token(cmd: AdminTokenCommand) -> Result<(), Error> {
    match cmd {
        AdminTokenCommand::Create {
            data,
            role,
            label,
            expires,
            json,
        } => {
            let store = open_store(&data.data_dir)?;
            let role = Role::parse(&role).ok_or_else(|| Error::Usage(format!("role {role}")))?;
            let expires_at = expires
                .as_deref()
                .map(admin_token_expiry)
                .transpose()
                .map_err(Error::Usage)?;
            let (record, token) =
                create_admin_token(store.as_ref(), role, &label, expires_at, "cli")?;
            if json {
                let mut value = admin_token_json(&record, now_unix());
                value["token"] = serde_json::Value::String(token);
                say(&value.to_string());
            } else {
                say(&token);
                let until = expires_at.map_or_else(|| "no expiry".to_owned(), format_time);
                eprintln!(
                    "admin token {} ({}, {until}) created; it is shown only once",
                    record.id,
                    role.name()
                );
            }
            Ok(())
        }
        AdminTokenCommand::List { data, json } => {
            let store = open_store(&data.data_dir)?;
            let tokens = list_admin_tokens(store.as_ref())?;
            let now = now_unix();
            if json {
                let all: Vec<_> = tokens.iter().map(|t| admin_token_json(t, now)).collect();
                say(&serde_json::Value::Array(all).to_string());
                return Ok(());
            }
            say(&format!(
                "{:<18} {:<9} {:<8} {:<20} {:<20} LABEL",
                "ID", "ROLE", "STATUS", "EXPIRES", "LAST USED"
            ));
            for t in tokens {
                say(&format!(
                    "{:<18} {:<9} {:<8} {:<20} {:<20} {}",
                    t.id,
                    t.role,
                    admin_token_status(&t, now),
                    t.expires_at.map_or_else(|| "never".to_owned(), format_time),
                    t.last_used_at
                        .map_or_else(|| "never".to_owned(), format_time),
                    crate::model::text::escape_untrusted(&t.label)
                ));
            }
            Ok(())
        }
        AdminTokenCommand::Revoke { data, id } => {
            let store = open_store(&data.data_dir)?;
            if revoke_admin_token(store.as_ref(), &id, "cli")? {
                say(&format!("admin token {id} revoked"));
                Ok(())
            } else {
                Err(Error::NotFound(format!("active admin token {id}")))
            }
        }
    }
}

fn cmd_user(cmd: UserCommand) -> Result<(), Error> {
    use crate::core::accounts;
    match cmd {
        UserCommand::Add {
            data,
            name,
            role,
            no_mfa,
            json,
        } => {
            let store = open_store(&data.data_dir)?;
            let role = Role::parse(&role).ok_or_else(|| Error::Usage(format!("role {role}")))?;
            let (record, password) =
                accounts::create_account(store.as_ref(), &name, role, !no_mfa, "cli")?;
            if json {
                let mut value = accounts::account_json(&record, now_unix());
                value["one_time_password"] = serde_json::Value::String(password);
                say(&value.to_string());
            } else {
                say(&password);
                eprintln!(
                    "account {name} ({}) created; the one-time password above is shown only \
                     once: at its first sign-in the holder chooses a password{}",
                    role.name(),
                    if no_mfa { "" } else { " and enrols TOTP" }
                );
            }
            Ok(())
        }
        UserCommand::List { data, json } => {
            let store = open_store(&data.data_dir)?;
            let all = accounts::list_accounts(store.as_ref())?;
            let now = now_unix();
            if json {
                let all: Vec<_> = all.iter().map(|a| accounts::account_json(a, now)).collect();
                say(&serde_json::Value::Array(all).to_string());
                return Ok(());
            }
            say(&format!(
                "{:<24} {:<9} {:<13} {:<8} LAST SIGN-IN",
                "NAME", "ROLE", "STATUS", "MFA"
            ));
            for a in all {
                say(&format!(
                    "{:<24} {:<9} {:<13} {:<8} {}",
                    a.name,
                    a.role,
                    accounts::account_status(&a, now),
                    accounts::mfa_status(&a),
                    a.last_login_at
                        .map_or_else(|| "never".to_owned(), format_time),
                ));
            }
            Ok(())
        }
        UserCommand::Disable { data, name } => {
            let store = open_store(&data.data_dir)?;
            accounts::disable_account(store.as_ref(), &name, "cli")?;
            say(&format!("account {name} disabled"));
            Ok(())
        }
        UserCommand::ResetMfa { data, name } => {
            let store = open_store(&data.data_dir)?;
            accounts::reset_mfa(store.as_ref(), &name, "cli")?;
            say(&format!(
                "account {name}: second factor removed; it enrols again at its next sign-in"
            ));
            Ok(())
        }
        UserCommand::Passwd { data, name } => {
            let store = open_store(&data.data_dir)?;
            let password = accounts::reset_password(store.as_ref(), &name, "cli")?;
            say(&password);
            eprintln!(
                "account {name}: new one-time password above, shown only once; the holder \
                 chooses a password at the next sign-in"
            );
            Ok(())
        }
    }
}

fn cmd_audit(cmd: AuditCommand) -> Result<(), Error> {
    match cmd {
        AuditCommand::Verify {
            data,
            checkpoint,
            json,
        } => {
            let store = open_store(&data.data_dir)?;
            let report = match checkpoint {
                None => crate::core::audit::verify(store.as_ref())?,
                Some(path) => {
                    let checkpoint = read_checkpoint(&data.data_dir, &path)?;
                    crate::core::audit::verify_against(store.as_ref(), &checkpoint)?
                }
            };
            if json {
                say(&to_json(&report)?);
            } else if report.first_break.is_none() {
                say(&format!(
                    "audit log intact: {} entries, head {}",
                    report.entries, report.head
                ));
            }
            match report.first_break {
                None => Ok(()),
                Some(b) => Err(Error::AuditBroken {
                    seq: b.seq,
                    problem: b.problem,
                }),
            }
        }
        AuditCommand::Checkpoint { data, keys, out } => {
            let layout = DataLayout::new(&data.data_dir);
            let config = Config::load(&layout.config()).map_err(SetupError::from)?;
            let signer = crate::core::audit::AuditSigner::open(
                &layout,
                passphrase(&data.data_dir, &keys)?.as_ref(),
                config.ca.insecure_unencrypted_keys,
            )?;
            let store = open_store(&data.data_dir)?;
            let checkpoint =
                signer
                    .checkpoint(store.as_ref())?
                    .map_err(|b| Error::AuditBroken {
                        seq: b.seq,
                        problem: format!("{} (no checkpoint signed)", b.problem),
                    })?;
            let text = serde_json::to_string_pretty(&checkpoint)
                .map_err(|e| Error::Output(e.to_string()))?
                + "\n";
            write_output(out.as_deref(), text.as_bytes())?;
            eprintln!(
                "checkpoint of {} entries signed; keep it outside the CA",
                checkpoint.entries
            );
            Ok(())
        }
        AuditCommand::Show { data, from, limit } => {
            let store = open_store(&data.data_dir)?;
            crate::core::audit::entries(store.as_ref(), from, limit, &mut |e| {
                // Entries of other chains than 0 (servers sharing PostgreSQL) as CHAIN.SEQ.
                let position = if e.chain == 0 {
                    e.seq.to_string()
                } else {
                    format!("{}.{}", e.chain, e.seq)
                };
                let line = format!(
                    "{position:>6} {} {} {} {}",
                    format_time(e.entry.time),
                    e.entry.actor,
                    e.entry.action,
                    e.entry.details
                );
                say(&crate::model::text::escape_untrusted(&line));
            })?;
            Ok(())
        }
        AuditCommand::Export { data, from, limit } => {
            let store = open_store(&data.data_dir)?;
            let mut failed = None;
            crate::core::audit::entries(
                store.as_ref(),
                from,
                limit.unwrap_or(usize::MAX),
                &mut |e| match to_json(&e) {
                    Ok(line) => say(&line),
                    Err(e) => failed = failed.take().or(Some(e)),
                },
            )?;
            failed.map_or(Ok(()), Err)
        }
    }
}

/// Reads a checkpoint file and checks its signature against this CA's audit key.
fn read_checkpoint(data_dir: &Path, path: &Path) -> Result<Checkpoint, Error> {
    let problem = |problem: String| Error::AuditCheckpoint {
        path: path.to_path_buf(),
        problem,
    };
    let text = std::fs::read(path).map_err(|source| Error::File {
        path: path.to_path_buf(),
        source,
    })?;
    let checkpoint: Checkpoint =
        serde_json::from_slice(&text).map_err(|e| problem(format!("not a checkpoint: {e}")))?;
    let trusted =
        crate::core::audit::read_public_key(&DataLayout::new(data_dir)).map_err(problem)?;
    let trusted = trusted.ok_or_else(|| {
        problem("this CA has no audit.pub (run `herald-ca audit checkpoint` once)".to_owned())
    })?;
    checkpoint
        .check_signature(Some(&trusted))
        .map_err(problem)?;
    Ok(checkpoint)
}

/// A group named on the command line, checked.
fn group_arg(text: &str) -> Result<Group, Error> {
    Group::new(text).map_err(|e| Error::Usage(e.to_string()))
}

fn cmd_fleet(cmd: FleetCommand) -> Result<(), Error> {
    let (data, name, group, json) = match cmd {
        FleetCommand::List { data, group, json } => (data, None, group, json),
        FleetCommand::Show { data, name, json } => (data, Some(name), None, json),
        FleetCommand::SetGroup {
            data,
            name,
            group,
            json,
        } => return cmd_set_group(&data.data_dir, &name, &group, json),
        FleetCommand::Releases { data, json } => {
            let store = open_store(&data.data_dir)?;
            let rows = crate::core::releases::releases(store.as_ref())?;
            if json {
                say(&to_json(&serde_json::json!({ "releases": rows }))?);
            } else {
                print!("{}", super::fleet::releases_table(&rows));
            }
            return Ok(());
        }
    };
    let group = group.as_deref().map(group_arg).transpose()?;
    let store = open_store(&data.data_dir)?;
    let entries =
        crate::core::fleet::fleet_in(store.as_ref(), name.as_deref(), group.as_ref(), now_unix())?;
    match name {
        None if json => say(&serde_json::json!({ "endpoints": entries }).to_string()),
        None => print!("{}", super::fleet::table(&entries)),
        Some(name) => {
            let entry = entries
                .first()
                .ok_or_else(|| Error::NoEndpoint(name.clone()))?;
            if json {
                say(&serde_json::to_string(entry).map_err(|e| Error::Output(e.to_string()))?);
            } else {
                print!("{}", super::fleet::details(entry));
            }
        }
    }
    Ok(())
}

/// `fleet set-group NAME GROUP`.
fn cmd_set_group(data_dir: &Path, name: &str, group: &str, json: bool) -> Result<(), Error> {
    use crate::core::groups::SetGroupError;
    let group = group_arg(group)?;
    let (config, layout) = load_config(data_dir)?;
    let store = open_configured_store(&config, &layout)?;
    let change =
        crate::core::groups::set_group(store.as_ref(), &config.profiles, name, &group, "cli")
            .map_err(|e| match e {
                SetGroupError::NoEndpoint(name) => Error::NoEndpoint(name),
                SetGroupError::Store(e) => Error::Store(e),
                other => Error::Refused(other.to_string()),
            })?;
    if json {
        say(&to_json(&change)?);
    } else if change.previous == change.group {
        say(&format!(
            "{} is already in group {}",
            change.name, change.group
        ));
    } else {
        say(&format!(
            "{} moved from group {} to {}; its certificate (now {}) carries the new group from \
             its next renewal",
            change.name, change.previous, change.group, change.certificate_group
        ));
    }
    Ok(())
}

/// Prints what a starting server serves. Written with `say`: a closed standard output (a
/// supervisor that stopped reading) must not stop the server.
fn print_serving(bound: &crate::server::Bound, authority: &Authority) {
    let days_left = authority.ocsp_signer_expires_in() / 86_400;
    if days_left < 30 {
        tracing::warn!(
            days_left,
            "the OCSP signing certificate expires soon: run `herald-ca rotate ocsp-signer`"
        );
    }
    let dir = authority.layout().dir().display();
    let https = bound.https_addr();
    let mut lines = vec![match bound.http_addr() {
        Some(http) => format!("Herald CA: OCSP, CRL and health on http://{http}"),
        None => format!("Herald CA: serving on https://{https}"),
    }];
    lines.push(format!(
        "  admin API, OCSP, CRL over HTTPS: https://{https} (CA: {dir}/root.crt)"
    ));
    lines.push(format!(
        "  health:  curl --cacert {dir}/root.crt https://{https}/healthz"
    ));
    lines.push(format!("  OCSP:    {}", authority.config().ocsp_url()));
    lines.push(format!(
        "  CRL:     {}",
        authority.config().crl_url(ISSUER_ID)
    ));
    if let Some(repo) = &authority.config().repository {
        let who = if repo.require_client_cert {
            "enrolled endpoints (client certificate required)"
        } else {
            "anyone"
        };
        lines.push(format!(
            "  repository: {} at https://{https}{}/ for {who}",
            authority.layout().dir().join(&repo.dir).display(),
            REPO_PATH
        ));
    }
    for line in lines {
        say(&line);
    }
}

/// `value` as compact JSON; a value that cannot be serialised is an error, never empty output.
fn to_json(value: &impl serde::Serialize) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|e| Error::Output(e.to_string()))
}

/// Writes a line to standard output, ignoring a closed or full pipe.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The token service over the store of `data_dir` (no CA key needed).
fn token_service(data_dir: &Path) -> Result<TokenService, Error> {
    let (config, layout) = load_config(data_dir)?;
    let store = open_configured_store(&config, &layout)?;
    Ok(TokenService::new(Arc::new(TokenAuthority::tokens_only(
        store, &config,
    ))))
}

fn refused(r: Refusal) -> Error {
    Error::Refused(r.to_string())
}

fn cmd_token(cmd: TokenCommand) -> Result<(), Error> {
    match cmd {
        TokenCommand::Create {
            data,
            name,
            ttl,
            profile,
            group,
            json,
        } => {
            let group = group_arg(&group)?;
            let service = token_service(&data.data_dir)?;
            let request = NewTokenRequest {
                name,
                ttl: Some(ttl),
                profile: Some(profile),
                group: Some(group.to_string()),
            };
            let created = service.create_token(&request, "cli").map_err(refused)?;
            if json {
                say(&to_json(&created)?);
            } else {
                say(&created.token);
                eprintln!(
                    "token {} for {} (profile {}, group {}), valid until {}; it is shown only once",
                    created.id, created.name, created.profile, created.group, created.expires_at
                );
            }
            Ok(())
        }
        TokenCommand::List { data, json } => {
            let tokens = token_service(&data.data_dir)?
                .list_tokens()
                .map_err(refused)?;
            if json {
                let all: Vec<_> = tokens.iter().map(|(t, s)| token_json(t, *s)).collect();
                say(&to_json(&all)?);
                return Ok(());
            }
            say(&format!(
                "{:<18} {:<24} {:<12} {:<16} {:<9} {:<20} SERIAL",
                "ID", "NAME", "PROFILE", "GROUP", "STATUS", "EXPIRES"
            ));
            for (t, status) in tokens {
                say(&format!(
                    "{:<18} {:<24} {:<12} {:<16} {:<9} {:<20} {}",
                    t.id,
                    t.name,
                    t.profile,
                    t.group,
                    status.as_str(),
                    format_time(t.expires_at),
                    t.serial
                        .as_ref()
                        .map_or_else(|| "-".to_owned(), Serial::to_hex)
                ));
            }
            Ok(())
        }
        TokenCommand::Revoke { data, id } => {
            let service = token_service(&data.data_dir)?;
            let revoked = service
                .authority()
                .revoke_token(&id, "cli")
                .map_err(|e| refused(e.into()))?;
            if revoked {
                say(&format!("token {id} revoked"));
                Ok(())
            } else {
                Err(Error::NotFound(format!("pending token {id}")))
            }
        }
    }
}

fn cmd_cert(cmd: CertCommand) -> Result<(), Error> {
    match cmd {
        CertCommand::List {
            data,
            name,
            revoked,
            limit,
            json,
        } => {
            let store = open_store(&data.data_dir)?;
            let filter = ListFilter {
                name,
                revoked: revoked.then_some(true),
                limit,
            };
            let certs = read_tx(store.as_ref(), |tx| tx.list_certificates(&filter))?;
            if json {
                println!("{}", to_json(&certs)?);
                return Ok(());
            }
            println!(
                "{:<34} {:<24} {:<12} {:<20} STATUS",
                "SERIAL", "NAME", "PROFILE", "NOT AFTER"
            );
            for c in certs {
                let status = match c.revocation {
                    Some(r) => format!("revoked ({})", r.reason),
                    None => "valid".to_owned(),
                };
                println!(
                    "{:<34} {:<24} {:<12} {:<20} {status}",
                    c.serial,
                    c.name,
                    c.profile,
                    format_time(c.not_after)
                );
            }
            Ok(())
        }
        CertCommand::Show {
            data,
            serial,
            pem,
            json,
        } => {
            let store = open_store(&data.data_dir)?;
            let parsed = Serial::from_hex(&serial).map_err(|e| Error::Usage(e.to_string()))?;
            let cert = read_tx(store.as_ref(), |tx| tx.certificate(&parsed))?
                .ok_or_else(|| Error::NotFound(format!("serial {serial}")))?;
            if pem {
                print!("{}", pem_certificate(&cert.der));
            } else if json {
                println!("{}", to_json(&cert)?);
            } else {
                println!("serial:     {}", cert.serial);
                println!("name:       {}", cert.name);
                println!("profile:    {}", cert.profile);
                println!("not before: {}", format_time(cert.not_before));
                println!("not after:  {}", format_time(cert.not_after));
                match cert.revocation {
                    Some(r) => println!(
                        "status:     revoked at {} ({})",
                        format_time(r.revoked_at),
                        r.reason
                    ),
                    None => println!("status:     valid"),
                }
            }
            Ok(())
        }
        CertCommand::Issue {
            data,
            keys,
            csr,
            name,
            profile,
            out,
        } => {
            let authority = open_authority(&data.data_dir, &keys)?;
            let input = std::fs::read(&csr).map_err(|source| Error::File {
                path: csr.clone(),
                source,
            })?;
            let issued = authority.issue(&input, &name, &profile, "cli")?;
            write_output(out.as_deref(), issued.certificate_pem.as_bytes())?;
            eprintln!("issued serial {} for {name}", issued.record.serial);
            Ok(())
        }
        CertCommand::Revoke {
            data,
            keys,
            what,
            reason,
            json,
        } => {
            let reason: Reason = reason
                .parse()
                .map_err(|e: ReasonParseError| Error::Usage(e.to_string()))?;
            let authority = open_authority(&data.data_dir, &keys)?;
            let target = RevokeTarget::parse(&authority, &what)?;
            let revoked = authority.revoke(&target, reason, "cli")?;
            if json {
                println!("{}", to_json(&revoked)?);
            } else if revoked.is_empty() {
                println!("{what}: already revoked");
            } else {
                for c in &revoked {
                    println!("revoked {} ({}) reason {reason}", c.serial, c.name);
                }
            }
            Ok(())
        }
    }
}

fn cmd_root(cmd: RootCommand) -> Result<(), Error> {
    match cmd {
        RootCommand::Export { data, out } => {
            let key = DataLayout::new(&data.data_dir).key("root");
            let bytes = std::fs::read(&key).map_err(|source| Error::File {
                path: key.clone(),
                source,
            })?;
            if out.exists() {
                return Err(Error::Usage(format!(
                    "{} exists; not overwriting",
                    out.display()
                )));
            }
            herald_files::write_private(&out, &bytes).map_err(|source| Error::File {
                path: out.clone(),
                source,
            })?;
            println!(
                "root key written to {} (as stored: encrypted unless insecure mode)",
                out.display()
            );
            Ok(())
        }
        RootCommand::Remove { data, yes } => {
            if !yes {
                return Err(Error::Usage(
                    "removing the root key is final: export it first, then pass --yes".into(),
                ));
            }
            let key = DataLayout::new(&data.data_dir).key("root");
            std::fs::remove_file(&key).map_err(|source| Error::File {
                path: key.clone(),
                source,
            })?;
            let store = open_store(&data.data_dir)?;
            crate::store::write_tx(store.as_ref(), |tx| {
                tx.append_audit(&crate::model::audit::NewAuditEntry::now(
                    "cli",
                    "root-key-remove",
                    serde_json::json!({}),
                ))
            })?;
            println!("root key removed from {}", data.data_dir.display());
            Ok(())
        }
    }
}

fn write_output(out: Option<&Path>, bytes: &[u8]) -> Result<(), Error> {
    match out {
        Some(path) => std::fs::write(path, bytes).map_err(|source| Error::File {
            path: PathBuf::from(path),
            source,
        }),
        None => {
            use std::io::Write;
            std::io::stdout()
                .write_all(bytes)
                .map_err(|source| Error::File {
                    path: PathBuf::from("<stdout>"),
                    source,
                })
        }
    }
}
