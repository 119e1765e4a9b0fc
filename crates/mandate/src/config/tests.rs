//! The config loader's tests: precedence, ranges, refused keys and values.

use super::*;

#[test]
fn the_readme_states_the_token_lifetime_range_enforced() {
    let readme = include_str!("../../../../README.md");
    assert!(
        readme.contains("| task-token lifetime (30–3600 s) |"),
        "README must state the range of tokens.max_lifetime_seconds"
    );
    for (seconds, ok) in [(29, false), (30, true), (3_600, true), (3_601, false)] {
        let (_dir, flags) = file(&format!("[tokens]\nmax_lifetime_seconds = {seconds}\n"));
        assert_eq!(
            Config::load(&flags, &BTreeMap::new()).is_ok(),
            ok,
            "{seconds}"
        );
    }
}

pub(super) fn file(text: &str) -> (tempfile::TempDir, Overrides) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mandate.toml");
    std::fs::write(&path, text).unwrap();
    let flags = Overrides {
        config: Some(path),
        ..Default::default()
    };
    (dir, flags)
}

#[test]
fn no_flags_means_the_embedded_default() {
    let c = Config::load(&Overrides::default(), &BTreeMap::new()).unwrap();
    assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    assert_eq!(c.database_url, None);
}

#[test]
fn flags_beat_environment_beat_file() {
    let (_dir, mut flags) =
        file("listen = \"127.0.0.1:1\"\ndata_dir = \"/from/file\"\n[log]\nlevel = \"debug\"\n");
    let env = BTreeMap::from([
        ("MANDATE_LISTEN", "127.0.0.1:2"),
        ("MANDATE_DATABASE_URL", "postgres://db/m"),
    ]);
    let c = Config::load(&flags, &env).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:2");
    assert_eq!(c.data_dir, PathBuf::from("/from/file"));
    assert_eq!(c.database_url.as_deref(), Some("postgres://db/m"));
    assert_eq!(c.log_level, "debug");
    flags.listen = Some("127.0.0.1:3".into());
    assert_eq!(
        Config::load(&flags, &env).unwrap().listen.to_string(),
        "127.0.0.1:3"
    );
}

#[test]
fn trusted_proxies_come_from_the_file_or_the_environment_and_bad_ones_are_named() {
    let c = Config::load(&Overrides::default(), &BTreeMap::new()).unwrap();
    assert!(c.trusted_proxies.is_empty());
    let (_dir, flags) = file("trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n");
    let c = Config::load(&flags, &BTreeMap::new()).unwrap();
    assert_eq!(
        c.trusted_proxies,
        crate::forwarded::TrustedProxies::parse(&["10.0.0.0/8".into(), "::1".into()]).unwrap()
    );
    let env = BTreeMap::from([("MANDATE_TRUSTED_PROXIES", "192.168.0.0/16, 127.0.0.1")]);
    let c = Config::load(&flags, &env).unwrap();
    assert_eq!(
        c.trusted_proxies,
        crate::forwarded::TrustedProxies::parse(&["192.168.0.0/16".into(), "127.0.0.1".into()])
            .unwrap()
    );
    let (_dir, flags) = file("trusted_proxies = [\"10.0.0.0/40\"]\n");
    let err = Config::load(&flags, &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("trusted_proxies") && err.contains("10.0.0.0/40"),
        "{err}"
    );
    let env = BTreeMap::from([("MANDATE_TRUSTED_PROXIES", "proxy.internal")]);
    let err = Config::load(&Overrides::default(), &env)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("MANDATE_TRUSTED_PROXIES") && err.contains("proxy.internal"),
        "{err}"
    );
}

#[test]
fn http_client_metadata_documents_are_off_unless_asked_for() {
    let c = Config::load(&Overrides::default(), &BTreeMap::new()).unwrap();
    assert!(!c.tokens.dangerous_allow_http_client_metadata);
    let (_dir, flags) = file("[tokens]\ndangerous_allow_http_client_metadata = true\n");
    let c = Config::load(&flags, &BTreeMap::new()).unwrap();
    assert!(c.tokens.dangerous_allow_http_client_metadata);
    let (_dir, flags) = file("[tokens]\nallow_http_client_metadata = true\n");
    assert!(Config::load(&flags, &BTreeMap::new()).is_err());
}

