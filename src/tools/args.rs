//! The flags the live tools share: the subscription filters of PROTOCOL.md §6, read as the
//! protocol reads their text ([`Filter::parse_type_range`], [`Filter::parse_instrument`],
//! [`Filter::list`]).

use crate::protocol::{Filter, OPTION_NOTICES, Role, Subscribe};

/// `--type`, `--source`, `--instrument`: filters, OR-ed; none means every data frame.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterArgs {
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

impl FilterArgs {
    /// Every filter, in the order types, sources, instruments.
    ///
    /// # Errors
    ///
    /// A message when there are more than a Subscribe holds (64).
    pub fn filters(&self) -> Result<Vec<Filter>, String> {
        Filter::list(&self.types, &self.sources, &self.instruments).map_err(|e| e.to_string())
    }

    /// A subscriber's Subscribe with these filters, asking for notices.
    ///
    /// # Errors
    ///
    /// As [`FilterArgs::filters`].
    pub fn subscribe(&self) -> Result<Subscribe, String> {
        Ok(Subscribe { role: Role::Subscribe, options: OPTION_NOTICES, filters: self.filters()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        filters: FilterArgs,
    }

    #[test]
    fn flags_become_filters_in_the_order_types_sources_instruments() {
        let flags =
            |list: &[&str]| Flags::try_parse_from(std::iter::once("tool").chain(list.iter().copied()));
        let parsed =
            flags(&["--instrument", "Kraken:Coin:BTC/USD", "--source", "7", "--type", "1-3"]).unwrap();
        let btc = crate::protocol::InstrumentId::coin(crate::protocol::VenueId::Kraken, "BTC/USD").unwrap();
        assert_eq!(
            parsed.filters.filters(),
            Ok(vec![Filter::TypeRange { lo: 1, hi: 3 }, Filter::Source(7), Filter::Instrument(btc)])
        );
        let subscribe = parsed.filters.subscribe().unwrap();
        assert_eq!(
            (subscribe.role, subscribe.options, subscribe.filters.len()),
            (Role::Subscribe, OPTION_NOTICES, 3)
        );
        // A flag's text is refused with the protocol's words, naming the flag.
        let error = flags(&["--type", "3-1"]).unwrap_err().to_string();
        assert!(error.contains("--type") && error.contains("3-1 is empty"), "{error}");
        let error = flags(&["--instrument", "Nowhere:51:1"]).unwrap_err().to_string();
        assert!(error.contains("--instrument") && error.contains("\"Nowhere\""), "{error}");
        let many = FilterArgs { sources: (0..65).collect(), ..FilterArgs::default() };
        assert!(many.filters().unwrap_err().contains("65 filters"));
    }
}
