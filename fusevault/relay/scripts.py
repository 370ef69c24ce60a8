"""The relay's Lua scripts: a call counted, a chunk queued or taken, each in one round trip to Redis."""

# A fixed one-second window shared by all addresses: the SET ``calls`` holds
# "<ip>#<n>" for the n-th call of an address in this second, and expires with it.
# With no address (ARGV[1] == ""), the call was counted already.
_COUNT = """
local function counted(calls, ip, limit)
  if ip == '' then return true end
  local ok = false
  for n = 1, limit do
    if redis.call('SADD', calls, ip .. '#' .. n) == 1 then ok = true break end
  end
  if redis.call('TTL', calls) < 0 then redis.call('EXPIRE', calls, 1) end
  return ok
end
"""

CALL = _COUNT + """
if counted(KEYS[1], ARGV[1], tonumber(ARGV[2])) then return 1 end
return 0
"""

# One round trip per chunk, each way (under load every round trip to Redis
# waits for a CPU): count the call, check the caller, queue or take.  Chunks
# are queued in order, each once: a sender may have several pushes on the way
# (the next waits for the one before it), and a push sent again after a lost
# answer is taken as done.
# KEYS: calls, file.req.users, chunks, ready, prep, last chunk
# ARGV: ip, calls per second, user id, max queue, ttl, chunk number, the chunk
PUSH = _COUNT + """
if not counted(KEYS[1], ARGV[1], tonumber(ARGV[2])) then return -2 end
if redis.call('SISMEMBER', KEYS[2], ARGV[3]) == 0 or redis.call('EXISTS', KEYS[5]) == 0 then return -1 end
local nr, last = tonumber(ARGV[6]), redis.call('GET', KEYS[6])
local expected = last and tonumber(last) + 1 or tonumber(redis.call('HGET', KEYS[5], 'first'))
if nr < expected then return 2 end
if nr > expected or redis.call('EXISTS', KEYS[4]) == 0 then return 0 end
if redis.call('LLEN', KEYS[3]) >= tonumber(ARGV[4]) then return 0 end
local ttl = tonumber(ARGV[5])
redis.call('LPUSH', KEYS[3], ARGV[7])
redis.call('SET', KEYS[6], ARGV[6], 'EX', ttl)
for i = 2, 5 do redis.call('EXPIRE', KEYS[i], ttl) end
return 1
"""

# KEYS: calls, file.req.users, chunks; ARGV: ip, calls per second, user id
POP = _COUNT + """
if not counted(KEYS[1], ARGV[1], tonumber(ARGV[2])) then return -2 end
if redis.call('SISMEMBER', KEYS[2], ARGV[3]) == 0 then return -1 end
return redis.call('RPOP', KEYS[3])
"""
