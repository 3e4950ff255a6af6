-- 0012 rate limits shared by API processes (cloud/api/ratelimit.py, `[api] workers` > 1).
--
-- One token bucket per API key (and one per client address for failed authentications), updated
-- by every request in one autocommit statement. UNLOGGED: no WAL and no fsync per request; after
-- a crash the table is empty and every bucket starts full, which is what a restarted single
-- process did with its in-memory buckets. Times are the API's wall clock in nanoseconds.
CREATE UNLOGGED TABLE api_rate_buckets (
    bucket  text COLLATE "C" PRIMARY KEY,
    tokens  double precision NOT NULL,
    at_ns   bigint NOT NULL,
    allowed boolean NOT NULL
);
