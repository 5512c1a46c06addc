-- One token-bucket decision, atomic, on the server's clock. It is
-- golang.org/x/time/rate's arithmetic, as Memory uses it, so that both
-- backends give the same Decisions (see Memory.AllowN).
--
-- KEYS[1]  the bucket: a hash {tokens, sec, usec, rate, burst}, where
--          sec and usec are the server's TIME when it last changed
-- ARGV[1]  rate, tokens per second (a float)
-- ARGV[2]  burst, the bucket's capacity (a whole number >= 1)
-- ARGV[3]  n, tokens to take (>= 0; 0 only looks)
--
-- Returns {allowed (1 or 0), tokens left after this call (a "%.17g" string)}.
--
-- The bucket is written only when it changes: a granted take, or a new
-- rate or burst (the bucket then refills at the old rate up to now, keeps
-- its tokens capped at the new burst, and refills at the new rate from
-- now on). A full bucket is deleted, since a missing bucket is a full one;
-- any other expires when it would be full again.
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])

local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) -- microseconds, exact in a double

-- A Lua number passed to redis.call is written by Redis itself (in C) as
-- a string that reads back as the same double; rate and burst are stored
-- as given, and compared as strings, since the caller always writes a
-- Limit the same way.
local state = redis.call("HMGET", key, "tokens", "sec", "usec", "rate", "burst")
local tokens = tonumber(state[1])
local changed = false
if tokens == nil then
	-- A new bucket is full. A peek, or a take it can never grant, leaves
	-- it unwritten.
	if n == 0 or n > burst then
		local allowed = 0
		if n == 0 and burst >= 1 then
			allowed = 1
		end
		return { allowed, ARGV[2] }
	end
	tokens = burst
else
	local last = tonumber(state[2]) * 1000000 + tonumber(state[3])
	if last > now then
		last = now -- the clock went back: no refill, as rate.Limiter does
	end
	tokens = math.min(tokens + (now - last) / 1e6 * tonumber(state[4]), tonumber(state[5]))
	tokens = math.min(tokens, burst)
	changed = state[4] ~= ARGV[1] or state[5] ~= ARGV[2]
end

local allowed = 0
if n == 0 then
	if tokens + 1e-9 >= 1 then -- ratelimit.tokenEpsilon
		allowed = 1
	end
elseif n <= burst then
	-- rate.Limiter grants a take whose wait truncates to 0ns.
	local deficit = n - tokens
	if deficit <= 0 or (deficit / rate) * 1e9 < 1 then
		allowed = 1
		tokens = tokens - n
		changed = true
	end
end

if changed then
	if tokens >= burst then
		redis.call("DEL", key)
	else
		redis.call("HSET", key, "tokens", tokens, "sec", t[1], "usec", t[2], "rate", ARGV[1], "burst", ARGV[2])
		-- Until full, in whole ms rounded up; capped at 10^15 ms (31,000
		-- years) so that the number is still written as an integer.
		redis.call("PEXPIRE", key, math.min(1e15, math.max(1, math.ceil((burst - tokens) / rate * 1000))))
	end
end
return { allowed, string.format("%.17g", tokens) }
