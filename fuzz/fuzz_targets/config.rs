//! Fuzzes the configuration loader: a TOML file through `ConfigFile::parse`, then through
//! start-up's resolution of a `relay --config` file.
//!
//! Input: the file's bytes (invalid UTF-8 replaced by U+FFFD, as a lossy reading would). The
//! text is parsed as `fuzz.toml`; a file that parses is resolved by `RelayArgs::resolve`,
//! which is start-up's path: `defaults_for` the file's domain, `RelayConfig::new`,
//! `ConfigFile::apply`, `RelayConfig::finish` and `EngineConfig::validate`. It checks:
//! - nothing panics;
//! - every error names the file, and its message starts with `fuzz.toml: `;
//! - an `UnknownKey` names a dotted key that really is in the input, and so does an `Invalid`
//!   from parsing (except a missing `relay.domain`, which really is missing);
//! - an `Invalid` from resolution names a file key (dotted, e.g. `relay.queue_bytes`), never
//!   a setting's internal name;
//! - a resolved relay is of the file's domain and passes validation again.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use torq::cli::RelayArgs;
use torq::config::{ConfigError, ConfigFile, MIN_MESSAGE_SIZE};

const FILE: &str = "fuzz.toml";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let file = match ConfigFile::parse(&text, FILE) {
        Ok(file) => file,
        Err(error) => {
            check_error(&error, &text);
            if let ConfigError::Invalid { setting, value, .. } = &error {
                if value == "(missing)" {
                    assert_eq!(setting, "relay.domain", "{error}");
                    let table = parse_table(&text, &error);
                    assert!(!has_key(&table, "relay.domain"), "{error}, but the input has it");
                } else {
                    assert!(
                        has_key(&parse_table(&text, &error), setting),
                        "{error}: no such key in the input"
                    );
                }
            }
            return;
        }
    };
    assert_eq!(file.path(), FILE);

    let args = RelayArgs { config: PathBuf::from(FILE), log_level: None, json_logs: false };
    match args.resolve(&file) {
        Ok((engine, relays)) => {
            let [relay] = relays.as_slice() else { panic!("{} relays from one file", relays.len()) };
            assert_eq!(relay.domain, file.domain());
            assert_eq!(relay.validate(), Ok(()));
            assert_eq!(engine.validate(), Ok(()));
            assert!(relay.max_message_size >= MIN_MESSAGE_SIZE);
            assert!(relay.queue_bytes >= 2 * relay.max_message_size);
            assert!(!relay.levels.audit || relay.audit_file.is_some());
        }
        Err(error) => {
            check_error(&error, &text);
            match &error {
                ConfigError::Invalid { setting, .. } => {
                    assert!(setting.contains('.'), "{error}: not a file key");
                }
                other => panic!("resolution gave {other:?}, not an Invalid setting"),
            }
        }
    }
});

fn check_error(error: &ConfigError, text: &str) {
    let message = error.to_string();
    assert!(message.starts_with(&format!("{FILE}: ")), "{message:?} does not name the file");
    match error {
        ConfigError::Invalid { file, setting, .. } => {
            assert_eq!(file.as_deref(), Some(FILE), "{message}");
            assert!(!setting.is_empty(), "{message}: no setting");
        }
        ConfigError::UnknownKey { file, key } => {
            assert_eq!(file, FILE);
            let table = parse_table(text, error);
            assert!(has_key(&table, key), "{message}: no such key in the input");
        }
        ConfigError::File { file, message } => {
            assert_eq!(file, FILE);
            assert!(!message.is_empty());
        }
        other => panic!("an error the target does not know: {other:?}"),
    }
}

/// The input as a plain TOML table: a key error means the text was TOML.
fn parse_table(text: &str, error: &ConfigError) -> toml::Table {
    text.parse::<toml::Table>().unwrap_or_else(|e| panic!("{error}, but the input is not TOML: {e}"))
}

/// Whether `dotted` is a path of keys in `table` (keys may themselves hold dots, and arrays
/// are looked through, as the loader's key paths skip indexes).
fn has_key(table: &toml::Table, dotted: &str) -> bool {
    table.iter().any(|(key, value)| {
        if key == dotted {
            return true;
        }
        let Some(rest) = dotted.strip_prefix(key.as_str()).and_then(|rest| rest.strip_prefix('.')) else {
            return false;
        };
        value_has_key(value, rest)
    })
}

fn value_has_key(value: &toml::Value, dotted: &str) -> bool {
    match value {
        toml::Value::Table(table) => has_key(table, dotted),
        toml::Value::Array(items) => items.iter().any(|item| value_has_key(item, dotted)),
        _ => false,
    }
}
