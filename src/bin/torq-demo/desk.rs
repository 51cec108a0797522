//! The desk: collectors, a strategy, an execution engine and a simulated venue, each a client
//! of the relays through `torq::client`, and what they count on the way.
//!
//! ```text
//! collectors ──Trade, Quote──▶ market data ──▶ strategy ──ArbitrageSignal──▶ signal
//!   signal ──▶ engine ──OrderRequest──▶ execution ──▶ venue ──Fill + OrderStatus──▶ execution
//!   execution ──▶ engine (fills)
//! ```

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use torq::client::{Error, Event, Frame, Notice, Publisher, PublisherOptions, Subscriber, SubscriberOptions};
use torq::protocol::{
    ArbitrageSignal, AssetType, Fill, Filter, OrderRequest, OrderStatus, Payload, Quote, RelayDomain,
    SourceType, Trade, VenueId, checksum, symbol_asset_id, tlvs,
};

/// Index of each relay in [`Desk::lanes`].
pub const MARKET_DATA: usize = 0;
/// See [`MARKET_DATA`].
pub const SIGNAL: usize = 1;
/// See [`MARKET_DATA`].
pub const EXECUTION: usize = 2;

/// The instruments quoted: each on both venues, so a strategy can see one venue's bid above
/// the other's ask. Prices are ×1e8.
const COINS: [(&str, i64); 4] =
    [("BTC/USD", 97_000 * USD), ("ETH/USD", 3_400 * USD), ("SOL/USD", 190 * USD), ("XRP/USD", 23 * USD / 10)];
/// One dollar, or one unit of a coin (×1e8).
const USD: i64 = 100_000_000;
const VENUES: [VenueId; 2] = [VenueId::Kraken, VenueId::Coinbase];
/// One collector per venue, with its venue's source byte.
const COLLECTORS: [SourceType; 2] = [SourceType::KrakenCollector, SourceType::CoinbaseCollector];
/// Every order is for one unit (×1e8), so a signal's capital is the ask and its profit the edge.
const QUANTITY: i64 = USD;
const STRATEGY_ID: u16 = 7;
/// The simulated venue's source byte: no SourceType names an exchange gateway.
const VENUE_SOURCE: SourceType = SourceType::TestClient;
/// How long a client waits for an event before it looks at its publisher again.
const TICK: Duration = Duration::from_millis(50);
/// Events handled in one go before the client flushes what it published.
const BATCH: usize = 4096;

/// One relay as the demo's clients see it.
#[derive(Debug)]
pub struct Lane {
    /// Frames the desk published to it.
    pub published: AtomicU64,
    /// Frames the desk's subscribers received from it (counted once handled).
    pub received: AtomicU64,
    /// Frames it told the desk's subscribers it dropped (notice 4).
    pub dropped: AtomicU64,
    /// The desk's subscribers connected to it now.
    pub subscribers: AtomicU64,
    /// Publisher timestamp to receipt, in ns, since the view last took it.
    latency: Mutex<Histogram<u64>>,
}

impl Lane {
    fn new() -> Lane {
        Lane {
            published: AtomicU64::new(0),
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            subscribers: AtomicU64::new(0),
            latency: Mutex::new(histogram()),
        }
    }

    /// Records the latency of a frame received now.
    fn record(&self, frame: &Frame<'_>) {
        let latency = unix_ns().saturating_sub(frame.header().timestamp());
        if let Ok(mut histogram) = self.latency.lock() {
            histogram.saturating_record(latency);
        }
    }

    /// Moves the latencies recorded since the last call into `into`.
    pub fn take_latency(&self, into: &mut Histogram<u64>) {
        if let Ok(mut histogram) = self.latency.lock() {
            let _ = into.add(&*histogram);
            histogram.reset();
        }
    }
}

/// A latency histogram: 1 ns to 60 s, three significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap_or_else(|_| unreachable!("valid bounds"))
}

