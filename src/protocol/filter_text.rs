//! Subscription filters written as text, the one reading of them that the tools' flags
//! (`--type`, `--source`, `--instrument`) and `torq-bridge`'s flags and file share:
//!
//! | form            | filter                   | example                                    |
//! |-----------------|--------------------------|--------------------------------------------|
//! | `LO` or `LO-HI` | [`Filter::TypeRange`]    | `40`, `1-3`                                |
//! | `VENUE:ASSET:ID`| [`Filter::Instrument`]   | `Kraken:Coin:BTC/USD`, `101:51:0x4254…`    |
//!
//! `VENUE` and `ASSET` are numbers or the names of [`VenueId`] and [`AssetType`] (any case);
//! `ID` is the asset id as a decimal or `0x` hex number, or a symbol ([`symbol_asset_id`]).

use super::control::Filter;
use super::error::{Error, FilterTextError};
use super::ids::{AssetType, InstrumentId, VenueId, symbol_asset_id};
use super::registry::MAX_FILTERS;

impl Filter {
    /// A [`Filter::TypeRange`] from `LO` or `LO-HI`, each 0..=255, `LO` ≤ `HI`.
    ///
    /// # Errors
    ///
    /// [`FilterTextError::TypeNumber`] for a part that is not a type number,
    /// [`FilterTextError::EmptyTypeRange`] when `LO` > `HI`.
    ///
    /// # Examples
    ///
    /// ```
    /// use torq::protocol::Filter;
    /// assert_eq!(Filter::parse_type_range("1-3"), Ok(Filter::TypeRange { lo: 1, hi: 3 }));
    /// assert_eq!(Filter::parse_type_range("40"), Ok(Filter::TypeRange { lo: 40, hi: 40 }));
    /// ```
    pub fn parse_type_range(text: &str) -> Result<Filter, FilterTextError> {
        let number =
            |part: &str| part.trim().parse::<u8>().map_err(|_| FilterTextError::TypeNumber(part.to_string()));
        let (lo, hi) = match text.split_once('-') {
            Some((lo, hi)) => (number(lo)?, number(hi)?),
            None => (number(text)?, number(text)?),
        };
        if lo > hi {
            return Err(FilterTextError::EmptyTypeRange { lo, hi });
        }
        Ok(Filter::TypeRange { lo, hi })
    }

    /// A [`Filter::Instrument`] from `VENUE:ASSET:ID` (see the module's table).
    ///
    /// # Errors
    ///
    /// [`FilterTextError`] naming the part that is wrong: not three parts, an unknown venue or
    /// asset type name, a hex id over 64 bits, a symbol that cannot be one.
    ///
    /// # Examples
    ///
    /// ```
    /// use torq::protocol::{Filter, InstrumentId, VenueId};
    /// let btc = InstrumentId::coin(VenueId::Kraken, "BTC/USD")?;
    /// assert_eq!(Filter::parse_instrument("Kraken:coin:BTC/USD"), Ok(Filter::Instrument(btc)));
    /// # Ok::<(), torq::protocol::Error>(())
    /// ```
    pub fn parse_instrument(text: &str) -> Result<Filter, FilterTextError> {
        let mut parts = text.splitn(3, ':');
        let (Some(venue), Some(asset), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(FilterTextError::NotInstrument(text.to_string()));
        };
        let venue = match venue.parse::<u16>() {
            Ok(n) => n,
            Err(_) => VenueId::ALL
                .iter()
                .find(|v| v.name().eq_ignore_ascii_case(venue))
                .map(|v| v.raw())
                .ok_or_else(|| FilterTextError::Venue(venue.to_string()))?,
        };
        let asset_type = match asset.parse::<u8>() {
            Ok(n) => n,
            Err(_) => AssetType::ALL
                .iter()
                .find(|a| a.name().eq_ignore_ascii_case(asset))
                .map(|a| a.raw())
                .ok_or_else(|| FilterTextError::AssetType(asset.to_string()))?,
        };
        let asset_id = match id.strip_prefix("0x") {
            Some(hex) => {
                u64::from_str_radix(hex, 16).map_err(|_| FilterTextError::AssetIdHex(id.to_string()))?
            }
            None => match id.parse::<u64>() {
                Ok(n) => n,
                Err(_) => symbol_asset_id(id.as_bytes())
                    .map_err(|source: Error| FilterTextError::Symbol { id: id.to_string(), source })?,
            },
        };
        Ok(Filter::Instrument(InstrumentId { asset_id, venue, asset_type, reserved: 0 }))
    }

