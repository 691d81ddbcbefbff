//! Hot state a fleet shares through Redis: rate-limit counters and budget/credit
//! reservations. Every check-and-update is one Lua script (run by EVALSHA), so two
//! instances never interleave between reading a counter and changing it.
//!
//! Money is held as integers of [`UNITS_PER_USD`] (1e-12 USD): the smallest built-in
//! price is $0.0625 per million tokens (6.25e-8 USD per token), so every charge at those
//! prices, with a markup of up to two decimals of a percent, is a whole number of units.
//! An amount finer than that is rounded up when reserved or charged (conservative: the
//! account looks at most 1e-12 USD fuller per call) and down when credited. Counters are
//! 64-bit (Redis `HINCRBY`), so up to about $9.2 million per account; the scripts compare
//! amounts exactly by splitting them into whole dollars and fractions, as Lua numbers
//! are doubles (exact only below 2^53).
//!
//! Keys (all under the configured prefix): `budget:<account>` is a hash of `spent`,
//! `reserved` and (credits) `limit`, the balance; it is loaded from the database when
//! absent and expires after a day without calls, so an idle account is reloaded from the
//! database. `reservations` (a sorted set by deadline) and `reservation-records` (id to
//! amount and accounts) let any instance release the reservations of one that crashed:
//! every reserve first releases those past their deadline. `rate:<scope>:<minute>` is a
//! hash of `requests` and `tokens` kept two minutes. Standalone Redis only: the release
//! touches keys the script does not declare, which Redis Cluster refuses.

use redis::aio::ConnectionManager;
use redis::Script;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

/// Units of money per US dollar in Redis.
pub const UNITS_PER_USD: i64 = 1_000_000_000_000;
const SCALE_DIGITS: u32 = 12;

/// How long an account's hash lives without calls (seconds).
pub const ACCOUNT_TTL_SECS: u64 = 86_400;

/// Helpers every script shares: exact comparison of integer strings up to 2^63.
const LUA_EXACT: &str = r"
local SCALE = 1e12
-- an integer string as (whole, fraction) with value = whole * SCALE + fraction
local function split(s)
  local neg = string.sub(s, 1, 1) == '-'
  if neg then s = string.sub(s, 2) end
  local whole = 0
  if #s > 12 then whole = tonumber(string.sub(s, 1, -13)) end
  local frac = tonumber(string.sub(s, -12))
  if neg then return -whole, -frac end
  return whole, frac
end
-- the sign of whole * SCALE + frac, for any whole and |frac| < 8 * SCALE
local function sign(whole, frac)
  local carry = math.floor(frac / SCALE)
  whole = whole + carry
  frac = frac - carry * SCALE
  if whole > 0 or (whole == 0 and frac > 0) then return 1 end
  if whole == 0 and frac == 0 then return 0 end
  return -1
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- releases reservations past their deadline (of an instance that died mid-call)
local function release_expired(deadlines, records)
  local expired = redis.call('ZRANGEBYSCORE', deadlines, '-inf', now_ms(), 'LIMIT', 0, 100)
  for _, id in ipairs(expired) do
    local record = redis.call('HGET', records, id)
    if record then
      local release = nil
      for part in string.gmatch(record, '[^\n]+') do
        if release == nil then
          release = part
        elseif release ~= '0' and redis.call('EXISTS', part) == 1 then
          redis.call('HINCRBY', part, 'reserved', release)
        end
      end
      redis.call('HDEL', records, id)
    end
    redis.call('ZREM', deadlines, id)
  end
end
";

/// KEYS: deadlines, records, accounts... ARGV: id, estimate, -estimate, hold ms, ttl s,
/// then each account's limit ('' = the hash's own `limit`: credits).
const LUA_RESERVE: &str = r"
release_expired(KEYS[1], KEYS[2])
local missing = {'missing'}
for i = 3, #KEYS do
  if redis.call('HEXISTS', KEYS[i], 'spent') == 0 then table.insert(missing, tostring(i - 2)) end
