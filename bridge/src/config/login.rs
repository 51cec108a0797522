//! How the bridge logs in to NATS and whether it uses TLS: the flags and keys, the secrets read
//! from files (never shown), and the checks at start.

use std::path::{Path, PathBuf};

use super::{Args, ConfigError, File, invalid};

/// A secret read from a file: `{:?}` shows no more than that it is there, and nothing else
/// prints it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the NATS client only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(hidden)")
    }
}

/// How the bridge logs in to NATS, its secret read and checked at start.
#[derive(Debug, Clone)]
pub enum Login {
    /// Without credentials.
    Anonymous,
    /// A `.creds` file: a user JWT and its nkey seed.
    Creds {
        /// `--nats-creds`.
        file: PathBuf,
        /// Its content.
        creds: Secret,
    },
    /// An nkey seed.
    Nkey {
        /// `--nats-nkey`.
        file: PathBuf,
        /// The seed.
        seed: Secret,
        /// Its public key, the name the server knows the bridge by.
        public: String,
    },
    /// A user and password.
    User {
        /// `--nats-user`.
        user: String,
        /// `--nats-password-file`.
        file: PathBuf,
        /// The password.
        password: Secret,
    },
    /// A token.
    Token {
        /// `--nats-token-file`.
        file: PathBuf,
        /// The token.
        token: Secret,
    },
}

impl Login {
    /// Who the bridge says it is, for the log and its errors: flags, files and public names,
    /// never a secret.
    pub fn describe(&self) -> String {
        match self {
            Login::Anonymous => "no credentials".into(),
            Login::Creds { file, .. } => format!("the credentials in --nats-creds {}", file.display()),
            Login::Nkey { file, public, .. } => {
                format!("nkey {public} (its seed in --nats-nkey {})", file.display())
            }
            Login::User { user, file, .. } => {
                format!(
                    "user {user:?} (--nats-user, its password in --nats-password-file {})",
                    file.display()
                )
            }
            Login::Token { file, .. } => format!("the token in --nats-token-file {}", file.display()),
        }
    }
}

/// TLS to NATS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// `--tls-ca`: the only CAs trusted for the server's certificate (the system's otherwise).
    pub ca: Option<PathBuf>,
    /// `--tls-cert` and `--tls-key`.
    pub client: Option<(PathBuf, PathBuf)>,
    /// Never in clear.
    pub required: bool,
}

impl Args {
    /// The login: the command line's login flags if it has any, else the file's keys; at most
    /// one way, its secret read and checked.
    pub(super) fn login(&self, file: &File, warnings: &mut Vec<String>) -> Result<Login, ConfigError> {
        let flags = (
            self.nats_creds.clone(),
            self.nats_nkey.clone(),
            self.nats_user.clone(),
            self.nats_password_file.clone(),
            self.nats_token_file.clone(),
        );
        let (creds, nkey, user, password_file, token) = if flags.0.is_some()
            || flags.1.is_some()
            || flags.2.is_some()
            || flags.3.is_some()
            || flags.4.is_some()
        {
            flags
        } else {
            (
                file.nats_creds.clone(),
                file.nats_nkey.clone(),
                file.nats_user.clone(),
                file.nats_password_file.clone(),
                file.nats_token_file.clone(),
            )
        };
        let given: Vec<&str> = [
            (creds.is_some(), "--nats-creds"),
            (nkey.is_some(), "--nats-nkey"),
            (user.is_some() || password_file.is_some(), "--nats-user"),
            (token.is_some(), "--nats-token-file"),
        ]
        .into_iter()
        .filter_map(|(given, flag)| given.then_some(flag))
        .collect();
        if given.len() > 1 {
            return Err(invalid(
                "--nats-creds/--nats-nkey/--nats-user/--nats-token-file",
                format!("{} given: log in to NATS one way only", given.join(" and ")),
            ));
        }
        if let Some(file) = creds {
            return creds_login(file, warnings);
        }
        if let Some(file) = nkey {
            return nkey_login(file, warnings);
        }
        if let Some(login) = user_login(user, password_file, warnings)? {
            return Ok(login);
        }
        if let Some(file) = token {
            let token = read_secret("--nats-token-file", &file, "the NATS token", warnings)?;
            return Ok(Login::Token { file, token: Secret(token) });
        }
        Ok(Login::Anonymous)
    }

    /// TLS: each key from the flag, else the file; the PEM files read and checked.
    pub(super) fn tls(&self, file: &File, warnings: &mut Vec<String>) -> Result<Tls, ConfigError> {
        let ca = self.tls_ca.clone().or_else(|| file.tls_ca.clone());
        let cert = self.tls_cert.clone().or_else(|| file.tls_cert.clone());
        let key = self.tls_key.clone().or_else(|| file.tls_key.clone());
        if let Some(ca) = &ca {
            certificates("--tls-ca", ca, "the CA certificate(s) that signed the server's certificate")?;
        }
        let client = match (cert, key) {
            (Some(cert), Some(key)) => {
                certificates("--tls-cert", &cert, "the bridge's client certificate")?;
                private_key(&key, warnings)?;
                Some((cert, key))
            }
            (Some(_), None) => {
                return Err(invalid(
                    "--tls-cert",
                    "needs --tls-key FILE: the client certificate's private key",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "--tls-key",
                    "needs --tls-cert FILE: the client certificate of that key",
                ));
            }
            (None, None) => None,
        };
        let required = self.tls_required || file.tls_required || ca.is_some() || client.is_some();
        Ok(Tls { ca, client, required })
    }
}

/// Whether a NATS URL names this machine.
pub(super) fn loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    ["127.0.0.1", "localhost", "[::1]"].iter().any(|name| {
        host.strip_prefix(name)
            .is_some_and(|after| after.is_empty() || after.starts_with(':') || after.starts_with('/'))
    })
}

