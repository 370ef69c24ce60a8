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

# A request lives no longer than its session (round 64b (1)): a take or a push is refused once the
# session (``prep``'s ``session``, under the key prefix ARGV[prefix]) is gone or failed, and the
# request's keys are given the session's own remaining life, never more.  Before, they checked the
# request's keys only and gave them a fresh ``ttl``, so a request kept busy outlived its session, and
# one address added a session's queue per ``ttl`` (its expired session's requests held theirs).
# Returns the session's milliseconds left (``ttl`` when it has no expiry), or false: not live.
_LIVE = """
local function live(users, prep, uid, prefix, ttl)
  if redis.call('SISMEMBER', users, uid) == 0 then return false end
  local sid = redis.call('HGET', prep, 'session')
  if not sid then return false end
  local session = prefix .. sid
  local left = redis.call('PTTL', session)
  if left == -2 or redis.call('HEXISTS', session, 'failed') == 1 then return false end
  if left < 0 then return ttl * 1000 end
  return left
end
"""

# KEYS: file.req.users, prep; ARGV: user id, the sessions' key prefix, ttl.  -1: gone; else ms left.
LIVE = _LIVE + """
return live(KEYS[1], KEYS[2], ARGV[1], ARGV[2], tonumber(ARGV[3])) or -1
"""

# One round trip per chunk, each way (under load every round trip to Redis
# waits for a CPU): count the call, check the caller, queue or take.  Chunks
# are queued in order, each once: a sender may have several pushes on the way
# (the next waits for the one before it), and a push sent again after a lost
# answer is taken as done.
# The queue is bounded per SESSION, not per request (round 63b (1)): a sender
# streams one request at a time, so ``max queue`` chunks over all the
# session's requests is what an honest transfer needs; per request, one
# address's own session made the relay hold max queue chunks times every file
# it offered (10,000).  The session's set of requests that may hold chunks
# (KEYS[7]) is counted afresh on every push, its members' lists read by name
# (ARGV[9] .. request id): nothing to keep in step with pops, expiries or
# cancelled requests, and a member found empty leaves the set, which so holds
# at most max queue + 1 requests.  The session's sets of requests (KEYS[7],
# KEYS[8]) live as long as the session: they are how its end finds them.
# A chunk number is one of the request's (71b (4)): past ``amount.of.chunks`` (-3), a sender of his
# own session kept pushing chunks no receiver asks for, as long as the session lived.
# KEYS: calls, file.req.users, chunks, ready, prep, last chunk, the session's queued requests,
#       the sender's requests
# ARGV: ip, calls per second, user id, max queue, ttl, chunk number, the chunk, request id,
#       the chunk lists' key prefix, the sessions' key prefix
PUSH = _COUNT + _LIVE + """
if not counted(KEYS[1], ARGV[1], tonumber(ARGV[2])) then return -2 end
local left = live(KEYS[2], KEYS[5], ARGV[3], ARGV[10], tonumber(ARGV[5]))
if not left then return -1 end
local nr, last = tonumber(ARGV[6]), redis.call('GET', KEYS[6])
local expected = last and tonumber(last) + 1 or tonumber(redis.call('HGET', KEYS[5], 'first'))
if nr < expected then return 2 end
if nr >= tonumber(redis.call('HGET', KEYS[5], 'amount.of.chunks') or 0) then return -3 end
if nr > expected or redis.call('EXISTS', KEYS[4]) == 0 then return 0 end
local held = redis.call('LLEN', KEYS[3])
for _, other in ipairs(redis.call('SMEMBERS', KEYS[7])) do
  if other ~= ARGV[8] then
    local n = redis.call('LLEN', ARGV[9] .. other)
    if n == 0 then redis.call('SREM', KEYS[7], other) else held = held + n end
  end
end
if held >= tonumber(ARGV[4]) then return 0 end
redis.call('LPUSH', KEYS[3], ARGV[7])
redis.call('SET', KEYS[6], ARGV[6], 'PX', left)
redis.call('SADD', KEYS[7], ARGV[8])
for i = 2, 8 do redis.call('PEXPIRE', KEYS[i], left) end
return 1
"""