#[test]
fn unknown_keys_are_rejected_with_their_path() {
    let (_dir, flags) = file("[log]\nlevl = \"debug\"\n");
    let err = Config::load(&flags, &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("key `log.levl`"), "{err}");
    let (_dir, flags) = file("[mandates]\nexpiry_sweep_seconds = \"soon\"\n");
    let err = Config::load(&flags, &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("mandates.expiry_sweep_seconds"), "{err}");
    let (_dir, flags) = file("listen = [\n");
    assert!(matches!(
        Config::load(&flags, &BTreeMap::new()),
        Err(ConfigError::Syntax { .. })
    ));
}

#[test]
fn console_oidc_from_file_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret-from-file\n").unwrap();
    let (_d, flags) = file(&format!(
        "[console.oidc]\nissuer = \"https://idp.example\"\nclient_id = \"mandate\"\nclient_secret_file = {:?}\ndisplay_name = \"Example SSO\"\n",
        secret.display().to_string()
    ));
    let c = Config::load(&flags, &BTreeMap::new()).unwrap();
    let o = c.console_oidc.unwrap();
    assert_eq!(o.issuer, "https://idp.example");
    assert_eq!(o.client_secret.expose(), "s3cret-from-file");
    assert_eq!(o.scopes, ["openid", "email"]);
    assert_eq!(
        (o.tenant.as_str(), o.email_claim.as_str()),
        ("default", "email")
    );
    assert_eq!(o.client_auth, OidcClientAuth::SecretBasic);
    assert!(!o.dangerous_allow_insecure_loopback);
    assert!(
        !format!("{o:?}").contains("s3cret"),
        "the secret never prints"
    );

    let env = BTreeMap::from([
        ("MANDATE_CONSOLE_OIDC_ISSUER", "https://other.example"),
        ("MANDATE_CONSOLE_OIDC_CLIENT_SECRET", "from-env"),
    ]);
    let o = Config::load(&flags, &env).unwrap().console_oidc.unwrap();
    assert_eq!(o.issuer, "https://other.example");
    assert_eq!(o.client_secret.expose(), "from-env");

    let (_d, flags) = file("[console.oidc]\nissuer = \"https://idp.example\"\nclient_id = \"m\"\n");
    let err = Config::load(&flags, &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("client_secret_file"), "{err}");
    let (_d, flags) =
        file("[console.oidc]\nissuer = \"https://idp.example\"\nclient_secret = \"inline\"\n");
    let err = Config::load(&flags, &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("console.oidc.client_secret"), "{err}");
    assert!(
        Config::load(&Overrides::default(), &BTreeMap::new())
            .unwrap()
            .console_oidc
            .is_none()
    );
}

#[test]
fn bad_values_name_their_origin() {
    let env = BTreeMap::from([("MANDATE_LISTEN", "localhost")]);
    let err = Config::load(&Overrides::default(), &env)
        .unwrap_err()
        .to_string();
    assert!(err.contains("MANDATE_LISTEN"), "{err}");
    let env = BTreeMap::from([("MANDATE_DATABASE_URL", "mysql://x")]);
    let err = Config::load(&Overrides::default(), &env)
        .unwrap_err()
        .to_string();
    assert!(err.contains("MANDATE_DATABASE_URL"), "{err}");
    assert!(!err.contains("mysql://x"), "URLs may hold passwords: {err}");
}

#[test]
fn the_shutdown_grace_period_defaults_to_a_minute_and_is_bounded() {
    let c = Config::load(&Overrides::default(), &BTreeMap::new()).unwrap();
    assert_eq!(c.shutdown_grace_seconds, 60);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mandate.toml");
    std::fs::write(&path, "shutdown_grace_seconds = 5\n").unwrap();
    let flags = Overrides {
        config: Some(path.clone()),
        ..Overrides::default()
    };
    let c = Config::load(&flags, &BTreeMap::new()).unwrap();
    assert_eq!(c.shutdown_grace_seconds, 5);
    std::fs::write(&path, "shutdown_grace_seconds = 0\n").unwrap();
    let err = Config::load(&flags, &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("shutdown_grace_seconds"), "{err}");
}