end
if #missing > 1 then return missing end
local eh, el = split(ARGV[2])
for i = 3, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 'spent', 'reserved', 'limit')
  local spent, reserved, limit = v[1] or '0', v[2] or '0', ARGV[3 + i]
  if limit == '' then limit = v[3] or '0' end
  local sh, sl = split(spent)
  local rh, rl = split(reserved)
  local lh, ll = split(limit)
  if sign(lh - sh, ll - sl) <= 0 or sign(lh - sh - rh - eh, ll - sl - rl - el) < 0 then
    return {'refused', tostring(i - 2), spent, reserved, limit}
  end
end
local record = ARGV[3]
for i = 3, #KEYS do
  redis.call('HINCRBY', KEYS[i], 'reserved', ARGV[2])
  redis.call('EXPIRE', KEYS[i], ARGV[5])
  record = record .. '\n' .. KEYS[i]
end
redis.call('HSET', KEYS[2], ARGV[1], record)
redis.call('ZADD', KEYS[1], now_ms() + tonumber(ARGV[4]), ARGV[1])
return {'ok'}
";

/// KEYS: deadlines, records, accounts... ARGV: id, charge, ttl s. Releases what the
/// reservation still holds (nothing if it expired) and adds the charge.
const LUA_SETTLE: &str = r"
local record = redis.call('HGET', KEYS[2], ARGV[1])
local release = nil
if record then release = string.match(record, '^[^\n]+') end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    if release and release ~= '0' then redis.call('HINCRBY', KEYS[i], 'reserved', release) end
    if ARGV[2] ~= '0' then redis.call('HINCRBY', KEYS[i], 'spent', ARGV[2]) end
    redis.call('EXPIRE', KEYS[i], ARGV[3])
  end
end
return 1
";

/// KEYS: account. ARGV: spent, limit ('' for none), ttl s. The first load wins.
const LUA_INIT: &str = r"
if redis.call('HEXISTS', KEYS[1], 'spent') == 0 then
  redis.call('HSET', KEYS[1], 'spent', ARGV[1], 'reserved', '0')
  if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'limit', ARGV[2]) end
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return 1
";

/// KEYS: account. ARGV: amount. A grant reaches a loaded balance; an absent one will be
/// loaded from the database, which has it.
const LUA_GRANT: &str = r"
if redis.call('HEXISTS', KEYS[1], 'limit') == 1 then
  redis.call('HINCRBY', KEYS[1], 'limit', ARGV[1])
end
return 1
";

/// KEYS: per scope its this-minute and previous-minute hashes. ARGV: ms into the
/// minute, then per scope requests and tokens per minute ('' for none).
const LUA_RATE: &str = r"
local into = tonumber(ARGV[1])
local scopes = #KEYS / 2
for j = 1, scopes do
  local cur = redis.call('HMGET', KEYS[2 * j - 1], 'requests', 'tokens')
  local prev = redis.call('HMGET', KEYS[2 * j], 'requests', 'tokens')
  local rpm, tpm = ARGV[2 * j], ARGV[2 * j + 1]
  if rpm ~= '' then
    local c, p = tonumber(cur[1] or '0'), tonumber(prev[1] or '0')
    if c + math.floor(p * (60000 - into) / 60000) + 1 > tonumber(rpm) then
      return {'requests', tostring(j), tostring(c), tostring(p)}
    end
  end
  if tpm ~= '' then
    local c, p = tonumber(cur[2] or '0'), tonumber(prev[2] or '0')
    if c + math.floor(p * (60000 - into) / 60000) >= tonumber(tpm) then
      return {'tokens', tostring(j), tostring(c), tostring(p)}
    end
  end
end
for j = 1, scopes do
  redis.call('HINCRBY', KEYS[2 * j - 1], 'requests', 1)
  redis.call('PEXPIRE', KEYS[2 * j - 1], 120000)
end
return {'ok'}
";

/// What the reserve script answered.
#[derive(Debug, PartialEq)]
pub enum ReserveOutcome {
    Reserved,
    /// These accounts (indexes into the call's list) are not in Redis yet: load them.
    Missing(Vec<usize>),
    /// This account cannot afford the call: its spent, reserved and limit, in units.
    Refused {
        index: usize,
        spent: i64,
        reserved: i64,
        limit: i64,
    },
}