# KEYS: calls, file.req.users, chunks, prep; ARGV: ip, calls per second, user id, the sessions' key
# prefix, ttl
POP = _COUNT + _LIVE + """
if not counted(KEYS[1], ARGV[1], tonumber(ARGV[2])) then return -2 end
if not live(KEYS[2], KEYS[4], ARGV[3], ARGV[4], tonumber(ARGV[5])) then return -1 end
return redis.call('RPOP', KEYS[3])
"""

# A session's state as one check (70b): -1 gone, -2 failed, else its milliseconds left (``ttl`` when
# it has no expiry): what a key of its requests may live, never more (64b (1)).  A write that checks
# the session, or a receiver's admission, in one round trip and writes in a later one lands after a
# close, a failure or a refusal that ran in between, and what it wrote stays (the drop deleted what
# it found at its time): the check and the write are one script, so a drop happens either before it
# (refused) or after it (finds what it wrote).
_SESSION_LEFT = """
local function session_left(session, ttl)
  local left = redis.call('PTTL', session)
  if left == -2 then return -1 end
  if redis.call('HEXISTS', session, 'failed') == 1 then return -2 end
  if left < 0 then return ttl * 1000 end
  return left
end
"""

# A receiver's file requests (70b (2)): checked (the session live, the receiver in it, let in and not
# refused) and written in one call, with the session's own remaining life; the caller checked the
# files (a session's never change) and gives a slice of the requests (the script holds Redis).
# KEYS: session, handshake, receivers, file.reqs, pending
# ARGV: user id, ttl, then per request: file id, its requesters' set, the request's key, the record
# Returns 1; -1 gone; -2 failed; -3 not let in.
ADD_REQUESTS = _SESSION_LEFT + """
local left = session_left(KEYS[1], tonumber(ARGV[2]))
if left < 0 then return left end
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 0 or redis.call('HEXISTS', KEYS[2], 'manifest') == 0
    or redis.call('HEXISTS', KEYS[2], 'refused') == 1 then return -3 end
for i = 3, #ARGV, 4 do
  redis.call('SADD', KEYS[4], ARGV[i])
  redis.call('SADD', ARGV[i + 1], ARGV[1])
  redis.call('SET', ARGV[i + 2], ARGV[i + 3], 'PX', left)
  redis.call('PEXPIRE', ARGV[i + 1], left)
  redis.call('ZADD', KEYS[5], 0, ARGV[1] .. ' ' .. ARGV[i])
end
redis.call('PEXPIRE', KEYS[4], left)
redis.call('PEXPIRE', KEYS[5], left)
return 1
"""

# A chunk put back whose taker went away before it got it (70b (3)): checked live (its receiver still
# in the request, the session there) and put back in one call, listed again in its senders' queued
# requests (63b (1)); a finish or a drop crossing it either comes first (nothing put back) or after
# (it deletes the list and the membership).
# The put-back is a write like a push, bounded as one (71b (4)): the session's queue is counted (this
# list and those of the sender's queued requests, as ``PUSH`` does) and a chunk that would take it past
# ``max queue`` is dropped, not added.  Added whatever the count, takes dropped while the sender refilled
# the queue put back ``max queue`` chunks a round, and the list grew for as long as the session lived.
# A dropped chunk is one the receiver never got: its next run asks again from its ``first``.
# KEYS: file.req.users, prep, chunks; ARGV: the sessions' key prefix, ttl, the chunk, request id,
# the queued requests' key prefix, max queue, the chunk lists' key prefix.
# Returns 1 put back, 0 not (the request or its session ended, or the session's queue is full).
UNPOP = _LIVE + """
local receiver = redis.call('HGET', KEYS[2], 'receiver')
if not receiver then return 0 end
local left = live(KEYS[1], KEYS[2], receiver, ARGV[1], tonumber(ARGV[2]))
if not left then return 0 end
local held = redis.call('LLEN', KEYS[3])
for _, uid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if uid ~= receiver then
    for _, other in ipairs(redis.call('SMEMBERS', ARGV[5] .. uid)) do
      if other ~= ARGV[4] then held = held + redis.call('LLEN', ARGV[7] .. other) end
    end
  end
end
if held >= tonumber(ARGV[6]) then return 0 end
redis.call('RPUSH', KEYS[3], ARGV[3])
redis.call('PEXPIRE', KEYS[3], left)
for _, uid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if uid ~= receiver then
    redis.call('SADD', ARGV[5] .. uid, ARGV[4])
    redis.call('PEXPIRE', ARGV[5] .. uid, left)
  end
end
return 1
"""