/// What became of the execution frames: the demo's "nothing lost" check.
#[derive(Debug, Default)]
pub struct Tally {
    /// Orders the engine published.
    pub orders_sent: AtomicU64,
    /// Orders the venue received.
    pub orders_received: AtomicU64,
    /// Fills the venue published.
    pub fills_sent: AtomicU64,
    /// Fills the engine received.
    pub fills_received: AtomicU64,
    /// Sequence gaps seen by an execution subscriber.
    pub gaps: AtomicU64,
    /// Frames whose order id was not the next one.
    pub out_of_order: AtomicU64,
    /// Frames whose checksum or TLVs were not what was sent.
    pub incomplete: AtomicU64,
    /// Orders the relay confirmed it accepted (notice 7), and fills.
    pub orders_confirmed: AtomicU64,
    /// See [`Tally::orders_confirmed`].
    pub fills_confirmed: AtomicU64,
    /// Orders and fills the relay rejected.
    pub rejected: AtomicU64,
}

impl Tally {
    /// Frames published and never received.
    pub fn lost(&self) -> u64 {
        let get = |c: &AtomicU64| c.load(Relaxed);
        get(&self.orders_sent).saturating_sub(get(&self.orders_received))
            + get(&self.fills_sent).saturating_sub(get(&self.fills_received))
    }

    /// Every order and fill arrived, complete and in order, and the relay rejected none.
    pub fn sound(&self) -> bool {
        self.lost() == 0
            && self.rejected.load(Relaxed) == 0
            && self.gaps.load(Relaxed) == 0
            && self.out_of_order.load(Relaxed) == 0
            && self.incomplete.load(Relaxed) == 0
    }
}

/// Everything the desk counts, shared by its threads and the view.
#[derive(Debug)]
pub struct Desk {
    /// Per relay, in the order [`MARKET_DATA`], [`SIGNAL`], [`EXECUTION`].
    pub lanes: [Lane; 3],
    /// Quotes and trades the collectors published.
    pub quotes: AtomicU64,
    /// See [`Desk::quotes`].
    pub trades: AtomicU64,
    /// The execution check.
    pub tally: Tally,
    /// Profit of the filled orders, USD ×1e8.
    pub pnl: AtomicI64,
    /// From the quote that triggered a signal to the orders for it, in ns.
    quote_to_order: Mutex<Histogram<u64>>,
    /// Errors of the desk's clients, each once.
    errors: Mutex<Vec<String>>,
    /// Tells the collectors to stop publishing.
    stop: AtomicBool,
}

impl Desk {
    /// Zeroed counters.
    pub fn new() -> Desk {
        Desk {
            lanes: [Lane::new(), Lane::new(), Lane::new()],
            quotes: AtomicU64::new(0),
            trades: AtomicU64::new(0),
            tally: Tally::default(),
            pnl: AtomicI64::new(0),
            quote_to_order: Mutex::new(histogram()),
            errors: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        }
    }

    /// Moves the quote-to-order latencies recorded since the last call into `into`.
    pub fn take_quote_to_order(&self, into: &mut Histogram<u64>) {
        if let Ok(mut histogram) = self.quote_to_order.lock() {
            let _ = into.add(&*histogram);
            histogram.reset();
        }
    }

    /// The errors the clients met.
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Whether every frame published has been handled downstream: each tick received or
    /// reported dropped, each signal turned into orders, each order filled and each fill
    /// received. Read in pipeline order, and each client counts a frame received only once
    /// it published what the frame caused, so `true` means nothing is still on its way.
    pub fn settled(&self) -> bool {
        let get = |c: &AtomicU64| c.load(Relaxed);
        let [market, signal, _] = &self.lanes;
        let tally = &self.tally;
        get(&market.received) + get(&market.dropped) >= get(&market.published)
            && get(&signal.received) >= get(&signal.published)
            && get(&tally.orders_received) >= get(&tally.orders_sent)
            && get(&tally.fills_received) >= get(&tally.fills_sent)
    }

