//! The flags the live tools share: the subscription filters of PROTOCOL.md §6.

use crate::protocol::{
    AssetType, Filter, InstrumentId, OPTION_NOTICES, Role, Subscribe, VenueId, registry, symbol_asset_id,
};

/// `--type`, `--source`, `--instrument`: filters, OR-ed; none means every data frame.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterArgs {
    /// Frames whose first TLV has a type in LO..=HI (or is LO). Repeatable.
    #[arg(long = "type", value_name = "LO[-HI]", value_parser = parse_type_range)]
    pub types: Vec<Filter>,
    /// Frames whose header's source byte is N. Repeatable.
    #[arg(long = "source", value_name = "N")]
    pub sources: Vec<u8>,
    /// Frames whose first TLV is a Trade, Quote, QuoteUpdate, OrderBook or OrderRequest of
    /// this instrument. VENUE and ASSET are numbers or names (Kraken, Coin, as in PROTOCOL.md
    /// §5); ID is the asset id as a number (decimal or 0x…) or a symbol (BTC/USD). Repeatable.
    #[arg(long = "instrument", value_name = "VENUE:ASSET:ID", value_parser = parse_instrument)]
    pub instruments: Vec<Filter>,
}

impl FilterArgs {
    /// Every filter, in the order types, sources, instruments.
    ///
    /// # Errors
    ///
    /// A message when there are more than a Subscribe holds (64).
    pub fn filters(&self) -> Result<Vec<Filter>, String> {
        let filters: Vec<Filter> = self
            .types
            .iter()
            .copied()
            .chain(self.sources.iter().map(|s| Filter::Source(*s)))
            .chain(self.instruments.iter().copied())
            .collect();
        if filters.len() > registry::MAX_FILTERS {
            return Err(format!("{} filters given; a subscription holds at most 64", filters.len()));
        }
        Ok(filters)
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

/// `LO` or `LO-HI`, each 0..=255, LO ≤ HI.
pub fn parse_type_range(text: &str) -> Result<Filter, String> {
    let number = |part: &str| {
        part.trim().parse::<u8>().map_err(|_| format!("{part:?} is not a TLV type number (0..=255)"))
    };
    let (lo, hi) = match text.split_once('-') {
        Some((lo, hi)) => (number(lo)?, number(hi)?),
        None => (number(text)?, number(text)?),
    };
    if lo > hi {
        return Err(format!("{lo}-{hi} is empty: the low type must not exceed the high one"));
    }
    Ok(Filter::TypeRange { lo, hi })
}

/// `VENUE:ASSET:ID`.
pub fn parse_instrument(text: &str) -> Result<Filter, String> {
    let mut parts = text.splitn(3, ':');
    let (Some(venue), Some(asset), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!(
            "{text:?} is not VENUE:ASSET:ID (e.g. Kraken:Coin:BTC/USD or 101:51:0x4254432f55534400)"
        ));
    };
    let venue = match venue.parse::<u16>() {
        Ok(n) => n,
        Err(_) => VenueId::ALL
            .iter()
            .find(|v| v.name().eq_ignore_ascii_case(venue))
            .map(|v| v.raw())
            .ok_or_else(|| format!("venue {venue:?} is neither a number (0..=65535) nor a venue name"))?,
    };
    let asset_type = match asset.parse::<u8>() {
        Ok(n) => n,
        Err(_) => {
            AssetType::ALL.iter().find(|a| a.name().eq_ignore_ascii_case(asset)).map(|a| a.raw()).ok_or_else(
                || format!("asset type {asset:?} is neither a number (0..=255) nor an asset type name"),
            )?
        }
    };
    let asset_id = match id.strip_prefix("0x") {
        Some(hex) => {
            u64::from_str_radix(hex, 16).map_err(|_| format!("asset id {id:?} is not a 64-bit hex number"))?
        }
        None => match id.parse::<u64>() {
            Ok(n) => n,
            Err(_) => symbol_asset_id(id.as_bytes()).map_err(|e| format!("asset id {id:?}: {e}"))?,
        },
    };
    Ok(Filter::Instrument(InstrumentId { asset_id, venue, asset_type, reserved: 0 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_filters() {
        assert_eq!(parse_type_range("1-3"), Ok(Filter::TypeRange { lo: 1, hi: 3 }));
        assert_eq!(parse_type_range("40"), Ok(Filter::TypeRange { lo: 40, hi: 40 }));
        assert!(parse_type_range("3-1").unwrap_err().contains("empty"));
        assert!(parse_type_range("300").unwrap_err().contains("\"300\""));
        let btc = InstrumentId::coin(VenueId::Kraken, "BTC/USD").unwrap();
        assert_eq!(parse_instrument("Kraken:coin:BTC/USD"), Ok(Filter::Instrument(btc)));
        assert_eq!(parse_instrument("101:51:0x4254432f55534400"), Ok(Filter::Instrument(btc)));
        assert_eq!(parse_instrument("101:51:4779518975120983040"), Ok(Filter::Instrument(btc)));
        assert!(parse_instrument("Nowhere:51:1").unwrap_err().contains("Nowhere"));
        assert!(parse_instrument("101:51").unwrap_err().contains("VENUE:ASSET:ID"));
        assert!(parse_instrument("101:51:TOOLONGSYMBOL").unwrap_err().contains("TOOLONGSYMBOL"));
        let many = FilterArgs { sources: (0..65).collect(), ..FilterArgs::default() };
        assert!(many.filters().unwrap_err().contains("65 filters"));
    }
}