# A message of the key exchange (70b): checked (the session live, the receiver in it and not refused,
# what must come first there, nothing posted already with another value) and written in one call.  A
# sender's manifest (16 MiB) crossing its own refusal of that receiver was written after the drop
# deleted the receiver's fields, and stayed (69a (1) undone).  A refusal may be posted again (the same
# value), so that a drop cut short is run again.  The record lives as long as its session, never more
# (73c (3): given the whole ttl, a 16 MiB manifest outlived its session's expiry by up to an hour).
# KEYS: session, receivers, handshake; ARGV: user id, ttl, number of fields needed, those fields, then
# field, value pairs.  Returns {1}; {-1} gone; {-2} failed; {-3} no such receiver; {-4} not yet;
# {-5, field} posted already.
POST_HANDSHAKE = _SESSION_LEFT + """
local left = session_left(KEYS[1], tonumber(ARGV[2]))
if left < 0 then return {left} end
local needed = tonumber(ARGV[3])
local refusing = false
for i = 4 + needed, #ARGV, 2 do if ARGV[i] == 'refused' then refusing = true end end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0
    or (not refusing and redis.call('HEXISTS', KEYS[3], 'refused') == 1) then return {-3} end
for i = 4, 3 + needed do
  if redis.call('HEXISTS', KEYS[3], ARGV[i]) == 0 then return {-4} end
end
for i = 4 + needed, #ARGV, 2 do
  local held = redis.call('HGET', KEYS[3], ARGV[i])
  if held and held ~= ARGV[i + 1] then return {-5, ARGV[i]} end
end
for i = 4 + needed, #ARGV, 2 do redis.call('HSETNX', KEYS[3], ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', KEYS[3], left)
return {1}
"""

# The sender's answer to a request (70b): checked (the session live, the receiver in it and not
# refused, its request there) and written in one call, so that a refusal or a close crossing it
# finds the request it makes, or refuses it.  The same answer again (a retry after a lost reply)
# gets the same request id.
# KEYS: session, receivers, handshake, file.req, file.req.ackn, file.req.users, the sender's requests,
#       the receiver's requests, its answered ones, the session's pending ones, prep
# ARGV: ttl, receiver id, sender id, request id, answered member, pending member, the preps' key
#       prefix, then prep field, value pairs (public.key first).
# Returns {1, request id}; {-1} gone; {-2} failed; {-3} no such request; {-5} answered already.
ACKNOWLEDGE = _SESSION_LEFT + """
local left = session_left(KEYS[1], tonumber(ARGV[1]))
if left < 0 then return {left} end
if redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 0 or redis.call('HEXISTS', KEYS[3], 'refused') == 1
    or redis.call('EXISTS', KEYS[4]) == 0 then return {-3} end
local known = redis.call('GET', KEYS[5])
if known then
  if redis.call('HGET', ARGV[7] .. known, 'public.key') == ARGV[9] then return {1, known} end
  return {-5}
end
redis.call('SET', KEYS[5], ARGV[4], 'PX', left)
redis.call('SADD', KEYS[6], ARGV[2], ARGV[3])
redis.call('SADD', KEYS[7], ARGV[4])
redis.call('SADD', KEYS[8], ARGV[4])
redis.call('ZADD', KEYS[9], 0, ARGV[5])
redis.call('ZREM', KEYS[10], ARGV[6])
for i = 8, #ARGV, 2 do redis.call('HSET', KEYS[11], ARGV[i], ARGV[i + 1]) end
for i = 6, 9 do redis.call('PEXPIRE', KEYS[i], left) end
redis.call('PEXPIRE', KEYS[11], left)
return {1, ARGV[4]}
"""

# The receiver checked the sender's answer: chunks may flow (70b: checked live, then set in a later
# call, a finish in between left the flag for the session's life).  KEYS: file.req.users, prep,
# ready; ARGV: user id, the sessions' key prefix, ttl.  Returns 1, or 0: the request ended.
READY = _LIVE + """
local left = live(KEYS[1], KEYS[2], ARGV[1], ARGV[2], tonumber(ARGV[3]))
if not left then return 0 end
redis.call('SET', KEYS[3], 'true', 'PX', left)
return 1
"""

