//! Rate limits on the device-facing routes: per token and per client
//! address, answering 429 with `Retry-After`.
//!
//! The token limit (default 2 per second, bursts of 10) lets a device poll
//! every few seconds and stops a token that sends more than a few checks a
//! second. The address limit (default 100 per second, bursts of 400) is
//! generous because whole fleets sit behind one NAT; it bounds what one
//! host can make the server do with tokens it invents. IPv6 addresses are
//! counted per /64, the block one subscriber usually holds. Both run
//! before the token is looked up, so a flood of unknown tokens never
//! reaches the database.
//!
//! The client address is the TCP peer: behind a proxy, every request
//! shares the proxy's address, so raise `address_rate_per_sec` there or
//! turn it off (0).
//!
//! Owner registration (serial plus verification code, no token) has limits
//! of its own, per serial (default 5 an hour: guessing one unit's code)
//! and per client address (default 20 a minute: trying many serials); both
//! answer 429 `rate_limited_registration`. Each replica counts for itself,
//! so behind N replicas a serial gets at most N times its limit.
//!
//! Counting is governor's GCRA, keyed; idle keys are dropped once a minute,
//! when the number of refused requests is logged.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Extension;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest as _, Sha256};

use crate::config::Config;
use crate::error::AppError;

/// The limiters and their refusal counts.
#[derive(Debug)]
pub struct RateLimits {
    token: Option<DefaultKeyedRateLimiter<[u8; 32]>>,
    address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    registration_serial: Option<DefaultKeyedRateLimiter<[u8; 32]>>,
    registration_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    refused_token: AtomicU64,
    refused_address: AtomicU64,
    refused_registration: AtomicU64,
}

/// `n` per `period`, all of them at once if need be (0: no limit).
fn per_period(n: u32, period: Duration) -> Option<Quota> {
    let n = NonZeroU32::new(n)?;
    Quota::with_period(period / n.get()).map(|q| q.allow_burst(n))
}