/// Whether a scope had room, or which counter was full (and its two minutes' counts).
#[derive(Debug, PartialEq)]
pub enum RateOutcome {
    Admitted,
    Full {
        what: &'static str,
        index: usize,
        current: u64,
        previous: u64,
    },
}

/// The connection and scripts of one instance.
pub struct RedisHot {
    conn: ConnectionManager,
    prefix: String,
    reserve: Script,
    settle: Script,
    init: Script,
    grant: Script,
    rate: Script,
}

impl RedisHot {
    /// Connects (failing now if Redis is unreachable) under `prefix` (e.g. `meshgate:`).
    /// Later, while Redis is away, each command fails within about a second (one quick
    /// reconnection attempt, bounded connect and response times) rather than holding the
    /// call, and the connection comes back on its own with Redis.
    pub async fn connect(url: &str, prefix: &str) -> redis::RedisResult<RedisHot> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_factor(50)
            .set_connection_timeout(std::time::Duration::from_secs(1))
            .set_response_timeout(std::time::Duration::from_secs(2));
        let conn = ConnectionManager::new_with_config(client, config).await?;
        let with = |body: &str| Script::new(&format!("{LUA_EXACT}\n{body}"));
        Ok(RedisHot {
            conn,
            prefix: prefix.to_string(),
            reserve: with(LUA_RESERVE),
            settle: with(LUA_SETTLE),
            init: Script::new(LUA_INIT),
            grant: Script::new(LUA_GRANT),
            rate: Script::new(LUA_RATE),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A key under this instance's prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Answers PING (for readiness).
    pub async fn ping(&self) -> redis::RedisResult<()> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.conn.clone())
            .await
            .map(drop)
    }

    /// Reserves `estimate` units under `id` in every account (keys without the prefix,
    /// with their limits in units, `None` for credits) or in none; held at most `hold_ms`.
    pub async fn reserve(
        &self,
        id: &str,
        accounts: &[(String, Option<i64>)],
        estimate: i64,
        hold_ms: u64,
    ) -> redis::RedisResult<ReserveOutcome> {
        let mut call = self.reserve.prepare_invoke();
        call.key(self.key("reservations"))
            .key(self.key("reservation-records"))
            .arg(id)
            .arg(estimate)
            .arg(estimate.checked_neg().unwrap_or(i64::MIN + 1))
            .arg(hold_ms)
            .arg(ACCOUNT_TTL_SECS);
        for (account, limit) in accounts {
            call.key(self.key(account));
            call.arg(limit.map(|l| l.to_string()).unwrap_or_default());
        }
        let answer: Vec<String> = call.invoke_async(&mut self.conn.clone()).await?;
        let number = |i: usize| answer.get(i).and_then(|s| s.parse::<i64>().ok());
        let index = |i: usize| {
            number(i)
                .and_then(|n| usize::try_from(n - 1).ok())
                .unwrap_or(0)
        };
        Ok(match answer.first().map(String::as_str) {
            Some("missing") => ReserveOutcome::Missing((1..answer.len()).map(index).collect()),
            Some("refused") => ReserveOutcome::Refused {
                index: index(1),
                spent: number(2).unwrap_or(0),
                reserved: number(3).unwrap_or(0),
                limit: number(4).unwrap_or(0),
            },
            _ => ReserveOutcome::Reserved,
        })
    }

    /// Puts an account in Redis unless another instance did first.
    pub async fn init(
        &self,
        account: &str,
        spent: i64,
        limit: Option<i64>,
    ) -> redis::RedisResult<()> {
        self.init
            .key(self.key(account))
            .arg(spent)
            .arg(limit.map(|l| l.to_string()).unwrap_or_default())
            .arg(ACCOUNT_TTL_SECS)
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(drop)
    }

    /// Releases reservation `id` and adds `charge` units to its accounts.
    pub async fn settle(
        &self,
        id: &str,
        accounts: &[String],
        charge: i64,
    ) -> redis::RedisResult<()> {
        let mut call = self.settle.prepare_invoke();
        call.key(self.key("reservations"))
            .key(self.key("reservation-records"))
            .arg(id)
            .arg(charge)
            .arg(ACCOUNT_TTL_SECS);
        for account in accounts {
            call.key(self.key(account));
        }
        call.invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(drop)
    }

