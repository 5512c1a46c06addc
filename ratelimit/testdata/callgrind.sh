#!/usr/bin/env bash
# Counts the instructions redis-server runs per call of a rate-limit script,
# under valgrind's callgrind: a count that, unlike a time, does not move
# with the machine's load. It is how the figures in redis.lua were taken.
#
#   ratelimit/testdata/callgrind.sh [one|capped|floor|lean|text] [script.lua]
#
# one     a granted take from one bucket at 1000/s (the default)
# capped  a granted take from a bucket under a cap, both at 1000/s
# floor   a script that runs TIME, GET and SET ... PX with constants
# lean    as one, on the leanest script that still reads the bucket,
#         refills it, takes the tokens and writes it back with its expiry
#         (no limit change, no clock going back, no refusal, no cap): what
#         the arithmetic costs at the least
# text    as one, with the arguments as text (rate, burst, n), as the
#         script before 0f0ffa9 took them
#
# Needs redis-server, valgrind and python3. It warms up with 200 calls,
# then counts 2000.
set -euo pipefail
mode=${1:-one}
here=$(cd "$(dirname "$0")" && pwd)
script=${2:-$here/../redis.lua}
tmp=$(mktemp -d)
trap 'kill "$vp" 2>/dev/null || true; rm -rf "$tmp"' EXIT
if [ "$mode" = floor ]; then
  script=$tmp/floor.lua
  echo 'redis.call("TIME") redis.call("GET", KEYS[1]) redis.call("SET", KEYS[1], "0123456789abcdef0123456789abcdef", "PX", "60000") return 1' > "$script"
elif [ "$mode" = lean ]; then
  script=$tmp/lean.lua
  cat > "$script" <<'LUA'
local t = redis.call("TIME")
local now = t[1] * 1000000 + t[2]
local key = KEYS[1]
local rate, burst, n = struct.unpack("<ddd", ARGV[1])
local state = redis.call("GET", key)
local tokens = burst
if state then
	local last, r, b
	tokens, last, r, b = struct.unpack("<dddd", state)
	tokens = tokens + (now - last) / 1e6 * r
	if tokens > burst then tokens = burst end
end
tokens = tokens - n
local ms = math.ceil((burst - tokens) / rate * 1000)
redis.call("SET", key, struct.pack("<dddd", tokens, now, rate, burst), "PX", string.format("%d", ms))
return struct.pack("<dd", 1, tokens)
LUA
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" --instr-atstart=no \
  redis-server --port "$port" --save '' --appendonly no --dir "$tmp" >/dev/null 2>&1 &
vp=$!
drive() {
  python3 - "$port" "$script" "$mode" "$1" <<'PY'
import socket, struct, sys
port, script, mode, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
s = socket.create_connection(("127.0.0.1", port)); f = s.makefile("rb")
def reply():
    line = f.readline()
    if line[:1] == b"-": sys.exit(line.decode())
    if line[:1] == b"$" and int(line[1:]) >= 0: return f.read(int(line[1:]) + 2)[:-2]
    if line[:1] == b"*": return [reply() for _ in range(int(line[1:]))]
    return line
def cmd(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    s.sendall(out)
    return reply()
sha = cmd("script", "load", open(script).read()).decode()
one = struct.pack("<ddd", 1000, 1 << 30, 1)
for _ in range(n):
    if mode == "capped": cmd("evalsha", sha, "2", "b:{c}k", "b:{c}", one, struct.pack("<dd", 1000, 1 << 30))
    elif mode == "floor": cmd("evalsha", sha, "1", "b:{k}")
    elif mode == "text": cmd("evalsha", sha, "1", "b:{k}", "1000", str(1 << 30), "1")
    else: cmd("evalsha", sha, "1", "b:{k}", one)
PY
}
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.2; done
drive 200
callgrind_control -i on "$vp" >/dev/null 2>&1
drive 2000
callgrind_control -i off "$vp" >/dev/null 2>&1
callgrind_control -d "$vp" >/dev/null 2>&1
sleep 0.5
ir=$(grep -hE '^totals:' "$tmp"/cg.out* | awk '{s += $2} END {print s}')
echo "$mode $(basename "$script"): $((ir / 2000)) instructions a call"