#[test]
fn the_database_url_may_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("database-url");
    std::fs::write(&path, "postgres://u:secret@db/m\n").unwrap();
    let path_text = path.display().to_string();
    let env = BTreeMap::from([("MANDATE_DATABASE_URL_FILE", path_text.as_str())]);
    let c = Config::load(&Overrides::default(), &env).unwrap();
    assert_eq!(c.database_url.as_deref(), Some("postgres://u:secret@db/m"));
    // The variable itself wins over the file.
    let env = BTreeMap::from([
        ("MANDATE_DATABASE_URL_FILE", path_text.as_str()),
        ("MANDATE_DATABASE_URL", "postgres://db/other"),
    ]);
    let c = Config::load(&Overrides::default(), &env).unwrap();
    assert_eq!(c.database_url.as_deref(), Some("postgres://db/other"));
    // A missing file is an error naming the variable, never a silent SQLite start.
    let env = BTreeMap::from([("MANDATE_DATABASE_URL_FILE", "/nonexistent/database-url")]);
    let err = Config::load(&Overrides::default(), &env)
        .unwrap_err()
        .to_string();
    assert!(err.contains("MANDATE_DATABASE_URL_FILE"), "{err}");
    // A bad scheme names the file's variable and not the URL.
    std::fs::write(&path, "mysql://u:secret@db/m").unwrap();
    let env = BTreeMap::from([("MANDATE_DATABASE_URL_FILE", path_text.as_str())]);
    let err = Config::load(&Overrides::default(), &env)
        .unwrap_err()
        .to_string();
    assert!(err.contains("MANDATE_DATABASE_URL_FILE"), "{err}");
    assert!(!err.contains("secret"), "{err}");
}

#[test]
fn tracing_is_off_by_default_and_checked_when_on() {
    let (_dir, flags) = file("");
    assert_eq!(
        Config::load(&flags, &BTreeMap::new()).unwrap().tracing,
        None
    );
    let (_dir, flags) = file("[tracing]\nendpoint = \"http://127.0.0.1:4318/v1/traces\"\n");
    assert_eq!(
        Config::load(&flags, &BTreeMap::new()).unwrap().tracing,
        None,
        "an endpoint alone does not turn tracing on"
    );
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("otel-key");
    std::fs::write(&key_file, "s3cret-from-file\n").unwrap();
    let (_dir, flags) = file(&format!(
        "[tracing]\nenabled = true\nendpoint = \"http://127.0.0.1:4318/v1/traces\"\n\
         sampling_ratio = 0.25\nservice_name = \"gw-1\"\n\
         headers = {{ \"x-tenant\" = \"blue\" }}\n\
         header_files = {{ \"x-api-key\" = \"{}\" }}\n",
        key_file.display()
    ));
    let t = Config::load(&flags, &BTreeMap::new())
        .unwrap()
        .tracing
        .unwrap();
    assert_eq!(t.endpoint, "http://127.0.0.1:4318/v1/traces");
    assert_eq!(t.sampling_ratio.get(), 0.25);
    assert_eq!(t.service_name, "gw-1");
    let key = t.headers.iter().find(|(n, _)| n == "x-api-key").unwrap();
    assert_eq!(key.1.expose(), "s3cret-from-file");
    assert!(
        !format!("{t:?}").contains("s3cret"),
        "a header value was printed"
    );

    for (body, key) in [
        ("enabled = true\n", "tracing.endpoint"),
        (
            "enabled = true\nendpoint = \"ftp://x\"\n",
            "tracing.endpoint",
        ),
        (
            "enabled = true\nendpoint = \"http://x\"\nsampling_ratio = 1.5\n",
            "tracing.sampling_ratio",
        ),
        (
            "enabled = true\nendpoint = \"http://x\"\nsampling_ratio = -0.1\n",
            "tracing.sampling_ratio",
        ),
        (
            "enabled = true\nendpoint = \"http://x\"\nsampling_ratio = nan\n",
            "tracing.sampling_ratio",
        ),
        (
            "enabled = true\nendpoint = \"http://x\"\nservice_name = \"\"\n",
            "tracing.service_name",
        ),
        (
            "enabled = true\nendpoint = \"http://x\"\nheaders = { \"bad name\" = \"v\" }\n",
            "tracing.headers",
        ),
        (
            "enabled = true\nendpoint = \"http://x\"\nheader_files = { \"k\" = \"/nonexistent/otel\" }\n",
            "tracing.header_files",
        ),
        (
            "enabled = true\nendpoint = \"http://x\"\nsampler = \"always\"\n",
            "tracing.sampler",
        ),
    ] {
        let (_dir, flags) = file(&format!("[tracing]\n{body}"));
        let err = Config::load(&flags, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{body}: {err}");
    }
    // A value that cannot be a header is refused without being shown.
    let (_dir, flags) = file(
        "[tracing]\nenabled = true\nendpoint = \"http://x\"\nheaders = { \"x-api-key\" = \"sec\\r\\nret\" }\n",
    );
    let err = Config::load(&flags, &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("x-api-key") && !err.contains("sec"), "{err}");
}