    /// An account's spent, reserved and limit (credits) in units, `None` when absent.
    pub async fn peek(
        &self,
        account: &str,
    ) -> redis::RedisResult<Option<(i64, Option<i64>, Option<i64>)>> {
        let (spent, reserved, limit): (Option<i64>, Option<i64>, Option<i64>) = redis::cmd("HMGET")
            .arg(self.key(account))
            .arg("spent")
            .arg("reserved")
            .arg("limit")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(spent.map(|spent| (spent, reserved, limit)))
    }

    /// Adds `amount` units to a loaded credit balance.
    pub async fn grant(&self, account: &str, amount: i64) -> redis::RedisResult<()> {
        self.grant
            .key(self.key(account))
            .arg(amount)
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(drop)
    }

    /// Counts one request in every scope (names without the prefix) if all have room.
    /// `limits` are requests and tokens per minute per scope.
    pub async fn rate_admit(
        &self,
        scopes: &[(String, Option<u64>, Option<u64>)],
        now_ms: i64,
    ) -> redis::RedisResult<RateOutcome> {
        let minute = now_ms.div_euclid(60_000);
        let mut call = self.rate.prepare_invoke();
        call.arg(now_ms.rem_euclid(60_000));
        for (scope, rpm, tpm) in scopes {
            call.key(self.key(&format!("rate:{scope}:{minute}")));
            call.key(self.key(&format!("rate:{scope}:{}", minute - 1)));
            call.arg(rpm.map(|n| n.to_string()).unwrap_or_default());
            call.arg(tpm.map(|n| n.to_string()).unwrap_or_default());
        }
        let answer: Vec<String> = call.invoke_async(&mut self.conn.clone()).await?;
        let number = |i: usize| {
            answer
                .get(i)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let what = match answer.first().map(String::as_str) {
            Some("requests") => "requests",
            Some("tokens") => "tokens",
            _ => return Ok(RateOutcome::Admitted),
        };
        Ok(RateOutcome::Full {
            what,
            index: usize::try_from(number(1).saturating_sub(1)).unwrap_or(0),
            current: number(2),
            previous: number(3),
        })
    }

    /// Adds a finished call's tokens to its scopes' this-minute counters.
    pub async fn add_tokens(
        &self,
        scopes: &[String],
        tokens: u64,
        now_ms: i64,
    ) -> redis::RedisResult<()> {
        let minute = now_ms.div_euclid(60_000);
        let mut pipe = redis::pipe();
        pipe.atomic();
        for scope in scopes {
            let key = self.key(&format!("rate:{scope}:{minute}"));
            pipe.hincr(&key, "tokens", tokens).ignore();
            pipe.pexpire(&key, 120_000).ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone()).await
    }

    /// Deletes every key under the prefix (tests).
    pub async fn delete_all(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(keys)
                .query_async::<i64>(&mut conn)
                .await?;
        }
        Ok(())
    }
}

/// An amount in units, rounded up to the next unit when finer; `None` if it does not fit
/// in 64 bits.
pub fn units_ceil(amount: Decimal) -> Option<i64> {
    (amount * Decimal::from(UNITS_PER_USD)).ceil().to_i64()
}

/// An amount in units, rounded down when finer (credit grants).
pub fn units_floor(amount: Decimal) -> Option<i64> {
    (amount * Decimal::from(UNITS_PER_USD)).floor().to_i64()
}

/// Units back to dollars, exactly.
pub fn from_units(units: i64) -> Decimal {
    Decimal::new(units, SCALE_DIGITS).normalize()
}