# A receiver's fetch of the sealed manifest, counted (69a (2)) and read with the fields around it, in
# one call, and only while the manifest is there (70b: counted after a close or a drop crossing it, the
# count made the receiver's record again, for an hour) and its session live, the record given the
# session's life left (73c (3): the whole ttl kept a 16 MiB manifest up to an hour past its session's
# expiry, which nothing sweeps).  KEYS: session, handshake; ARGV: ttl, count field, then the fields to
# read.  Returns false (no manifest, or the session gone or failed), or {count, values...}.
FETCH_MANIFEST = _SESSION_LEFT + """
local left = session_left(KEYS[1], tonumber(ARGV[1]))
if left < 0 or redis.call('HEXISTS', KEYS[2], 'manifest') == 0 then return false end
local fetched = redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
redis.call('PEXPIRE', KEYS[2], left)
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
local values = redis.call('HMGET', KEYS[2], unpack(fields))
local out = {fetched}
for i = 1, #fields do out[#out + 1] = values[i] or false end
return out
"""

# A receiver joins (70b): the address's attempt counted, the session checked live, its bounds
# (max_receivers present, max_joins ever, 69a (1)) checked and the receiver written, in one call.  Apart,
# a join crossing the session's close left its receiver's keys and the session's sets after the close,
# and joins racing at the bound all found room.  Every key it writes is given the session's life left,
# never more (73c (3): the whole ttl kept them, and the handshake a later manifest lands in, up to an
# hour past the session's expiry, which nothing sweeps).
# KEYS: session, receivers, joined, the new receiver's handshake, the address's attempts, joiners
# ARGV: ip, ttl, join attempts, max receivers, max joins, user id, now.
# Returns {1, salt}; {-1} gone; {-2} failed; {-3, seconds} too many attempts; {-4} too many receivers.
JOIN = _SESSION_LEFT + """
local ttl = tonumber(ARGV[2])
local left = session_left(KEYS[1], ttl)
if left < 0 then return {left} end
local tried = redis.call('INCR', KEYS[5])
redis.call('PEXPIRE', KEYS[5], left)
redis.call('SADD', KEYS[6], ARGV[1])
redis.call('PEXPIRE', KEYS[6], left)
if tried > tonumber(ARGV[3]) then return {-3, redis.call('TTL', KEYS[5])} end
if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[4]) or redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[5]) then
  return {-4}
end
redis.call('SADD', KEYS[2], ARGV[6])
redis.call('SADD', KEYS[3], ARGV[6])
redis.call('HSET', KEYS[4], 'ip', ARGV[1], 'joined', ARGV[7])
for i = 2, 4 do redis.call('PEXPIRE', KEYS[i], left) end
return {1, redis.call('HGET', KEYS[1], 'code')}
"""

# A sender still there (71b (2)): its session's keys pushed back, and its ``refreshed`` mark set, only
# if the session is live and not failed, in one call.  Checked in one round trip and expired in a later
# pipeline, a failure in between had its tombstone given the whole ttl (not FAILED_TTL) and the mark
# left for a quarter of it.  KEYS: the session, then the keys to push back, ``refreshed`` last; ARGV:
# ttl, the mark's milliseconds.  Returns 0 (gone or failed), 1 (pushed back), 2 (and the mark set now).
REFRESH = """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'failed') == 1 then return 0 end
for i = 1, #KEYS - 1 do redis.call('EXPIRE', KEYS[i], tonumber(ARGV[1])) end
if redis.call('SET', KEYS[#KEYS], 1, 'NX', 'PX', tonumber(ARGV[2])) then return 2 end
return 1
"""

# A close (71b (3)): the session deleted only if it did not fail meanwhile; a failed one's tombstone
# stays (its FAILED_TTL), so that whoever calls late is told the code was wrong (410), not that the
# sender ended the session (404).  KEYS: the session.  Returns 1 deleted, 0 not.
CLOSE = """
if redis.call('HEXISTS', KEYS[1], 'failed') == 1 then return 0 end
return redis.call('DEL', KEYS[1])
"""