fn quota(rate: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(rate)?;
    let burst = NonZeroU32::new(burst).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

/// The key of an address: IPv4 whole, IPv6 by its /64.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl RateLimits {
    /// The limiters the configuration asks for.
    pub fn new(config: &Config) -> Self {
        RateLimits {
            token: quota(config.token_rate_per_sec, config.token_rate_burst)
                .map(RateLimiter::keyed),
            address: quota(config.address_rate_per_sec, config.address_rate_burst)
                .map(RateLimiter::keyed),
            registration_serial: per_period(
                config.registration_per_serial_per_hour,
                Duration::from_secs(3600),
            )
            .map(RateLimiter::keyed),
            registration_address: per_period(
                config.registration_per_address_per_minute,
                Duration::from_secs(60),
            )
            .map(RateLimiter::keyed),
            refused_token: AtomicU64::new(0),
            refused_address: AtomicU64::new(0),
            refused_registration: AtomicU64::new(0),
        }
    }

    /// Counts one owner registration attempt for `serial` from `peer`;
    /// `Err` with the 429 to answer when either limit is reached. An
    /// attempt refused by the address limit does not count against the
    /// serial.
    pub fn check_registration(&self, peer: Option<IpAddr>, serial: &str) -> Result<(), AppError> {
        let refuse = |wait: Duration, what: &str| {
            self.refused_registration.fetch_add(1, Ordering::Relaxed);
            Err(too_many("rate_limited_registration", what, wait))
        };
        if let (Some(limiter), Some(ip)) = (&self.registration_address, peer)
            && let Err(not_until) = limiter.check_key(&address_key(ip))
        {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            return refuse(wait, "too many registration attempts from this address");
        }
        if let Some(limiter) = &self.registration_serial {
            let key: [u8; 32] = Sha256::digest(serial.as_bytes()).into();
            if let Err(not_until) = limiter.check_key(&key) {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                return refuse(wait, "too many registration attempts for this serial");
            }
        }
        Ok(())
    }

    /// Counts one request from `peer` with bearer `token`; `Err` with the
    /// 429 to answer when either limit is reached.
    pub fn check(&self, peer: Option<IpAddr>, token: Option<&str>) -> Result<(), AppError> {
        if let (Some(limiter), Some(ip)) = (&self.address, peer)
            && let Err(not_until) = limiter.check_key(&address_key(ip))
        {
            self.refused_address.fetch_add(1, Ordering::Relaxed);
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            return Err(too_many(
                "rate_limited_address",
                "too many requests from this address",
                wait,
            ));
        }
        if let (Some(limiter), Some(token)) = (&self.token, token) {
            let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            if let Err(not_until) = limiter.check_key(&key) {
                self.refused_token.fetch_add(1, Ordering::Relaxed);
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                return Err(too_many(
                    "rate_limited_token",
                    "too many requests with this token",
                    wait,
                ));
            }
        }
        Ok(())
    }

    /// Drops idle keys and logs how many requests were refused since the
    /// last call.
    pub fn sweep(&self) {
        if let Some(limiter) = &self.address {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.token {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.registration_serial {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.registration_address {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        let by_token = self.refused_token.swap(0, Ordering::Relaxed);
        let by_address = self.refused_address.swap(0, Ordering::Relaxed);
        let registrations = self.refused_registration.swap(0, Ordering::Relaxed);
        if by_token + by_address + registrations > 0 {
            tracing::info!(
                refused_by_token = by_token,
                refused_by_address = by_address,
                refused_registrations = registrations,
                "rate limits refused requests in the last minute"
            );
        }
    }
}

fn too_many(code: &'static str, what: &str, wait: Duration) -> AppError {
    // Whole seconds, rounded up: a client that waits as told is admitted.
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    AppError::TooManyRequests {
        code,
        message: format!("{what}; retry after {secs} s (Retry-After)"),
        retry_after_secs: secs,
    }
}

/// Middleware for the routes the limits guard (the router layers the
/// limits in as an extension).
pub async fn limit(
    Extension(limits): Extension<Arc<RateLimits>>,
    req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let token = match crate::extract::bearer_token(req.headers()) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = limits.check(peer, token) {
        return e.into_response();
    }
    next.run(req).await
}

/// Sweeps the limiters once a minute while `limits` lives.
pub fn spawn_sweeper(limits: std::sync::Weak<RateLimits>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        every.tick().await;
        loop {
            every.tick().await;
            let Some(limits) = limits.upgrade() else {
                return;
            };
            limits.sweep();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(token: (u32, u32), address: (u32, u32)) -> RateLimits {
        let config = Config {
            token_rate_per_sec: token.0,
            token_rate_burst: token.1,
            address_rate_per_sec: address.0,
            address_rate_burst: address.1,
            ..Config::default()
        };
        RateLimits::new(&config)
    }

    #[test]
    fn registration_attempts_are_limited_per_serial_and_per_address() {
        let config = Config {
            registration_per_serial_per_hour: 3,
            registration_per_address_per_minute: 5,
            ..Config::default()
        };
        let l = RateLimits::new(&config);
        let a = Some("192.0.2.1".parse().unwrap());
        let b = Some("192.0.2.2".parse().unwrap());
        for _ in 0..3 {
            l.check_registration(a, "SN-1").unwrap();
        }
        // The fourth attempt on SN-1 waits about 20 minutes, from any address.
        for peer in [a, b, None] {
            let e = l.check_registration(peer, "SN-1").unwrap_err();
            assert_eq!(e.code(), "rate_limited_registration");
            match e {
                AppError::TooManyRequests {
                    retry_after_secs, ..
                } => assert!(
                    (1100..=1200).contains(&retry_after_secs),
                    "{retry_after_secs}"
                ),
                other => panic!("{other:?}"),
            }
        }
        // Address a has made 4 attempts (one refused by the serial limit
        // counted too): one more serial, then its minute is used up.
        l.check_registration(a, "SN-2").unwrap();
        let e = l.check_registration(a, "SN-3").unwrap_err();
        assert_eq!(e.code(), "rate_limited_registration");
        assert!(e.to_string().contains("address") || format!("{e:?}").contains("address"));
        // Another address and another serial are still admitted.
        l.check_registration(b, "SN-3").unwrap();
        // 0 turns a limit off.
        let off = RateLimits::new(&Config {
            registration_per_serial_per_hour: 0,
            registration_per_address_per_minute: 0,
            ..Config::default()
        });
        for _ in 0..100 {
            off.check_registration(a, "SN-1").unwrap();
        }
    }

    #[test]
    fn a_token_over_its_burst_gets_429_with_retry_after() {
        let l = limits((1, 3), (0, 0));
        let ip = Some("192.0.2.1".parse().unwrap());
        for _ in 0..3 {
            l.check(ip, Some("fu_a")).unwrap();
        }
        let e = l.check(ip, Some("fu_a")).unwrap_err();
        assert_eq!(e.code(), "rate_limited_token");
        assert!(
            matches!(
                e,
                AppError::TooManyRequests {
                    retry_after_secs: 1,
                    ..
                }
            ),
            "{e:?}"
        );
        // Another token is not affected.
        l.check(ip, Some("fu_b")).unwrap();
    }

    #[test]
    fn addresses_are_limited_and_ipv6_counts_per_64() {
        let l = limits((0, 0), (1, 2));
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        l.check(Some(a), None).unwrap();
        l.check(Some(b), None).unwrap();
        assert_eq!(
            l.check(Some(a), None).unwrap_err().code(),
            "rate_limited_address"
        );
        l.check(Some("2001:db8:1:3::1".parse().unwrap()), None)
            .unwrap();
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let l = limits((0, 0), (0, 0));
        for _ in 0..1000 {
            l.check(Some("192.0.2.1".parse().unwrap()), Some("fu_a"))
                .unwrap();
        }
    }
}