/// The machine's Redis under a fresh prefix, for tests; `None` (saying why) when it is
/// unreachable and `MESHGATE_REQUIRE_REDIS` is unset.
pub async fn test_redis(name: &str) -> Option<RedisHot> {
    let url = test_redis_url();
    let prefix = format!("meshgate-test:{name}:{}:", uuid::Uuid::new_v4().simple());
    let connected = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        RedisHot::connect(&url, &prefix),
    )
    .await;
    match connected {
        Ok(Ok(hot)) => Some(hot),
        Ok(Err(e)) => skip_or_fail(&format!("Redis at {url} is unreachable: {e}")),
        Err(_) => skip_or_fail(&format!("Redis at {url} did not answer within 5 s")),
    }
}

/// `MESHGATE_TEST_REDIS_URL`, default the machine's Redis.
pub fn test_redis_url() -> String {
    std::env::var("MESHGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn skip_or_fail(why: &str) -> Option<RedisHot> {
    assert!(
        std::env::var_os("MESHGATE_REQUIRE_REDIS").is_none(),
        "{why} (MESHGATE_REQUIRE_REDIS is set)"
    );
    eprintln!("skipped: {why}; set MESHGATE_REQUIRE_REDIS=1 to fail instead");
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(s: &str) -> i64 {
        units_ceil(s.parse().unwrap()).unwrap()
    }

    fn account(name: &str, limit: &str) -> (String, Option<i64>) {
        (format!("budget:{name}"), Some(usd(limit)))
    }

    /// Reserves, loading absent accounts as spent `0` the way `Budgets` does.
    async fn reserve(
        hot: &RedisHot,
        id: &str,
        accounts: &[(String, Option<i64>)],
        estimate: i64,
    ) -> ReserveOutcome {
        loop {
            match hot.reserve(id, accounts, estimate, 60_000).await.unwrap() {
                ReserveOutcome::Missing(missing) => {
                    for i in missing {
                        hot.init(&accounts[i].0, 0, None).await.unwrap();
                    }
                }
                outcome => return outcome,
            }
        }
    }

    async fn hash(hot: &RedisHot, account: &str, field: &str) -> i64 {
        redis::cmd("HGET")
            .arg(hot.key(account))
            .arg(field)
            .query_async::<Option<i64>>(&mut hot.conn.clone())
            .await
            .unwrap()
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn two_instances_share_one_limit_exactly() {
        let Some(a) = test_redis("share").await else {
            return;
        };
        let b = RedisHot::connect(&test_redis_url(), a.prefix())
            .await
            .unwrap();
        let key = account("key:k:total", "1");
        let both = [key.clone(), account("project:p:total", "5")];
        assert_eq!(
            reserve(&a, "r1", &both, usd("0.6")).await,
            ReserveOutcome::Reserved
        );
        // 0.6 is held through A: B may not reserve another 0.6, and nothing is reserved in
        // the project for the refused call.
        let refused = reserve(&b, "r2", &both, usd("0.6")).await;
        assert_eq!(
            refused,
            ReserveOutcome::Refused {
                index: 0,
                spent: 0,
                reserved: usd("0.6"),
                limit: usd("1")
            }
        );
        assert_eq!(
            hash(&a, "budget:project:p:total", "reserved").await,
            usd("0.6")
        );
        assert_eq!(
            reserve(&b, "r3", &both, usd("0.4")).await,
            ReserveOutcome::Reserved
        );
        let names: Vec<String> = both.iter().map(|(n, _)| n.clone()).collect();
        // A charge of 12345 tokens at $0.0625 per million is exact in units.
        let tiny = usd("0.0007715625");
        b.settle("r1", &names, tiny).await.unwrap();
        a.settle("r3", &names, usd("0.2")).await.unwrap();
        assert_eq!(
            hash(&a, "budget:key:k:total", "spent").await,
            tiny + usd("0.2")
        );
        assert_eq!(hash(&a, "budget:key:k:total", "reserved").await, 0);
        // Settling again releases nothing more (the record is gone) but would add a charge:
        // settlement runs once per call, which `Charges` guarantees.
        a.delete_all().await.unwrap();
    }

    #[tokio::test]
    async fn amounts_beyond_two_to_the_53_compare_exactly() {
        let Some(hot) = test_redis("exact").await else {
            return;
        };
        // $1,000,000 is 1e18 units, far past 2^53: doubles could not tell these apart.
        let big = [account("project:big:total", "1000000")];
        hot.init(&big[0].0, usd("999999.999999999999"), None)
            .await
            .unwrap();
        assert_eq!(
            reserve(&hot, "over", &big, usd("0.000000000002")).await,
            ReserveOutcome::Refused {
                index: 0,
                spent: usd("999999.999999999999"),
                reserved: 0,
                limit: usd("1000000")
            }
        );
        assert_eq!(
            reserve(&hot, "fits", &big, usd("0.000000000001")).await,
            ReserveOutcome::Reserved
        );
        // Credits: the limit is the balance in the hash, and may be negative.
        let credits = [("budget:credits:p".to_string(), None)];
        hot.init(&credits[0].0, 0, Some(-usd("2"))).await.unwrap();
        assert!(matches!(
            reserve(&hot, "c1", &credits, 0).await,
            ReserveOutcome::Refused { .. }
        ));
        hot.grant(&credits[0].0, usd("3")).await.unwrap();
        assert_eq!(
            reserve(&hot, "c2", &credits, usd("1")).await,
            ReserveOutcome::Reserved
        );
        assert!(matches!(
            reserve(&hot, "c3", &credits, 1).await,
            ReserveOutcome::Refused { .. }
        ));
        hot.delete_all().await.unwrap();
    }

    #[tokio::test]
    async fn a_reservation_past_its_deadline_is_released_by_the_next_call() {
        let Some(hot) = test_redis("expiry").await else {
            return;
        };
        let key = [account("key:crashed:total", "1")];
        hot.init(&key[0].0, 0, None).await.unwrap();
        // Held for 0 ms: as if its instance died mid-call.
        assert_eq!(
            hot.reserve("dead", &key, usd("1"), 0).await.unwrap(),
            ReserveOutcome::Reserved
        );
        assert_eq!(hash(&hot, &key[0].0, "reserved").await, usd("1"));
        // The next reserve releases it first, then fits.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match hot.reserve("next", &key, usd("1"), 60_000).await.unwrap() {
                ReserveOutcome::Reserved => break,
                // Redis' clock has not passed the deadline's millisecond yet.
                refused => assert!(std::time::Instant::now() < deadline, "{refused:?}"),
            }
            tokio::task::yield_now().await;
        }
        // Settling the released one later adds its charge but releases nothing twice.
        hot.settle("dead", &[key[0].0.clone()], usd("0.25"))
            .await
            .unwrap();
        assert_eq!(hash(&hot, &key[0].0, "reserved").await, usd("1"));
        assert_eq!(hash(&hot, &key[0].0, "spent").await, usd("0.25"));
        hot.delete_all().await.unwrap();
    }

    #[tokio::test]
    async fn concurrent_reserves_never_overcommit() {
        let Some(hot) = test_redis("race").await else {
            return;
        };
        let hot = std::sync::Arc::new(hot);
        let key = vec![account("key:race:total", "1")];
        hot.init(&key[0].0, 0, None).await.unwrap();
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..40 {
            let (hot, key) = (hot.clone(), key.clone());
            calls.spawn(async move {
                hot.reserve(&format!("r{i}"), &key, usd("0.1"), 60_000)
                    .await
            });
        }
        let mut reserved = 0;
        while let Some(outcome) = calls.join_next().await {
            if outcome.unwrap().unwrap() == ReserveOutcome::Reserved {
                reserved += 1;
            }
        }
        assert_eq!(reserved, 10);
        hot.delete_all().await.unwrap();
    }

    #[test]
    fn units_round_trip_exactly() {
        let price: Decimal = "0.0000000625".parse().unwrap();
        let charge = price * Decimal::from(12_345);
        let units = units_ceil(charge).unwrap();
        assert_eq!(from_units(units), charge.normalize());
        // Finer than a unit: reserved rounded up, granted rounded down.
        let fine: Decimal = "0.0000000000001".parse().unwrap();
        assert_eq!(units_ceil(fine), Some(1));
        assert_eq!(units_floor(fine), Some(0));
        assert_eq!(units_ceil(Decimal::from(10_000_000_000i64)), None);
    }
}