    fn fail(&self, who: &str, error: &Error) {
        if let Ok(mut errors) = self.errors.lock() {
            errors.push(format!("{who}: {error}"));
        }
    }
}

/// The sockets of the three relays.
#[derive(Debug, Clone)]
pub struct Sockets {
    /// MarketData.
    pub market_data: std::path::PathBuf,
    /// Signal.
    pub signal: std::path::PathBuf,
    /// Execution.
    pub execution: std::path::PathBuf,
}

/// The desk's threads, started.
#[derive(Debug)]
pub struct Running {
    collectors: JoinHandle<()>,
    others: Vec<JoinHandle<()>>,
}

/// Connects every client (subscribers first, each acknowledged by its relay, so nothing
/// published afterwards misses them) and starts the threads; `retry` tries a subscriber
/// again while the relays are still starting.
///
/// # Errors
///
/// The first client that cannot connect.
pub fn start(
    desk: &Arc<Desk>,
    sockets: &Sockets,
    rate: u64,
    mut retry: impl FnMut(&mut dyn FnMut() -> Result<Subscriber, Error>) -> Result<Subscriber, Error>,
) -> Result<Running, Error> {
    let mut subscriber = |path: &std::path::Path, lane: usize, lo: u8, hi: u8| {
        let options = SubscriberOptions::new().filter(Filter::TypeRange { lo, hi });
        let made = retry(&mut || Subscriber::connect(path, options.clone()))?;
        desk.lanes[lane].subscribers.fetch_add(1, Relaxed);
        Ok::<_, Error>(made)
    };
    let ticks = subscriber(&sockets.market_data, MARKET_DATA, Trade::TYPE, Quote::TYPE)?;
    let signals = subscriber(&sockets.signal, SIGNAL, ArbitrageSignal::TYPE, ArbitrageSignal::TYPE)?;
    let orders = subscriber(&sockets.execution, EXECUTION, OrderRequest::TYPE, OrderRequest::TYPE)?;
    let fills = subscriber(&sockets.execution, EXECUTION, Fill::TYPE, Fill::TYPE)?;

    let publisher = |path: &std::path::Path, domain, source: SourceType| {
        Publisher::connect(path, PublisherOptions::new(domain, source.raw()))
    };
    let signal_out = publisher(&sockets.signal, RelayDomain::Signal, SourceType::ArbitrageStrategy)?;
    let order_out = publisher(&sockets.execution, RelayDomain::Execution, SourceType::ExecutionEngine)?;
    let fill_out = publisher(&sockets.execution, RelayDomain::Execution, VENUE_SOURCE)?;
    let mut tick_out = Vec::new();
    for source in COLLECTORS {
        tick_out.push(publisher(&sockets.market_data, RelayDomain::MarketData, source)?);
    }

    let others = vec![
        spawn(desk, "strategy", Some(MARKET_DATA), move |desk| strategy(desk, ticks, signal_out)),
        spawn(desk, "engine", Some(SIGNAL), move |desk| engine(desk, signals, order_out)),
        spawn(desk, "venue", Some(EXECUTION), move |desk| venue(desk, orders, fill_out)),
        spawn(desk, "engine-fills", Some(EXECUTION), move |desk| engine_fills(desk, fills)),
    ];
    let collectors = spawn(desk, "collectors", None, move |desk| collect(desk, tick_out, rate));
    Ok(Running { collectors, others })
}

/// Runs one of the desk's roles on a thread of its own; its error, if any, goes to
/// [`Desk::errors`], and its subscriber to `lane` counts as gone when it ends.
fn spawn(
    desk: &Arc<Desk>,
    name: &'static str,
    lane: Option<usize>,
    role: impl FnOnce(&Desk) -> Result<(), Error> + Send + 'static,
) -> JoinHandle<()> {
    let desk = Arc::clone(desk);
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            if let Err(e) = role(&desk) {
                desk.fail(name, &e);
            }
            if let Some(lane) = lane {
                desk.lanes[lane].subscribers.fetch_sub(1, Relaxed);
            }
        })
        .unwrap_or_else(|e| panic!("cannot start the {name} thread: {e}"))
}

