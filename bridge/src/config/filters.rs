//! What the export takes: `--type`, `--source` and `--instrument` (keys `type`, `source`,
//! `instrument`), read as the protocol reads filters' text, as `torq-tap` takes them.

use torq::protocol::Filter;

use super::{ConfigError, invalid};

/// Export only these frames (the subscription filters of PROTOCOL.md §6, as torq-tap takes them).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ExportFilters {
    /// Frames whose first TLV has a type in LO..=HI (or is LO). Repeatable.
    #[arg(long = "type", value_name = "LO[-HI]", value_parser = Filter::parse_type_range)]
    pub types: Vec<Filter>,
    /// Frames whose header's source byte is N. Repeatable.
    #[arg(long = "source", value_name = "N")]
    pub sources: Vec<u8>,
    /// Frames whose first TLV is a Trade, Quote, QuoteUpdate, OrderBook or OrderRequest of
    /// this instrument. VENUE and ASSET are numbers or names (Kraken, Coin, as in PROTOCOL.md
    /// §5); ID is the asset id as a number (decimal or 0x…) or a symbol (BTC/USD). Repeatable.
    #[arg(long = "instrument", value_name = "VENUE:ASSET:ID", value_parser = Filter::parse_instrument)]
    pub instruments: Vec<Filter>,
}

impl ExportFilters {
    /// The filters: the flags' if any is given, else the file's (`types`, `sources` and
    /// `instruments`), in the order types, sources, instruments.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the key of a filter the protocol cannot read, or the
    /// flags when there are more than a subscription holds.
    pub(super) fn resolve(
        &self,
        types: &[String],
        sources: &[u8],
        instruments: &[String],
    ) -> Result<Vec<Filter>, ConfigError> {
        let filters = if self.types.is_empty() && self.sources.is_empty() && self.instruments.is_empty() {
            let types = parse_list(types, "type", Filter::parse_type_range)?;
            let instruments = parse_list(instruments, "instrument", Filter::parse_instrument)?;
            Filter::list(&types, sources, &instruments)
        } else {
            Filter::list(&self.types, &self.sources, &self.instruments)
        };
        filters.map_err(|e| invalid("--type/--source/--instrument", e.to_string()))
    }
}

fn parse_list(
    items: &[String],
    key: &'static str,
    parse: fn(&str) -> Result<Filter, torq::protocol::FilterTextError>,
) -> Result<Vec<Filter>, ConfigError> {
    items.iter().map(|item| parse(item).map_err(|e| invalid(key, e.to_string()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        filters: ExportFilters,
    }

    fn flags(list: &[&str]) -> ExportFilters {
        Flags::parse_from(std::iter::once("torq-bridge").chain(list.iter().copied())).filters
    }

    #[test]
    fn the_flags_win_over_the_file_and_a_mistake_names_its_key() {
        let file_types = ["2-4".to_string()];
        let from_file = flags(&[]).resolve(&file_types, &[9], &[]).unwrap();
        assert_eq!(from_file, [Filter::TypeRange { lo: 2, hi: 4 }, Filter::Source(9)]);
        let from_flags = flags(&["--source", "7"]).resolve(&file_types, &[9], &[]).unwrap();
        assert_eq!(from_flags, [Filter::Source(7)], "the file's filters are not added to the flags'");
        let error =
            |types: &[String], instruments: &[String]| match flags(&[]).resolve(types, &[], instruments) {
                Err(ConfigError::Invalid { setting, problem }) => (setting, problem),
                other => panic!("{other:?}"),
            };
        let (setting, problem) = error(&["9-1".into()], &[]);
        assert_eq!(
            (setting, problem.as_str()),
            ("type", "9-1 is empty: the low type must not exceed the high one")
        );
        let (setting, problem) = error(&[], &["Nowhere:Coin:BTC".into()]);
        assert_eq!(setting, "instrument");
        assert!(problem.contains("\"Nowhere\""), "{problem}");
        let many: Vec<u8> = (0..65).collect();
        match flags(&[]).resolve(&[], &many, &[]) {
            Err(ConfigError::Invalid { setting, problem }) => {
                assert_eq!(setting, "--type/--source/--instrument");
                assert!(problem.contains("65 filters"), "{problem}");
            }
            other => panic!("{other:?}"),
        }
        // On the command line, a filter the protocol cannot read is clap's error, naming the flag.
        let refused = Flags::try_parse_from(["torq-bridge", "--type", "300"]).unwrap_err().to_string();
        assert!(
            refused.contains("--type") && refused.contains("\"300\" is not a TLV type number"),
            "{refused}"
        );
    }
}