/// A file's secret, surrounding white space trimmed (a `.creds` file is read as it is: its
/// last line must end); a warning when every user may read it.
fn read_secret(
    setting: &'static str,
    path: &Path,
    what: &str,
    warnings: &mut Vec<String>,
) -> Result<String, ConfigError> {
    use std::os::unix::fs::MetadataExt;
    let text = std::fs::read_to_string(path).map_err(|e| {
        invalid(
            setting,
            format!("cannot read {}: {e}; give a file this user can read, holding {what}", path.display()),
        )
    })?;
    if text.trim().is_empty() {
        return Err(invalid(setting, format!("{} is empty: it must hold {what}", path.display())));
    }
    if let Ok(meta) = std::fs::metadata(path)
        && meta.mode() & 0o004 != 0
    {
        warnings.push(format!(
            "{setting} {}: every user of this machine may read this secret (mode {:03o}): chmod o-r it",
            path.display(),
            meta.mode() & 0o777
        ));
    }
    Ok(if setting == "--nats-creds" { text } else { text.trim().to_string() })
}

/// `--nats-creds`: the file read and checked as the NATS client reads it.
fn creds_login(file: PathBuf, warnings: &mut Vec<String>) -> Result<Login, ConfigError> {
    let text = read_secret("--nats-creds", &file, "a NATS credentials file", warnings)?;
    if let Err(e) = async_nats::ConnectOptions::new().credentials(&text) {
        return Err(invalid(
            "--nats-creds",
            format!(
                "{}: not a NATS credentials file ({e}); give the .creds file `nsc generate creds` writes (a \
                 user JWT and its nkey seed)",
                file.display()
            ),
        ));
    }
    Ok(Login::Creds { file, creds: Secret(text) })
}

/// `--nats-nkey`: a user's seed (its error never quotes it).
fn nkey_login(file: PathBuf, warnings: &mut Vec<String>) -> Result<Login, ConfigError> {
    let seed = read_secret("--nats-nkey", &file, "an nkey seed", warnings)?;
    let public = match nkeys::KeyPair::from_seed(&seed) {
        Ok(pair) => pair.public_key(),
        // The error's words could quote the seed: not shown.
        Err(_) => {
            return Err(invalid(
                "--nats-nkey",
                format!(
                    "{}: not an nkey seed; give a file holding one seed (SU..., as `nk -gen user` writes it) \
                     whose public key the server's configuration names",
                    file.display()
                ),
            ));
        }
    };
    if !public.starts_with('U') {
        return Err(invalid(
            "--nats-nkey",
            format!("{}: the seed of a {public:.1}... key, not a user's (SU...)", file.display()),
        ));
    }
    Ok(Login::Nkey { file, seed: Secret(seed), public })
}

/// `--nats-user` with `--nats-password-file`, both or neither (`None`).
fn user_login(
    user: Option<String>,
    password_file: Option<PathBuf>,
    warnings: &mut Vec<String>,
) -> Result<Option<Login>, ConfigError> {
    match (user, password_file) {
        (Some(user), Some(file)) => {
            if user.is_empty() {
                return Err(invalid("--nats-user", "empty: give the user the server's configuration names"));
            }
            let password = read_secret("--nats-password-file", &file, "the user's password", warnings)?;
            Ok(Some(Login::User { user, file, password: Secret(password) }))
        }
        (Some(user), None) => Err(invalid(
            "--nats-user",
            format!(
                "{user:?} needs --nats-password-file FILE, a file holding its password (a password is never \
                 taken on the command line, where `ps` shows it)"
            ),
        )),
        (None, Some(_)) => Err(invalid(
            "--nats-password-file",
            "needs --nats-user USER: the user whose password the file holds",
        )),
        (None, None) => Ok(None),
    }
}

/// Checks that a PEM file holds at least one certificate, as the NATS client will read it.
fn certificates(setting: &'static str, path: &Path, what: &str) -> Result<(), ConfigError> {
    use async_nats::rustls::pki_types::{CertificateDer, pem::PemObject};
    let file = std::fs::File::open(path).map_err(|e| {
        invalid(setting, format!("cannot read {}: {e}; give a PEM file holding {what}", path.display()))
    })?;
    let certificates = CertificateDer::pem_reader_iter(std::io::BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(setting, format!("{}: {e}; give a PEM file holding {what}", path.display())))?;
    if certificates.is_empty() {
        return Err(invalid(
            setting,
            format!(
                "{} holds no certificate (-----BEGIN CERTIFICATE-----): give a PEM file holding {what}",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Checks that `--tls-key` holds a private key, as the NATS client will read it.
fn private_key(path: &Path, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
    use async_nats::rustls::pki_types::{PrivateKeyDer, pem::PemObject};
    use std::os::unix::fs::MetadataExt;
    let file = std::fs::File::open(path).map_err(|e| {
        invalid(
            "--tls-key",
            format!("cannot read {}: {e}; give the client certificate's private key (PEM)", path.display()),
        )
    })?;
    if PrivateKeyDer::from_pem_reader(std::io::BufReader::new(file)).is_err() {
        return Err(invalid(
            "--tls-key",
            format!(
                "{} holds no private key (-----BEGIN PRIVATE KEY-----, PEM): give the client certificate's key",
                path.display()
            ),
        ));
    }
    if let Ok(meta) = std::fs::metadata(path)
        && meta.mode() & 0o004 != 0
    {
        warnings.push(format!(
            "--tls-key {}: every user of this machine may read this private key (mode {:03o}): chmod o-r it",
            path.display(),
            meta.mode() & 0o777
        ));
    }
    Ok(())
}