impl Running {
    /// Stops the collectors and waits until what they published has gone through the desk
    /// (at most `deadline`); returns whether it all did.
    pub fn drain(&mut self, desk: &Desk, deadline: Duration) -> bool {
        desk.stop.store(true, Relaxed);
        let until = Instant::now() + deadline;
        while Instant::now() < until {
            if self.collectors.is_finished() && desk.settled() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Waits for every client to finish (they do once the relays have closed their
    /// connections).
    pub fn join(self) {
        let _ = self.collectors.join();
        for thread in self.others {
            let _ = thread.join();
        }
    }
}

/// A small deterministic generator (xorshift64), so every run sees the same market.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `-1.0..1.0`.
    fn signed(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// The collectors: one publisher per venue, `rate` frames a second in all (0: as fast as the
/// relay takes them). Each instrument's price walks; each venue quotes it a little apart from
/// the other, with a 2 bp spread; one frame in five is a trade at the bid or the ask.
fn collect(desk: &Desk, mut venues: Vec<Publisher>, rate: u64) -> Result<(), Error> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let assets: Vec<u64> =
        COINS.iter().map(|(symbol, _)| symbol_asset_id(symbol.as_bytes()).unwrap_or_default()).collect();
    let mut mids: Vec<f64> = COINS.iter().map(|(_, price)| *price as f64).collect();
    let start = Instant::now();
    let mut sent = 0u64;
    while !desk.stop.load(Relaxed) {
        let due = if rate == 0 { sent + 512 } else { (start.elapsed().as_secs_f64() * rate as f64) as u64 };
        if due <= sent {
            std::thread::sleep(Duration::from_micros(500));
            continue;
        }
        while sent < due.min(sent + 2048) {
            sent += 1;
            let coin = (rng.next() % COINS.len() as u64) as usize;
            let side = (rng.next() % VENUES.len() as u64) as usize;
            mids[coin] *= 1.0 + rng.signed() * 0.3e-4;
            let mid = mids[coin] * (1.0 + rng.signed() * 1.2e-4);
            let (bid, ask) = ((mid * (1.0 - 1e-4)) as i64, (mid * (1.0 + 1e-4)) as i64);
            let (venue, asset_type) = (VENUES[side].raw(), AssetType::Coin.raw());
            let publisher = &mut venues[side];
            if rng.next().is_multiple_of(5) {
                let buy = rng.next().is_multiple_of(2);
                let trade = Trade {
                    asset_id: assets[coin],
                    price: if buy { ask } else { bid },
                    volume: QUANTITY,
                    execution_timestamp_ns: unix_ns(),
                    venue,
                    asset_type,
                    side: u8::from(!buy),
                };
                publisher.publish(|frame| frame.payload(&trade).map(|_| ()))?;
                desk.trades.fetch_add(1, Relaxed);
            } else {
                let quote = Quote {
                    asset_id: assets[coin],
                    bid_price: bid,
                    bid_size: 5 * QUANTITY,
                    ask_price: ask,
                    ask_size: 5 * QUANTITY,
                    quote_timestamp_ns: unix_ns(),
                    venue,
                    asset_type,
                };
                publisher.publish(|frame| frame.payload(&quote).map(|_| ()))?;
                desk.quotes.fetch_add(1, Relaxed);
            }
            desk.lanes[MARKET_DATA].published.fetch_add(1, Relaxed);
        }
        for publisher in &mut venues {
            publisher.flush()?;
        }
    }
    Ok(())
}

/// Handles one client's events until its relay closes the connection: waits up to a tick for
/// the first, handles what else is there, then flushes what `handle` published. A frame counts
/// as received once handled, after what it caused was published (see [`Desk::settled`]).
fn run(
    subscriber: &mut Subscriber,
    mut publisher: Option<&mut Publisher>,
    lane: &Lane,
    mut handle: impl FnMut(&mut Option<&mut Publisher>, Frame<'_>) -> Result<(), Error>,
    mut gap: impl FnMut(),
) -> Result<(), Error> {
    let mut failure = None;
    loop {
        let mut on_event = |event: Event<Frame<'_>>| match event {
            Event::Frame(frame) => {
                lane.record(&frame);
                match handle(&mut publisher, frame) {
                    Ok(()) => {
                        lane.received.fetch_add(1, Relaxed);
                    }
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            }
            Event::Notice(Notice::Dropped { count, .. } | Notice::Merged { dropped: count, .. }) => {
                lane.dropped.fetch_add(count, Relaxed);
            }
            // A sequence that goes back breaks the order the summary checks, as a skip does.
            Event::Gap { .. } | Event::Restarted { .. } => gap(),
            Event::Notice(_) | Event::Reconnected { .. } => {}
        };
        let outcome = match subscriber.recv_timeout(TICK) {
            Ok(Some(event)) => {
                on_event(event);
                subscriber.poll(&mut on_event, BATCH).map(|_| ())
            }
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Some(e) = failure.take() {
            return Err(e);
        }
        match outcome {
            Ok(()) => {}
            Err(Error::Closed { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
        if let Some(publisher) = publisher.as_deref_mut() {
            publisher.flush()?;
        }
    }
}

/// The strategy: keeps each venue's last quote per instrument and, when one venue's bid
/// rises above the other's ask, sends an ArbitrageSignal (buy on `source_venue`, sell on
/// `target_venue`), once per crossing. Its `timestamp_ns` is the triggering quote's, so the
/// engine can measure quote to order.
fn strategy(desk: &Desk, mut ticks: Subscriber, mut signals: Publisher) -> Result<(), Error> {
    // (bid, ask) per coin and venue, and whether each (coin, buy venue) is crossed now.
    let mut book = [[None::<(i64, i64)>; VENUES.len()]; COINS.len()];
    let mut crossed = [[false; VENUES.len()]; COINS.len()];
    let assets: Vec<u64> =
        COINS.iter().map(|(symbol, _)| symbol_asset_id(symbol.as_bytes()).unwrap_or_default()).collect();
    let usd = token(symbol_asset_id(b"USD").unwrap_or_default());
    let mut next_signal = 0u64;
    let handle = |out: &mut Option<&mut Publisher>, frame: Frame<'_>| {
        let Some(Ok(tlv)) =
            tlvs(frame.payload()).next().filter(|t| matches!(t, Ok(t) if t.tlv_type == Quote::TYPE))
        else {
            return Ok(()); // a trade: the strategy trades on quotes only
        };
        let Ok(quote) = Quote::parse(tlv.value) else { return Ok(()) };
        let (Some(coin), Some(here)) = (
            assets.iter().position(|a| *a == quote.asset_id),
            VENUES.iter().position(|v| v.raw() == quote.venue),
        ) else {
            return Ok(());
        };
        book[coin][here] = Some((quote.bid_price, quote.ask_price));
        let there = 1 - here;
        let Some((other_bid, other_ask)) = book[coin][there] else { return Ok(()) };
        // Buy where it is cheap, sell where it is dear.
        for (buy, sell, ask, bid) in
            [(here, there, quote.ask_price, other_bid), (there, here, other_ask, quote.bid_price)]
        {
            let now_crossed = bid > ask;
            if now_crossed && !crossed[coin][buy] {
                next_signal += 1;
                let signal = ArbitrageSignal {
                    strategy_id: STRATEGY_ID,
                    signal_id: next_signal,
                    source_venue: VENUES[buy].raw(),
                    target_venue: VENUES[sell].raw(),
                    token_in: usd,
                    token_out: token(quote.asset_id),
                    expected_profit_usd_q8: bid - ask,
                    required_capital_usd_q8: ask,
                    spread_bps: ((bid - ask) as i128 * 10_000 / i128::from(ask.max(1))) as u16,
                    net_profit_usd_q8: bid - ask,
                    valid_until: (unix_ns() / 1_000_000_000 + 1) as u32,
                    priority: 1,
                    timestamp_ns: frame.header().timestamp(),
                    ..ArbitrageSignal::default()
                };
                if let Some(out) = out.as_deref_mut() {
                    out.publish(|f| f.payload(&signal).map(|_| ()))?;
                    desk.lanes[SIGNAL].published.fetch_add(1, Relaxed);
                }
            }
            crossed[coin][buy] = now_crossed;
        }
        Ok(())
    };
    run(&mut ticks, Some(&mut signals), &desk.lanes[MARKET_DATA], handle, || {})
}

/// The execution engine: each signal becomes two limit IOC orders of one unit, a buy on the
/// cheap venue (odd order id) and a sell on the dear one (the next, even, id).
fn engine(desk: &Desk, mut signals: Subscriber, mut orders: Publisher) -> Result<(), Error> {
    let mut next_order = 0u64;
    let handle = |out: &mut Option<&mut Publisher>, frame: Frame<'_>| {
        let Some(Ok(tlv)) = tlvs(frame.payload()).next() else { return Ok(()) };
        let Ok(signal) = ArbitrageSignal::parse(tlv.value) else { return Ok(()) };
        let asset_id = u64::from_be_bytes(signal.token_out[..8].try_into().unwrap_or_default());
        let legs = [
            (signal.source_venue, 0, signal.required_capital_usd_q8),
            (signal.target_venue, 1, signal.required_capital_usd_q8 + signal.expected_profit_usd_q8),
        ];
        let Some(out) = out.as_deref_mut() else { return Ok(()) };
        for (venue, side, price) in legs {
            next_order += 1;
            let order = OrderRequest {
                order_id: next_order,
                asset_id,
                venue,
                asset_type: AssetType::Coin.raw(),
                side,
                order_type: 1,
                time_in_force: 1,
                price,
                quantity: QUANTITY,
                strategy_id: signal.strategy_id,
            };
            out.publish(|f| f.payload(&order).map(|_| ()))?;
            desk.tally.orders_sent.fetch_add(1, Relaxed);
            desk.lanes[EXECUTION].published.fetch_add(1, Relaxed);
        }
        if let Ok(mut histogram) = desk.quote_to_order.lock() {
            histogram.saturating_record(unix_ns().saturating_sub(signal.timestamp_ns));
        }
        Ok(())
    };
    let ran = run(&mut signals, Some(&mut orders), &desk.lanes[SIGNAL], handle, || {});
    confirmed(&mut orders, &desk.tally.orders_confirmed, &desk.tally.rejected);
    ran
}

/// Takes in the relay's last confirmations (it sent them before closing) and books them.
fn confirmed(publisher: &mut Publisher, accepted: &AtomicU64, rejected: &AtomicU64) {
    let _ = publisher.settle(Duration::from_secs(1));
    let settlement = publisher.settlement();
    accepted.store(settlement.accepted, Relaxed);
    rejected.fetch_add(settlement.rejected, Relaxed);
}

/// The simulated venue: fills every order in full at its limit price, answering with one
/// frame of a Fill and an OrderStatus (filled); checks the orders arrive whole and in order.
fn venue(desk: &Desk, mut orders: Subscriber, mut fills: Publisher) -> Result<(), Error> {
    let tally = &desk.tally;
    let mut expected = 1u64;
    let handle = |out: &mut Option<&mut Publisher>, frame: Frame<'_>| {
        let order = whole(&frame).and_then(|payload| match payload.as_slice() {
            [(OrderRequest::TYPE, value)] => OrderRequest::parse(value).ok(),
            _ => None,
        });
        let Some(order) = order else {
            tally.incomplete.fetch_add(1, Relaxed);
            tally.orders_received.fetch_add(1, Relaxed);
            return Ok(());
        };
        if order.order_id != expected {
            tally.out_of_order.fetch_add(1, Relaxed);
        }
        expected = order.order_id + 1;
        let fill = Fill {
            order_id: order.order_id,
            fill_id: order.order_id,
            price: order.price,
            quantity: order.quantity,
        };
        let status = OrderStatus { order_id: order.order_id, filled_quantity: order.quantity, status: 2 };
        if let Some(out) = out.as_deref_mut() {
            out.publish(|f| f.payload(&fill)?.payload(&status).map(|_| ()))?;
            tally.fills_sent.fetch_add(1, Relaxed);
            desk.lanes[EXECUTION].published.fetch_add(1, Relaxed);
        }
        tally.orders_received.fetch_add(1, Relaxed);
        Ok(())
    };
    let gap = || {
        tally.gaps.fetch_add(1, Relaxed);
    };
    let ran = run(&mut orders, Some(&mut fills), &desk.lanes[EXECUTION], handle, gap);
    confirmed(&mut fills, &tally.fills_confirmed, &tally.rejected);
    ran
}

/// The engine's fills: checks they arrive whole and in order, and books the profit (a buy
/// pays, a sell earns).
fn engine_fills(desk: &Desk, mut fills: Subscriber) -> Result<(), Error> {
    let tally = &desk.tally;
    let mut expected = 1u64;
    let handle = |_: &mut Option<&mut Publisher>, frame: Frame<'_>| {
        tally.fills_received.fetch_add(1, Relaxed);
        let fill = whole(&frame).and_then(|payload| match payload.as_slice() {
            [(Fill::TYPE, fill), (OrderStatus::TYPE, status)] => {
                let (fill, status) = (Fill::parse(fill).ok()?, OrderStatus::parse(status).ok()?);
                let consistent = status.order_id == fill.order_id
                    && status.status == 2
                    && status.filled_quantity == fill.quantity;
                consistent.then_some(fill)
            }
            _ => None,
        });
        let Some(fill) = fill else {
            tally.incomplete.fetch_add(1, Relaxed);
            return Ok(());
        };
        if fill.order_id != expected {
            tally.out_of_order.fetch_add(1, Relaxed);
        }
        expected = fill.order_id + 1;
        let cash = (i128::from(fill.price) * i128::from(fill.quantity) / i128::from(QUANTITY)) as i64;
        let signed = if fill.order_id % 2 == 1 { -cash } else { cash };
        desk.pnl.fetch_add(signed, Relaxed);
        Ok(())
    };
    let gap = || {
        tally.gaps.fetch_add(1, Relaxed);
    };
    run(&mut fills, None, &desk.lanes[EXECUTION], handle, gap)
}

/// The frame's TLVs (type, value) when its checksum is the one its publisher computed and
/// its payload walks as whole TLVs; `None` otherwise.
fn whole<'a>(frame: &Frame<'a>) -> Option<Vec<(u8, &'a [u8])>> {
    let bytes = frame.bytes();
    if frame.header().checksum() != checksum(bytes) {
        return None;
    }
    tlvs(frame.payload()).map(|tlv| tlv.ok().map(|t| (t.tlv_type, t.value))).collect()
}

/// A coin as an ArbitrageSignal token: the demo's coins have no chain address, so the token
/// carries the asset id big-endian in its first 8 bytes — where an EVM token's asset id is
/// read from (PROTOCOL.md §5) — and zeros after.
fn token(asset_id: u64) -> [u8; 20] {
    let mut token = [0; 20];
    token[..8].copy_from_slice(&asset_id.to_be_bytes());
    token
}

/// Nanoseconds since the Unix epoch.
fn unix_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
