//! Configuration files (TOML, legacy keys accepted) and command-line flags. (In progress.)