    /// The filters of one subscription from type ranges, sources and instruments, in that
    /// order.
    ///
    /// # Errors
    ///
    /// [`FilterTextError::TooMany`] over the 64 a Subscribe holds.
    pub fn list(
        types: &[Filter],
        sources: &[u8],
        instruments: &[Filter],
    ) -> Result<Vec<Filter>, FilterTextError> {
        let filters: Vec<Filter> = types
            .iter()
            .copied()
            .chain(sources.iter().map(|s| Filter::Source(*s)))
            .chain(instruments.iter().copied())
            .collect();
        if filters.len() > MAX_FILTERS {
            return Err(FilterTextError::TooMany(filters.len()));
        }
        Ok(filters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_ranges_are_one_number_or_two_in_order() {
        assert_eq!(Filter::parse_type_range("1-3"), Ok(Filter::TypeRange { lo: 1, hi: 3 }));
        assert_eq!(Filter::parse_type_range(" 2 - 9 "), Ok(Filter::TypeRange { lo: 2, hi: 9 }));
        assert_eq!(Filter::parse_type_range("40"), Ok(Filter::TypeRange { lo: 40, hi: 40 }));
        assert_eq!(Filter::parse_type_range("3-1"), Err(FilterTextError::EmptyTypeRange { lo: 3, hi: 1 }));
        let error = Filter::parse_type_range("3-1").unwrap_err().to_string();
        assert_eq!(error, "3-1 is empty: the low type must not exceed the high one");
        let error = Filter::parse_type_range("300").unwrap_err().to_string();
        assert_eq!(error, "\"300\" is not a TLV type number (0..=255)");
        assert_eq!(Filter::parse_type_range("1-x"), Err(FilterTextError::TypeNumber("x".into())));
    }

    #[test]
    fn instruments_take_numbers_or_names() {
        let btc = InstrumentId::coin(VenueId::Kraken, "BTC/USD").unwrap();
        for text in ["Kraken:coin:BTC/USD", "101:51:0x4254432f55534400", "101:51:4779518975120983040"] {
            assert_eq!(Filter::parse_instrument(text), Ok(Filter::Instrument(btc)), "{text}");
        }
        let error = |text: &str| Filter::parse_instrument(text).unwrap_err().to_string();
        assert_eq!(
            error("Nowhere:51:1"),
            "venue \"Nowhere\" is neither a number (0..=65535) nor a venue name"
        );
        assert!(error("101:Cheese:1").starts_with("asset type \"Cheese\""), "{}", error("101:Cheese:1"));
        assert!(error("101:51").contains("is not VENUE:ASSET:ID"), "{}", error("101:51"));
        assert!(error("101:51:0xZZ").contains("not a 64-bit hex number"), "{}", error("101:51:0xZZ"));
        let symbol = error("101:51:TOOLONGSYMBOL");
        assert!(symbol.starts_with("asset id \"TOOLONGSYMBOL\": invalid symbol"), "{symbol}");
    }

    #[test]
    fn a_list_is_types_then_sources_then_instruments_and_holds_64() {
        let btc = Filter::Instrument(InstrumentId::coin(VenueId::Kraken, "BTC/USD").unwrap());
        let types = [Filter::TypeRange { lo: 1, hi: 3 }];
        assert_eq!(
            Filter::list(&types, &[7, 8], &[btc]),
            Ok(vec![types[0], Filter::Source(7), Filter::Source(8), btc])
        );
        assert_eq!(Filter::list(&[], &[], &[]), Ok(vec![]));
        let sources: Vec<u8> = (0..64).collect();
        assert_eq!(Filter::list(&[], &sources, &[]).map(|l| l.len()), Ok(64));
        let error = Filter::list(&types, &sources, &[]).unwrap_err();
        assert_eq!(error.to_string(), "65 filters given; a subscription holds at most 64");
    }
}
