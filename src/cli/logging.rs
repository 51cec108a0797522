//! Logging set-up: env_logger to stderr or a file, text or one JSON object per line.

use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::path::Path;

use crate::config::{ConfigError, ConfigFile};

use super::LogLevel;

/// Starts logging at `level` (`RUST_LOG` still refines it); `json` writes one JSON object per
/// line (`ts`, `level`, `target`, `message`); `file` appends to that file instead of stderr.
/// Only the first call in a process takes effect.
///
/// # Errors
///
/// When `file` cannot be opened for appending.
pub fn init_logging(level: log::LevelFilter, json: bool, file: Option<&Path>) -> io::Result<()> {
    let mut builder = env_logger::Builder::new();
    builder.filter_level(level).parse_default_env();
    if let Some(path) = file {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        builder.target(env_logger::Target::Pipe(Box::new(file))).write_style(env_logger::WriteStyle::Never);
    }
    if json {
        builder.format(|out, record| {
            let ts = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let message = serde_json::json!({
                "ts": ts,
                "level": record.level().as_str(),
                "target": record.target(),
                "message": record.args().to_string(),
            });
            writeln!(out, "{message}")
        });
    }
    let _ = builder.try_init();
    Ok(())
}

/// Starts logging as the flags say, else as the file's `[logging]` table says, else at info, as
/// text, to stderr.
///
/// # Errors
///
/// [`ConfigError::Invalid`] naming the file and `logging.file` when that cannot be opened for
/// appending.
pub fn start_logging(
    level: Option<LogLevel>,
    json: bool,
    file: Option<&ConfigFile>,
) -> Result<(), ConfigError> {
    let logging = file.map(ConfigFile::logging).unwrap_or_default();
    let level = level.map_or(logging.level.unwrap_or(log::LevelFilter::Info), LogLevel::filter);
    let json = json || logging.json == Some(true);
    init_logging(level, json, logging.file.as_deref()).map_err(|e| ConfigError::Invalid {
        file: file.map(|file| file.path().to_string()),
        setting: "logging.file".to_string(),
        value: logging.file.as_deref().unwrap_or(Path::new("")).display().to_string(),
        allowed: format!("a file the relay can append to ({e})"),
    })
}
